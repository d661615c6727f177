// @ts-check
/**
 * Record layer (protocol version 2): AES-256-GCM with per-direction keys, implicit 64-bit counter
 * nonces, the record type inside the AEAD, padding, strict order, rekeying and keep-alives on a
 * clock. Mirrors edgebox/session/records.py; spec: docs/protocol.md section 5.
 *
 *   record = 0x17 | AES-256-GCM(key_d, nonce, aad, inner)     inner = content | type | 0x00 * pad
 *   nonce  = 0x00000000 | counter(u64)                        aad   = "EBR2" | session_id(8)
 *   key_d  = Expand(secret_d, "traffic key"); after REKEY: secret' = Expand(secret, "traffic next")
 *
 * Theory of operation: counters are implicit (the framing is reliable and ordered), so a replayed,
 * reordered, dropped or tampered record fails authentication; only on that fatal path does the
 * layer try the 32 neighbouring counters to report `replay` or `reorder` instead of `auth_failed`.
 * `inner` is padded to a multiple of `padBlock` (128) bytes, so a record's length tells a sniffer
 * only its 128-byte bucket (token lengths of a streamed answer stay hidden); the receiver strips
 * trailing zeros and reads the type. The sender rotates keys before 2^20 records or 600 s and sends
 * an empty KEEPALIVE after 120 s of silence, both on `handleTimer(now)` at `nextDeadline()`; a peer
 * overstaying 2^20 + 1024 records or 900 s is refused. Time (`now`, seconds on a monotonic clock)
 * is passed in. Calls are async (WebCrypto); the caller must not overlap two seals or two opens
 * (the connection serialises them).
 */

import { concat, counterNonce, readU16, u16, utf8 } from "./bytes.js";
import * as c from "./crypto.js";
import { SessionError, errorName } from "./errors.js";

export const HEADER = 0x17;
export const DATA = 0x10;
export const REKEY = 0x11;
export const CLOSE = 0x12;
export const ACCEPT = 0x13;
export const ERROR = 0x14;
export const KEEPALIVE = 0x15;
export const TAG_LEN = 16;
export const MAX_RECORD = 65535;
export const MAX_INNER = MAX_RECORD - 1 - TAG_LEN;
export const MAX_CONTENT = MAX_INNER - 1;
const OVERHEAD = 1 + TAG_LEN + 1;
const AAD_PREFIX = utf8("EBR2");
const DIAGNOSE_WINDOW = 32;
const TYPES = [DATA, REKEY, CLOSE, ACCEPT, ERROR, KEEPALIVE];

/** The session limits and timers the web phone uses (edgebox.session.config.SessionConfig). */
export const CONFIG = Object.freeze({
  rekeyAfterRecords: 2 ** 20,
  rekeyAfterS: 600,
  hardRecords: 2 ** 20 + 2 ** 10,
  hardS: 900,
  maxRecords: 2 ** 48,
  keepaliveS: 120,
  padBlock: 128,
  handshakeTimeoutS: 30,
});

/** @typedef {typeof CONFIG} RecordConfig */

/** @param {Uint8Array} secret */
export async function trafficKey(secret) {
  return c.aesKey(await c.hkdfExpand(secret, "traffic key"));
}

/** @param {Uint8Array} secret */
export function nextSecret(secret) {
  return c.hkdfExpand(secret, "traffic next");
}

/**
 * Length of `inner` for `contentLen` bytes of content under the padding policy.
 * @param {number} contentLen
 * @param {number} padBlock
 */
export function paddedLength(contentLen, padBlock) {
  const inner = contentLen + 1;
  if (inner > MAX_INNER) return inner;
  return Math.min(inner + ((padBlock - (inner % padBlock)) % padBlock), MAX_INNER);
}

/**
 * @typedef {{secret: Uint8Array, key: CryptoKey, counter: number, epochFirst: number,
 *            limit: number, deadline: number, start: number, last: number}} Direction
 */

