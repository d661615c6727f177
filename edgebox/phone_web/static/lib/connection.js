// @ts-check
/**
 * The phone's session state machine (sans-I/O), combining the handshake and the record layer.
 * Mirrors PhoneConnection in edgebox/session/connection.py (protocol version 2); spec:
 * docs/protocol.md sections 4.3-4.4 and 5.3.
 *
 * Theory of operation: `start(now)` queues HELLO; `receiveMessage(data, now)` takes one whole
 * protocol message (what the framer delivers) and resolves to a list of events; whatever the
 * machine wants to send is queued and taken with `dataToSend()` (messages for the framer). The
 * 15 capabilities bytes of the framing exchange are passed in and open every transcript hash. Time
 * is passed in; the machine never reads a clock: `nextDeadline()` says when it must act and
 * `handleTimer(now)` acts (handshake timeout; once established a time-based REKEY or a KEEPALIVE).
 * The ephemeral key and the random can be injected for test vectors.
 *
 * Errors (after h11): a `SessionError` with `remote: true` means the box or the link broke the
 * protocol or refused us; otherwise it is local. Any error moves to "failed" and tells the box
 * why: a plaintext ERROR before the phone holds traffic keys (HELLO_SENT), an encrypted ERROR
 * record after. A plaintext ERROR from the box is honoured only in HELLO_SENT (Rule 2); later it
 * is unauthenticated noise and is dropped unread. The box's verdict on PHONE_AUTH is always a
 * record: ACCEPT, or an ERROR record (phone_revoked, phone_unknown...). Calls are serialised
 * internally so records keep their counter order.
 *
 *   start -> hello_sent --BOX_AUTH--> auth_sent --ACCEPT record--> established -> closed | failed
 */

import { concat, equal, toHex } from "./bytes.js";
import * as c from "./crypto.js";
import { SessionError } from "./errors.js";
import * as hs from "./handshake.js";
import { ACCEPT, CLOSE, CONFIG, DATA, ERROR, RecordLayer, errorRecordCode } from "./records.js";

export const CAPS_LEN = 15;

/**
 * @typedef {{type: "established", sessionId: Uint8Array, peerKey: Uint8Array}
 *   | {type: "message", payload: Uint8Array}
 *   | {type: "peer_closed"}
 *   | {type: "peer_error", code: import("./errors.js").ErrorName}} SessionEvent
 */

/** @typedef {"start" | "hello_sent" | "auth_sent" | "established" | "closed" | "failed"} State */

const KEYED = ["auth_sent", "established"];
const TERMINAL = ["closed", "failed"];

/**
 * @param {import("./errors.js").ErrorName} code
 * @param {string} message
 */
const remote = (code, message) => new SessionError(code, message, { remote: true });

export class PhoneConnection {
  /**
   * @param {c.Identity} identity the phone's long-term key
   * @param {Uint8Array} boxKeyHash the pin: from the QR code, or stored at pairing
   * @param {{capabilities: Uint8Array,
   *          pairingSecret?: [Uint8Array, Uint8Array] | null,
   *          ephemeral?: {privateKey: CryptoKey, point: Uint8Array},
   *          random?: Uint8Array,
   *          config?: import("./records.js").RecordConfig}} opts
   */
  constructor(identity, boxKeyHash, opts) {
    if (boxKeyHash.length !== c.HASH_LEN) throw new RangeError("box key hash must be 32 bytes");
    if (opts.capabilities.length !== CAPS_LEN) throw new RangeError(`capabilities must be the ${CAPS_LEN}-byte exchange`);
    /** @type {State} */
    this.state = "start";
    this.config = opts.config ?? CONFIG;
    this._caps = opts.capabilities.slice();
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
    this._deadline = Infinity;
    this.ignoredPlaintextErrors = 0;
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

  /**
   * Rule 1: move to FAILED and tell the box why, encrypted once we hold keys.
   * @param {SessionError} exc
   * @param {number} now
   */
  async _failWith(exc, now, tellPeer = true) {
    if (this.state === "failed") return exc;
    this.state = "failed";
    if (tellPeer) {
      if (this._records) {
        const sealed = await this._records.sealError(exc.wireCode, now).catch(() => null);
        if (sealed) this._out.push(sealed);
      } else {
        this._out.push(hs.encodeError(exc.wireCode));
      }
    }
    return exc;
  }

  _guard() {
    if (TERMINAL.includes(this.state)) throw new SessionError("closed", "connection is closed");
  }

  /**
   * Queue HELLO; the handshake must complete within `handshakeTimeoutS` of `now`.
   * @param {number} now
   */
  start(now) {
    return this._serial(async () => {
      if (this.state !== "start") throw new SessionError("unexpected_message", "start() called twice");
      if (this._eph === null) this._eph = await c.generateEphemeral();
      this._deadline = now + this.config.handshakeTimeoutS;
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
      if (TERMINAL.includes(this.state)) return;
      if (this.state === "established" && this._records && this._records.canSend) {
        this._out.push(await this._records.seal(CLOSE, new Uint8Array(0), now));
      }
      this.state = "closed";
    });
  }

  /** When `handleTimer` must next be called (same clock as `now`); Infinity if never. */
  nextDeadline() {
    if (TERMINAL.includes(this.state)) return Infinity;
    if (this.state === "established" && this._records) return this._records.nextDeadline();
    return this._deadline;
  }

  /**
   * Act on the clock: fail an overdue handshake; rekey / keep alive when established.
   * @param {number} now
   */
  handleTimer(now) {
    return this._serial(async () => {
      if (TERMINAL.includes(this.state)) return;
      if (this.state === "established" && this._records) {
        try {
          this._out.push(...(await this._records.handleTimer(now)));
        } catch (e) {
          if (e instanceof SessionError) throw await this._failWith(e, now, false);
          throw e;
        }
        return;
      }
      if (now >= this._deadline) throw await this._failWith(remote("timeout", "handshake timed out"), now);
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
        if (data.length === 0) throw remote("malformed", "empty message");
        if (data[0] === hs.MSG_ERROR) return this._plaintextError(data);
        if (KEYED.includes(this.state)) return await this._onRecord(data, now);
        return await this._onBoxAuth(data, now);
      } catch (e) {
        if (e instanceof SessionError) throw await this._failWith(e, now);
        throw e;
      }
    });
  }

