// @ts-check
/**
 * Record layer: AES-256-GCM with per-direction keys, implicit 64-bit counter nonces, strict order,
 * rekeying. Mirrors edgebox/session/records.py; spec: docs/protocol.md section 5.
 *
 *   record = type(u8) | AES-256-GCM(key_d, nonce, aad, plaintext)
 *   nonce  = 0x00000000 | counter(u64)      aad = "EBR1" | session_id(8) | type(u8) | nonce
 *   key_d  = Expand(secret_d, "traffic key"); after REKEY: secret' = Expand(secret, "traffic next")
 *
 * Theory of operation: counters are implicit (the framing is reliable and ordered), so a replayed,
 * reordered, dropped or tampered record fails authentication; only on that fatal path does the
 * layer try the 32 neighbouring counters to report `replay` or `reorder` instead of `auth_failed`.
 * The sender rotates keys before 2^20 records or 600 s; a peer overstaying 2^20 + 1024 records or
 * 900 s is refused. Time (`now`, seconds on a monotonic clock) is passed in. Calls are async
 * (WebCrypto); the caller must not overlap two seals or two opens (the connection serialises).
 */

import { concat, counterNonce, utf8 } from "./bytes.js";
import * as c from "./crypto.js";
import { SessionError } from "./errors.js";

export const DATA = 0x10;
export const REKEY = 0x11;
export const CLOSE = 0x12;
export const ACCEPT = 0x13;
export const TAG_LEN = 16;
export const OVERHEAD = 1 + TAG_LEN;
const AAD_PREFIX = utf8("EBR1");
export const MAX_COUNTER = 2 ** 48;
export const REKEY_AFTER_RECORDS = 2 ** 20;
export const REKEY_AFTER_SECONDS = 600;
export const HARD_RECORDS = REKEY_AFTER_RECORDS + 2 ** 10;
export const HARD_SECONDS = 900;
const DIAGNOSE_WINDOW = 32;
const TYPES = [DATA, REKEY, CLOSE, ACCEPT];

/** @param {Uint8Array} secret */
export async function trafficKey(secret) {
  return c.aesKey(await c.hkdfExpand(secret, "traffic key"));
}

/** @param {Uint8Array} secret */
export function nextSecret(secret) {
  return c.hkdfExpand(secret, "traffic next");
}

/** @typedef {{secret: Uint8Array, key: CryptoKey, counter: number, epochFirst: number, limit: number, deadline: number, start: number}} Direction */

export class RecordLayer {
  /**
   * Use `RecordLayer.create` (key import is async).
   * @param {Uint8Array} sessionId
   * @param {Direction} send
   * @param {Direction} recv
   */
  constructor(sessionId, send, recv) {
    this.sessionId = sessionId;
    this._send = send;
    this._recv = recv;
    this.failed = false;
    this.closedByPeer = false;
    this.rekeysSent = 0;
    this.rekeysReceived = 0;
  }

  /**
   * @param {Uint8Array} sessionId
   * @param {Uint8Array} sendSecret
   * @param {Uint8Array} recvSecret
   * @param {number} now
   */
  static async create(sessionId, sendSecret, recvSecret, now) {
    if (sessionId.length !== 8) throw new RangeError("session id must be 8 bytes");
    return new RecordLayer(sessionId, await direction(sendSecret, 0, now), await direction(recvSecret, 0, now));
  }

  /**
   * @param {number} type
   * @param {Uint8Array} nonce
   */
  _aad(type, nonce) {
    return concat(AAD_PREFIX, this.sessionId, Uint8Array.from([type]), nonce);
  }

  /**
   * @param {string} code
   * @param {string} message
   */
  _fail(code, message) {
    this.failed = true;
    return new SessionError(/** @type {any} */ (code), message);
  }