export class RecordLayer {
  /**
   * Use `RecordLayer.create` (key import is async).
   * @param {Uint8Array} sessionId
   * @param {Direction} send
   * @param {Direction} recv
   * @param {RecordConfig} config
   */
  constructor(sessionId, send, recv, config) {
    this.sessionId = sessionId;
    this.config = config;
    this._aad = concat(AAD_PREFIX, sessionId);
    this._send = send;
    this._recv = recv;
    this.sendFailed = false;
    this.recvFailed = false;
    this.closedByPeer = false;
    this.rekeysSent = 0;
    this.rekeysReceived = 0;
  }

  /**
   * @param {Uint8Array} sessionId
   * @param {Uint8Array} sendSecret
   * @param {Uint8Array} recvSecret
   * @param {number} now
   * @param {RecordConfig} [config]
   */
  static async create(sessionId, sendSecret, recvSecret, now, config = CONFIG) {
    if (sessionId.length !== 8) throw new RangeError("session id must be 8 bytes");
    return new RecordLayer(
      sessionId,
      await direction(sendSecret, 0, now, config),
      await direction(recvSecret, 0, now, config),
      config,
    );
  }

  /** The send side can still seal (it stays usable after a receive failure, to say why). */
  get canSend() {
    return !this.sendFailed && this._send.counter < this._send.limit;
  }

  /**
   * @param {import("./errors.js").ErrorName} code
   * @param {string} message
   */
  _failRecv(code, message) {
    this.recvFailed = true;
    return new SessionError(code, message);
  }

  /**
   * Seal one record under the current key (no automatic rekey: see sealAll).
   * @param {number} type
   * @param {Uint8Array} content
   * @param {number} now
   */
  async seal(type, content, now) {
    const s = this._send;
    if (this.sendFailed) throw new SessionError("closed", "record layer has failed");
    if (s.counter >= s.limit || now > s.deadline) {
      this.sendFailed = true;
      if (s.counter >= this.config.maxRecords) throw new SessionError("counter_exhausted", "session record counter exhausted");
      throw new SessionError("rekey_overdue", "refusing to overstay the key's limits");
    }
    if (content.length > MAX_CONTENT) throw new SessionError("oversize", `record content above ${MAX_CONTENT} bytes`);
    const inner = new Uint8Array(paddedLength(content.length, this.config.padBlock));
    inner.set(content);
    inner[content.length] = type;
    const n = counterNonce(s.counter);
    s.counter += 1;
    s.last = now;
    return concat(Uint8Array.of(HEADER), await c.aeadSeal(s.key, n, this._aad, inner));
  }

  /** @param {number} now */
  needsRekey(now) {
    const s = this._send;
    return s.counter - s.epochFirst >= this.config.rekeyAfterRecords || now - s.start >= this.config.rekeyAfterS;
  }

  /** @param {number} now */
  async _rekey(now) {
    const record = await this.seal(REKEY, new Uint8Array(0), now);
    this._send = await direction(await nextSecret(this._send.secret), this._send.counter, now, this.config);
    this.rekeysSent += 1;
    return record;
  }

  /**
   * Seal one record, preceded by a REKEY record (and a key switch) when one is due.
   * @param {number} type
   * @param {Uint8Array} content
   * @param {number} now
   */
  async sealAll(type, content, now) {
    if (this.needsRekey(now)) return [await this._rekey(now), await this.seal(type, content, now)];
    return [await this.seal(type, content, now)];
  }

  /**
   * An encrypted ERROR record, or null when the send side can no longer seal anything.
   * @param {number} code
   * @param {number} now
   */
  async sealError(code, now) {
    if (!this.canSend || now > this._send.deadline) return null;
    return this.seal(ERROR, u16(code), now);
  }

  /** When `handleTimer` next has something to do (monotonic seconds). */
  nextDeadline() {
    if (!this.canSend) return Infinity;
    const s = this._send;
    return Math.min(s.start + this.config.rekeyAfterS, s.last + this.config.keepaliveS);
  }