  /**
   * Rule 2: an unauthenticated ERROR counts only before we hold keys.
   * @param {Uint8Array} data
   * @returns {SessionEvent[]}
   */
  _plaintextError(data) {
    if (this.state !== "hello_sent") {
      this.ignoredPlaintextErrors += 1;
      return [];
    }
    const code = hs.decodeError(data);
    this.state = "failed";
    return [{ type: "peer_error", code }];
  }

  /**
   * @param {Uint8Array} data
   * @param {number} now
   * @returns {Promise<SessionEvent[]>}
   */
  async _onRecord(data, now) {
    if (!this._records) throw new SessionError("internal", "no record layer");
    const [kind, content] = await this._records.open(data, now);
    if (kind === ERROR) {
      this.state = "failed";
      return [{ type: "peer_error", code: errorRecordCode(content) }];
    }
    if (this.state === "auth_sent") {
      if (kind !== ACCEPT) throw remote("unexpected_message", "the box's first record must be ACCEPT or ERROR");
      this.state = "established";
      return [{ type: "established", sessionId: this.sessionId, peerKey: this.peerKey }];
    }
    if (kind === DATA) return [{ type: "message", payload: content }];
    if (kind === CLOSE) {
      this.state = "closed";
      return [{ type: "peer_closed" }];
    }
    if (kind === ACCEPT) throw remote("unexpected_message", "unexpected ACCEPT record");
    return []; // REKEY, KEEPALIVE
  }

  /**
   * @param {Uint8Array} data
   * @param {number} now
   * @returns {Promise<SessionEvent[]>}
   */
  async _onBoxAuth(data, now) {
    if (this.state !== "hello_sent" || data[0] !== hs.MSG_BOX_AUTH) {
      throw remote("unexpected_message", `message in state ${this.state}`);
    }
    if (this._eph === null) throw new SessionError("internal", "no ephemeral key");
    const msg = await hs.decodeBoxAuth(data);
    const shared = await c.ecdh(this._eph.privateKey, msg.ephemeral);
    const psk = this._pairing ? await hs.pairingPsk(this._pairing[1]) : null;
    const ms = await hs.masterSecret(shared, psk);
    const th2 = await c.sha256(this._caps, this._hello, msg.clear);
    let boxPoint;
    try {
      boxPoint = await hs.openIdentity(ms, "box", th2, msg.sealed);
    } catch (e) {
      if (this._pairing && e instanceof SessionError && e.code === "auth_failed") {
        throw remote("pairing_secret_invalid", "the box did not accept this pairing code (expired, used, locked, or not this box)");
      }
      throw e instanceof SessionError ? remote(/** @type {any} */ (e.code), e.message) : e;
    }
    if (!equal(await c.sha256(boxPoint), this._pin)) {
      throw remote("box_key_mismatch", "box key does not match the pinned key");
    }
    const th3 = await c.sha256(this._caps, this._hello, data);
    const sealed = await hs.sealIdentity(ms, "phone", th3, this._identity);
    const auth = concat(Uint8Array.from([hs.MSG_PHONE_AUTH]), sealed);
    const th4 = await c.sha256(this._caps, this._hello, data, auth);
    const [p2b, b2p] = await hs.trafficSecrets(ms, th4);
    this.sessionId = msg.sessionId;
    this.peerKey = boxPoint;
    this._records = await RecordLayer.create(this.sessionId, p2b, b2p, now, this.config);
    this._out.push(auth);
    this.state = "auth_sent";
    return [];
  }
}

/**
 * Public label of a phone: first 8 bytes of SHA-256(public key), hex (every decision on the box
 * compares the full key).
 * @param {Uint8Array} point
 */
export async function phoneId(point) {
  return toHex((await c.sha256(point)).subarray(0, 8));
}