  /**
   * Seal one record under the current key (no automatic rekey: see sealAll).
   * @param {number} type
   * @param {Uint8Array} plaintext
   * @param {number} now
   */
  async seal(type, plaintext, now) {
    if (this.failed) throw new SessionError("closed", "record layer has failed");
    const s = this._send;
    if (s.counter >= MAX_COUNTER) throw this._fail("counter_exhausted", "session record counter exhausted");
    if (s.counter >= s.limit || now > s.deadline) throw this._fail("rekey_overdue", "refusing to overstay the key's limits");
    const n = counterNonce(s.counter);
    s.counter += 1;
    const body = await c.aeadSeal(s.key, n, this._aad(type, n), plaintext);
    return concat(Uint8Array.from([type]), body);
  }

  /** @param {number} now */
  needsRekey(now) {
    const s = this._send;
    return s.counter - s.epochFirst >= REKEY_AFTER_RECORDS || now - s.start >= REKEY_AFTER_SECONDS;
  }

  /**
   * Seal one record, preceded by a REKEY record (and a key switch) when one is due.
   * @param {number} type
   * @param {Uint8Array} plaintext
   * @param {number} now
   */
  async sealAll(type, plaintext, now) {
    if (this.needsRekey(now)) {
      const rekey = await this.seal(REKEY, new Uint8Array(0), now);
      this._send = await direction(await nextSecret(this._send.secret), this._send.counter, now);
      this.rekeysSent += 1;
      return [rekey, await this.seal(type, plaintext, now)];
    }
    return [await this.seal(type, plaintext, now)];
  }

  /**
   * Authenticate and decrypt the next record; enforce order, limits and the record grammar.
   * @param {Uint8Array} record
   * @param {number} now
   * @returns {Promise<[number, Uint8Array]>}
   */
  async open(record, now) {
    if (this.failed) throw new SessionError("closed", "record layer has failed");
    if (this.closedByPeer) throw this._fail("unexpected_message", "record after the peer closed the session");
    const r = this._recv;
    if (r.counter >= MAX_COUNTER) throw this._fail("counter_exhausted", "session record counter exhausted");
    if (r.counter >= r.limit || now > r.deadline) throw this._fail("rekey_overdue", "peer overstayed its key limits");
    if (record.length === 0 || !TYPES.includes(record[0])) {
      throw this._fail("malformed", "unknown record type or empty record");
    }
    if (record.length < OVERHEAD) throw this._fail("malformed", "record shorter than header and tag");
    const type = record[0];
    const n = counterNonce(r.counter);
    const plain = await c.aeadOpen(r.key, n, this._aad(type, n), record.subarray(1));
    if (plain === null) throw await this._diagnose(record);
    r.counter += 1;
    if (type === DATA) return [type, plain];
    if (plain.length > 0) throw this._fail("malformed", "control record with a payload");
    if (type === REKEY) {
      this._recv = await direction(await nextSecret(r.secret), r.counter, now);
      this.rekeysReceived += 1;
    } else if (type === CLOSE) {
      this.closedByPeer = true;
    }
    return [type, plain];
  }

  /**
   * Slow path after a tag failure: an old or a future counter, or tampering?
   * @param {Uint8Array} record
   */
  async _diagnose(record) {
    const r = this._recv;
    const body = record.subarray(1);
    /** @type {[number, string, string][]} */
    const tries = [
      [-1, "replay", "replayed"],
      [1, "reorder", "reordered"],
    ];
    for (const [delta, code, what] of tries) {
      for (let k = 1; k <= DIAGNOSE_WINDOW; k++) {
        const other = r.counter + delta * k;
        if (other < r.epochFirst) break;
        const n = counterNonce(other);
        if ((await c.aeadOpen(r.key, n, this._aad(record[0], n), body)) !== null) {
          return this._fail(code, `record counter ${what} (expected the next one)`);
        }
      }
    }
    return this._fail("auth_failed", "record failed authentication");
  }
}

/**
 * @param {Uint8Array} secret
 * @param {number} counter
 * @param {number} now
 * @returns {Promise<Direction>}
 */
async function direction(secret, counter, now) {
  return {
    secret,
    key: await trafficKey(secret),
    counter,
    epochFirst: counter,
    limit: Math.min(MAX_COUNTER, counter + HARD_RECORDS),
    deadline: now + HARD_SECONDS,
    start: now,
  };
}