  /**
   * Records due at `now`: a time-based REKEY, or a KEEPALIVE on an idle send side.
   * @param {number} now
   * @returns {Promise<Uint8Array[]>}
   */
  async handleTimer(now) {
    if (!this.canSend) return [];
    const s = this._send;
    if (now >= s.start + this.config.rekeyAfterS) return [await this._rekey(now)];
    if (now >= s.last + this.config.keepaliveS) return [await this.seal(KEEPALIVE, new Uint8Array(0), now)];
    return [];
  }

  /**
   * Authenticate and decrypt the next record; enforce order, limits and the record grammar.
   * @param {Uint8Array} record
   * @param {number} now
   * @returns {Promise<[number, Uint8Array]>} type and content
   */
  async open(record, now) {
    if (this.recvFailed && !this.closedByPeer) throw new SessionError("closed", "record layer has failed");
    if (this.closedByPeer) throw this._failRecv("unexpected_message", "record after the peer closed the session");
    const r = this._recv;
    if (r.counter >= this.config.maxRecords) throw this._failRecv("counter_exhausted", "session record counter exhausted");
    if (r.counter >= r.limit || now > r.deadline) throw this._failRecv("rekey_overdue", "peer overstayed its key limits");
    if (record.length === 0 || record[0] !== HEADER) throw this._failRecv("malformed", "not a record (empty or wrong header)");
    const n = counterNonce(r.counter);
    const inner = await c.aeadOpen(r.key, n, this._aad, record.subarray(1));
    if (inner === null) throw await this._diagnose(record);
    r.counter += 1;
    let end = inner.length;
    while (end > 0 && inner[end - 1] === 0) end -= 1;
    if (end === 0) throw this._failRecv("malformed", "record without a type");
    const type = inner[end - 1];
    const content = inner.slice(0, end - 1);
    if (type === DATA) return [type, content];
    if (!TYPES.includes(type)) throw this._failRecv("malformed", "unknown record type");
    if (type === ERROR) {
      if (content.length !== 2) throw this._failRecv("malformed", "ERROR record must carry a 2-byte code");
      this.closedByPeer = true; // the peer stops after an ERROR
      return [type, content];
    }
    if (content.length > 0) throw this._failRecv("malformed", "control record with a payload");
    if (type === REKEY) {
      this._recv = await direction(await nextSecret(r.secret), r.counter, now, this.config);
      this.rekeysReceived += 1;
    } else if (type === CLOSE) {
      this.closedByPeer = true;
    }
    return [type, content];
  }

  /**
   * Slow path after a tag failure: an old or a future counter, or tampering?
   * @param {Uint8Array} record
   */
  async _diagnose(record) {
    if (record.length < OVERHEAD) return this._failRecv("malformed", "record shorter than header, type and tag");
    const r = this._recv;
    const body = record.subarray(1);
    /** @type {[number, import("./errors.js").ErrorName, string][]} */
    const tries = [
      [-1, "replay", "replayed"],
      [1, "reorder", "reordered"],
    ];
    for (const [delta, code, what] of tries) {
      for (let k = 1; k <= DIAGNOSE_WINDOW; k++) {
        const other = r.counter + delta * k;
        if (other < r.epochFirst) break;
        if ((await c.aeadOpen(r.key, counterNonce(other), this._aad, body)) !== null) {
          return this._failRecv(code, `record counter ${what} (expected the next one)`);
        }
      }
    }
    return this._failRecv("auth_failed", "record failed authentication");
  }
}

/**
 * The error name carried by an ERROR record's content.
 * @param {Uint8Array} content
 */
export function errorRecordCode(content) {
  return errorName(readU16(content, 0));
}

/**
 * @param {Uint8Array} secret
 * @param {number} counter
 * @param {number} now
 * @param {RecordConfig} config
 * @returns {Promise<Direction>}
 */
async function direction(secret, counter, now, config) {
  return {
    secret,
    key: await trafficKey(secret),
    counter,
    epochFirst: counter,
    limit: Math.min(config.maxRecords, counter + config.hardRecords),
    deadline: now + config.hardS,
    start: now,
    last: now,
  };
}
