// @ts-check
/**
 * The phone's session state machine (sans-I/O), combining the handshake and the record layer.
 * Mirrors PhoneConnection in edgebox/session/connection.py; spec: docs/protocol.md section 4.3.
 *
 * Theory of operation: `start()` queues HELLO; `receiveMessage(data, now)` takes one whole
 * protocol message (what the framer delivers) and resolves to a list of events; whatever the
 * machine wants to send is queued and taken with `dataToSend()` (messages for the framer). Time
 * is passed in; the ephemeral key and the random can be injected for test vectors. Any error
 * rejects with `SessionError`, moves the machine to "failed" and queues a plaintext ERROR for the
 * box (unless the error was the box's own ERROR); a failed machine refuses all further input.
 * Calls are serialised internally, so records keep their counter order even when the caller does
 * not await one call before starting the next.
 *
 *   start -> hello_sent --BOX_AUTH ok--> auth_sent --ACCEPT record--> established -> closed | failed
 */

import { concat, equal, toHex } from "./bytes.js";
import * as c from "./crypto.js";
import { SessionError } from "./errors.js";
import * as hs from "./handshake.js";
import { ACCEPT, CLOSE, DATA, REKEY, RecordLayer } from "./records.js";

/**
 * @typedef {{type: "established", sessionId: Uint8Array, peerKey: Uint8Array}
 *   | {type: "message", payload: Uint8Array}
 *   | {type: "peer_closed"}
 *   | {type: "peer_error", code: import("./errors.js").ErrorName}} SessionEvent
 */

/** @typedef {"start" | "hello_sent" | "auth_sent" | "established" | "closed" | "failed"} State */

export class PhoneConnection {
  /**
   * @param {c.Identity} identity the phone's long-term key
   * @param {Uint8Array} boxKeyHash the pin: from the QR code, or stored at pairing
   * @param {{pairingSecret?: [Uint8Array, Uint8Array] | null,
   *          ephemeral?: {privateKey: CryptoKey, point: Uint8Array},
   *          random?: Uint8Array}} [opts]
   */
  constructor(identity, boxKeyHash, opts = {}) {
    if (boxKeyHash.length !== c.HASH_LEN) throw new RangeError("box key hash must be 32 bytes");
    /** @type {State} */
    this.state = "start";
    this._identity = identity;
    this._pin = boxKeyHash;
    this._pairing = opts.pairingSecret ?? null;
    this._eph = opts.ephemeral ?? null;
    this._random = opts.random ?? globalThis.crypto.getRandomValues(new Uint8Array(hs.RANDOM_LEN));
    /** @type {Uint8Array} */
    this._hello = new Uint8Array(0);
    /** @type {Uint8Array[]} */
    this._out = [];
    /** @type {RecordLayer | null} */
    this._records = null;
    /** @type {Uint8Array} */
    this.sessionId = new Uint8Array(0);
    /** @type {Uint8Array} */
    this.peerKey = new Uint8Array(0);
    /** @type {Promise<unknown>} */
    this._chain = Promise.resolve();
  }

  get mode() {
    return this._pairing ? hs.MODE_PAIRING : hs.MODE_SESSION;
  }

  get established() {
    return this.state === "established";
  }

  /** @returns {Uint8Array[]} */
  dataToSend() {
    const out = this._out;
    this._out = [];
    return out;
  }

  /**
   * Run `fn` after every earlier call finished (records keep their order).
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  _serial(fn) {
    const run = this._chain.then(fn, fn);
    this._chain = run.catch(() => undefined);
    return run;
  }

  /** @param {SessionError} exc */
  _failWith(exc, tellPeer = true) {
    if (this.state !== "failed") {
      this.state = "failed";
      if (tellPeer) this._out.push(hs.encodeError(exc.wireCode));
    }
    return exc;
  }

  _guard() {
    if (this.state === "failed" || this.state === "closed") throw new SessionError("closed", "connection is closed");
  }

  /** Queue HELLO. */
  start() {
    return this._serial(async () => {
      if (this.state !== "start") throw new SessionError("unexpected_message", "start() called twice");
      if (this._eph === null) this._eph = await c.generateEphemeral();
      const secretId = this._pairing ? this._pairing[0] : null;
      this._hello = hs.encodeHello(this.mode, this._random, this._eph.point, secretId);
      this._out.push(this._hello);
      this.state = "hello_sent";
    });
  }

