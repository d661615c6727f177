// @ts-check
/**
 * The phone's keystore in IndexedDB: its long-term P-256 key and the boxes it paired with.
 *
 * Theory of operation: the identity is an ECDSA P-256 key pair made by WebCrypto with
 * `extractable: false`. IndexedDB stores the CryptoKey object itself (structured clone), so the
 * private scalar never exists in JavaScript: it cannot be exported, logged or sent, only used to
 * sign, the way a secure enclave keeps a key. Its public point is kept beside it. A paired box is
 * remembered by box id with the pinned hash of its key; the handshake refuses any box whose key
 * does not match. The same database holds the questions the box queued (lib/waiting.js). The
 * store is per origin: a page served from another origin is another phone.
 */

import { exportPoint, webCryptoIdentity } from "./crypto.js";
import { PhoneError } from "./errors.js";

// 1: identity + boxes; 2: + questions (lib/waiting.js, the store-and-forward conversation).
const DB_VERSION = 2;

/** @typedef {{boxId: string, keyHash: string, pairedAt: number, label?: string}} PairedBox */
/** @typedef {{privateKey: CryptoKey, point: Uint8Array, createdAt: number}} StoredIdentity */

/**
 * @template T
 * @param {IDBRequest<T>} req
 * @returns {Promise<T>}
 */
function done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {IDBTransaction} tx */
function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new PhoneError("keystore write aborted", "keystore_failed"));
  });
}

export class PhoneKeystore {
  /** @param {IDBDatabase} db */
  constructor(db) {
    this.db = db;
    /** @type {StoredIdentity | null} */
    this._identity = null;
  }

  /** Open (and create on first use) the keystore database `name`. */
  static async open(name = "edgebox-phone") {
    if (!globalThis.indexedDB) throw new PhoneError("this browser has no IndexedDB", "keystore_unavailable");
    const req = indexedDB.open(name, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains("identity")) db.createObjectStore("identity");
      if (!db.objectStoreNames.contains("boxes")) db.createObjectStore("boxes", { keyPath: "boxId" });
      if (!db.objectStoreNames.contains("questions")) db.createObjectStore("questions", { keyPath: "id" });
    };
    return new PhoneKeystore(await done(req));
  }

  /** The stored identity, made on first use (non-extractable private key). */
  async stored() {
    if (this._identity) return this._identity;
    const tx = this.db.transaction("identity", "readonly");
    /** @type {StoredIdentity | undefined} */
    let found = await done(tx.objectStore("identity").get("phone"));
    if (!found) {
      const pair = /** @type {CryptoKeyPair} */ (
        await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])
      );
      found = { privateKey: pair.privateKey, point: await exportPoint(pair.publicKey), createdAt: Math.floor(Date.now() / 1000) };
      const wtx = this.db.transaction("identity", "readwrite");
      // add() refuses to overwrite: if another tab made a key first, keep that one.
      wtx.objectStore("identity").add(found, "phone");
      try {
        await committed(wtx);
      } catch {
        const rtx = this.db.transaction("identity", "readonly");
        found = await done(rtx.objectStore("identity").get("phone"));
        if (!found) throw new PhoneError("could not store the phone key", "keystore_failed");
      }
    }
    this._identity = found;
    return found;
  }

  /** The handshake's view of the identity: public point + signer. */
  async identity() {
    const s = await this.stored();
    return webCryptoIdentity(s.privateKey, s.point);
  }

  /** @param {PairedBox} box */
  async rememberBox(box) {
    const tx = this.db.transaction("boxes", "readwrite");
    tx.objectStore("boxes").put(box);
    await committed(tx);
  }

  /** @returns {Promise<PairedBox[]>} */
  async boxes() {
    const tx = this.db.transaction("boxes", "readonly");
    return done(tx.objectStore("boxes").getAll());
  }

  /**
   * The box to talk to: the named one, or the only one.
   * @param {string | null} [boxId]
   */
  async box(boxId = null) {
    const all = await this.boxes();
    if (boxId) {
      const b = all.find((x) => x.boxId === boxId);
      if (!b) throw new PhoneError(`this phone is not paired with box ${boxId}`, "not_paired");
      return b;
    }
    if (all.length === 0) throw new PhoneError("this phone is not paired with a box", "not_paired");
    return all.sort((a, b) => b.pairedAt - a.pairedAt)[0];
  }

  /** @param {string} boxId */
  async forgetBox(boxId) {
    const tx = this.db.transaction("boxes", "readwrite");
    tx.objectStore("boxes").delete(boxId);
    await committed(tx);
  }

  close() {
    this.db.close();
  }
}