  /**
   * Queue one application message (a DATA record).
   * @param {Uint8Array} payload
   * @param {number} now
   */
  sendMessage(payload, now) {
    return this._serial(async () => {
      this._guard();
      if (this.state !== "established" || this._records === null) {
        throw new SessionError("unexpected_message", "session is not established");
      }
      this._out.push(...(await this._records.sealAll(DATA, payload, now)));
    });
  }

  /**
   * Queue an authenticated CLOSE record (orderly end) and stop.
   * @param {number} now
   */
  close(now) {
    return this._serial(async () => {
      if (this.state === "established" && this._records !== null) {
        this._out.push(await this._records.seal(CLOSE, new Uint8Array(0), now));
      }
      if (this.state !== "failed") this.state = "closed";
    });
  }

  /**
   * @param {Uint8Array} data one protocol message
   * @param {number} now
   * @returns {Promise<SessionEvent[]>}
   */
  receiveMessage(data, now) {
    return this._serial(async () => {
      this._guard();
      try {
        if (data.length === 0) throw new SessionError("malformed", "empty message");
        if (data[0] === hs.MSG_ERROR) {
          const code = hs.decodeError(data);
          this.state = "failed";
          return [/** @type {SessionEvent} */ ({ type: "peer_error", code })];
        }
        return await this._receive(data, now);
      } catch (e) {
        if (e instanceof SessionError) throw this._failWith(e);
        throw e;
      }
    });
  }

  /**
   * @param {Uint8Array} data
   * @param {number} now
   * @returns {Promise<SessionEvent[]>}
   */
  async _receive(data, now) {
    if (this.state === "hello_sent") return this._onBoxAuth(data, now);
    if (this.state === "auth_sent" && this._records) {
      const [kind] = await this._records.open(data, now);
      if (kind !== ACCEPT) throw new SessionError("unexpected_message", "first box record must be ACCEPT");
      this.state = "established";
      return [{ type: "established", sessionId: this.sessionId, peerKey: this.peerKey }];
    }
    if (this.state === "established" && this._records) {
      const [kind, payload] = await this._records.open(data, now);
      if (kind === DATA) return [{ type: "message", payload }];
      if (kind === CLOSE) {
        this.state = "closed";
        return [{ type: "peer_closed" }];
      }
      if (kind === REKEY) return [];
      throw new SessionError("unexpected_message", "unexpected ACCEPT record");
    }
    throw new SessionError("unexpected_message", `message in state ${this.state}`);
  }

  /**
   * @param {Uint8Array} data
   * @param {number} now
   * @returns {Promise<SessionEvent[]>}
   */
  async _onBoxAuth(data, now) {
    if (this._eph === null) throw new SessionError("internal", "no ephemeral key");
    const msg = await hs.decodeBoxAuth(data);
    const shared = await c.ecdh(this._eph.privateKey, msg.ephemeral);
    const psk = this._pairing ? await hs.pairingPsk(this._pairing[1]) : null;
    const ms = await hs.masterSecret(shared, psk);
    const th2 = await c.sha256(this._hello, msg.clear);
    let boxPoint;
    try {
      boxPoint = await hs.openIdentity(ms, "box", th2, msg.sealed);
    } catch (e) {
      if (this._pairing && e instanceof SessionError && e.code === "auth_failed") {
        throw new SessionError("auth_failed", "box authentication failed (wrong pairing secret or not the box)");
      }
      throw e;
    }
    if (!equal(await c.sha256(boxPoint), this._pin)) {
      throw new SessionError("box_key_mismatch", "box key does not match the pinned key");
    }
    const th3 = await c.sha256(this._hello, data);
    const sealed = await hs.sealIdentity(ms, "phone", th3, this._identity);
    const auth = concat(Uint8Array.from([hs.MSG_PHONE_AUTH]), sealed);
    const th4 = await c.sha256(this._hello, data, auth);
    const [p2b, b2p] = await hs.trafficSecrets(ms, th4);
    this.sessionId = msg.sessionId;
    this.peerKey = boxPoint;
    this._records = await RecordLayer.create(this.sessionId, p2b, b2p, now);
    this._out.push(auth);
    this.state = "auth_sent";
    return [];
  }
}

/**
 * Stable public identifier of a phone: first 8 bytes of SHA-256(public key), hex.
 * @param {Uint8Array} point
 */
export async function phoneId(point) {
  return toHex((await c.sha256(point)).subarray(0, 8));
}
