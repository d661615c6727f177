// @ts-check
/**
 * Framing: messages of up to 64 KiB over datagrams of at most `mtu` bytes, with windowed acks.
 * A line-by-line port of edgebox/session/framing.py (spec: docs/protocol.md section 3).
 *
 * Theory of operation: the phone opens with a capabilities request; the box answers with the
 * agreed version, datagram size (the smaller of both) and its receive window. Then each side sends
 * data fragments (8-bit wrapping sequence numbers) and acks naming the last sequence received. A
 * sender never has more unacknowledged fragments in flight than the peer's window (end-to-end
 * back-pressure); acks ride on outgoing data or go alone (2 bytes, no window slot). A receiver
 * acks when half its window is used or a message completes. Every peer-supplied value is
 * range-checked; any violation throws `SessionError` and the framer fails closed. Sans-I/O and
 * synchronous: datagrams in, messages and datagrams out; no timers, no transport.
 *
 * The capabilities exchange carries the protocol version (2); the exchanged 15 bytes
 * (`capabilities` = request | response) open the handshake transcript, so a man in the middle who
 * rewrites versions, MTU or window breaks both signatures. A box that shares no version with the
 * phone still answers with its own, so an older phone reports `unsupported_version` itself.
 */

import { concat, readU16, u16 } from "./bytes.js";
import { SessionError } from "./errors.js";

export const FLAG_BEGIN = 0x01;
export const FLAG_END = 0x02;
export const FLAG_ACK = 0x04;
export const FLAG_DATA = 0x08;
export const FLAG_CAPS = 0x20;
const KNOWN_DATA_FLAGS = FLAG_BEGIN | FLAG_END | FLAG_ACK | FLAG_DATA;
const MAGIC = [0x45, 0x42]; // "EB"

export const FRAMING_VERSION = 2; // = the session protocol version
export const MIN_MTU = 20;
export const MAX_MTU = 512;
export const MIN_WINDOW = 2;
export const MAX_WINDOW = 127;
export const DEFAULT_WINDOW = 96;
export const MAX_MESSAGE = 65535;
const CAPS_REQ_LEN = 8;
const CAPS_RSP_LEN = 7;

/** @typedef {"idle" | "await_caps" | "open" | "failed"} FramerState */

/**
 * One end of a framed link. The web client is always the phone (GATT central); the box role
 * exists so the test vectors can be re-derived in the browser from both ends.
 */
export class Framer {
  /**
   * @param {number} mtu
   * @param {number} [window]
   * @param {"phone" | "box"} [role]
   */
  constructor(mtu, window = DEFAULT_WINDOW, role = "phone") {
    if (!(MIN_MTU <= mtu && mtu <= MAX_MTU)) throw new RangeError(`mtu must be in [${MIN_MTU}, ${MAX_MTU}]`);
    if (!(MIN_WINDOW <= window && window <= MAX_WINDOW)) {
      throw new RangeError(`window must be in [${MIN_WINDOW}, ${MAX_WINDOW}]`);
    }
    this.role = role;
    /** @type {FramerState} */
    this.state = role === "phone" ? "idle" : "await_caps";
    /** @type {Uint8Array[]} */
    this._control = [];
    /** @type {Uint8Array} */
    this._capsRequest = new Uint8Array(0);
    /** request | response once open: the first bytes of the handshake transcript. @type {Uint8Array} */
    this.capabilities = new Uint8Array(0);
    /** @type {Uint8Array[]} what a failed box still owes an older phone (its version) */
    this._refusal = [];
    /** Set by a driver whose application queue is full: keep reading, grant no new window. */
    this.holdAcks = false;
    this.mtu = mtu;
    this.localWindow = window;
    this.peerWindow = 0;
    this.version = 0;
    // sending side (sequence numbers unbounded here, mod 256 on the wire)
    this._nextSeq = 0;
    this._acked = 0;
    /** @type {Uint8Array[]} */
    this._queue = [];
    this._offset = 0;
    this._queuedBytes = 0;
    // receiving side
    this._expectedSeq = 0;
    this._unackedReceived = 0;
    this._ackDue = false;
    /** @type {Uint8Array[] | null} */
    this._assembling = null;
    this._assemblingGot = 0;
    this._assemblingLen = 0;
  }

  get isOpen() {
    return this.state === "open";
  }

  /** Our fragments sent but not yet acknowledged. */
  get inFlight() {
    return this._nextSeq - this._acked;
  }

  /** Message bytes accepted by sendMessage() but not yet put into datagrams. */
  get queuedBytes() {
    return this._queuedBytes;
  }

  _checkUsable() {
    if (this.state === "failed") throw new SessionError("closed", "framer has failed; the link must be closed");
  }

  /** The capabilities request datagram that opens the link. */
  start() {
    if (this.role !== "phone" || this.state !== "idle") {
      throw new SessionError("unexpected_message", "start() is for a new phone-side framer");
    }
    this.state = "await_caps";
    const v = FRAMING_VERSION;
    this._capsRequest = Uint8Array.from([FLAG_CAPS, ...MAGIC, v, v, (this.mtu >> 8) & 0xff, this.mtu & 0xff, this.localWindow]);
    return this._capsRequest;
  }

  /** @param {Uint8Array} d */
  _onCaps(d) {
    const box = this.role === "box";
    if (d.length !== (box ? CAPS_REQ_LEN : CAPS_RSP_LEN)) {
      throw new SessionError("malformed", `capabilities ${box ? "request" : "response"} has the wrong length`);
    }
    if (d[1] !== MAGIC[0] || d[2] !== MAGIC[1]) throw new SessionError("malformed", "capabilities datagram has a bad magic");
    const mtu = readU16(d, box ? 5 : 4);
    const window = d[box ? 7 : 6];
    if (box) {
      if (!(d[3] <= FRAMING_VERSION && FRAMING_VERSION <= d[4])) {
        const m = this.mtu;
        this._refusal = [Uint8Array.from([FLAG_CAPS, ...MAGIC, FRAMING_VERSION, (m >> 8) & 0xff, m & 0xff, this.localWindow])];
        throw new SessionError("unsupported_version", "no common protocol version");
      }
    } else if (d[3] !== FRAMING_VERSION) {
      throw new SessionError("unsupported_version", "box chose an unsupported framing version");
    }
    if (!(MIN_MTU <= mtu && mtu <= MAX_MTU)) throw new SessionError("malformed", "peer datagram size out of range");
    if (!(MIN_WINDOW <= window && window <= MAX_WINDOW)) throw new SessionError("malformed", "peer window out of range");
    if (box) {
      this.mtu = Math.min(this.mtu, mtu);
      const m = this.mtu;
      const response = Uint8Array.from([FLAG_CAPS, ...MAGIC, FRAMING_VERSION, (m >> 8) & 0xff, m & 0xff, this.localWindow]);
      this._control.push(response);
      this.capabilities = concat(d, response);
    } else {
      if (mtu > this.mtu) throw new SessionError("malformed", "box chose a datagram size above ours");
      this.mtu = mtu;
      this.capabilities = concat(this._capsRequest, d);
    }
    this.peerWindow = window;
    this.version = FRAMING_VERSION;
    this.state = "open";
  }

  /**
   * Consume one datagram; return the messages it completed (usually zero or one).
   * @param {Uint8Array} datagram
   * @returns {Uint8Array[]}
   */
  receiveDatagram(datagram) {
    this._checkUsable();
    try {
      return this._receive(datagram);
    } catch (e) {
      this.state = "failed";
      throw e;
    }
  }

  /**
   * @param {Uint8Array} d
   * @returns {Uint8Array[]}
   */
  _receive(d) {
    if (d.length === 0) throw new SessionError("malformed", "empty datagram");
    if (d.length > this.mtu) throw new SessionError("oversize", "datagram larger than the agreed size");
    const flags = d[0];
    if (flags & FLAG_CAPS) {
      if (flags !== FLAG_CAPS || this.state !== "await_caps") {
        throw new SessionError("unexpected_message", "capabilities datagram in the wrong state");
      }
      this._onCaps(d);
      return [];
    }
    if (this.state !== "open") throw new SessionError("unexpected_message", "data before capabilities exchange");
    if (flags & ~KNOWN_DATA_FLAGS) throw new SessionError("malformed", "reserved framing flag set");
    if (!(flags & FLAG_DATA)) {
      if (flags !== FLAG_ACK || d.length !== 2) {
        throw new SessionError("malformed", "ack-only datagram must be exactly flags + ack");
      }
      this._onAck(d[1]);
      return [];
    }
    let pos = 1;
    if (flags & FLAG_ACK) {
      if (d.length < 2) throw new SessionError("malformed", "truncated ack");
      this._onAck(d[1]);
      pos = 2;
    }
    if (d.length < pos + 1) throw new SessionError("malformed", "truncated sequence number");
    const seq = d[pos];
    pos += 1;
    if (seq !== (this._expectedSeq & 0xff)) throw new SessionError("frame_sequence", "fragment out of sequence");
    this._expectedSeq += 1;
    this._unackedReceived += 1;
    if (this._unackedReceived > this.localWindow) {
      throw new SessionError("frame_window", "peer exceeded our receive window");
    }
    if (flags & FLAG_BEGIN) {
      if (this._assembling !== null) {
        throw new SessionError("malformed", "new message began before the previous one ended");
      }
      if (d.length < pos + 2) throw new SessionError("malformed", "truncated message length");
      const length = readU16(d, pos);
      pos += 2;
      if (length === 0) throw new SessionError("malformed", "zero-length message");
      this._assembling = [];
      this._assemblingGot = 0;
      this._assemblingLen = length;
    } else if (this._assembling === null) {
      throw new SessionError("malformed", "continuation fragment without a message");
    }
    const payload = d.subarray(pos);
    if (payload.length === 0) throw new SessionError("malformed", "data fragment without payload");
    if (this._assemblingGot + payload.length > this._assemblingLen) {
      throw new SessionError("oversize", "fragments exceed the announced message length");
    }
    this._assembling.push(payload.slice());
    this._assemblingGot += payload.length;
    if (this._unackedReceived >= Math.max(1, Math.floor(this.localWindow / 2))) this._ackDue = true;
    if (flags & FLAG_END) {
      if (this._assemblingGot !== this._assemblingLen) {
        throw new SessionError("malformed", "message ended before its announced length");
      }
      const message = concat(...this._assembling);
      this._assembling = null;
      this._ackDue = true;
      return [message];
    }
    return [];
  }

  /** @param {number} ack */
  _onAck(ack) {
    const delta = (ack - this._acked) & 0xff;
    if (delta >= this.inFlight) throw new SessionError("frame_sequence", "ack for a fragment that is not in flight");
    this._acked += delta + 1;
  }

  /**
   * Queue one message (1..65535 bytes) for sending.
   * @param {Uint8Array} message
   */
  sendMessage(message) {
    this._checkUsable();
    if (!(message.length > 0 && message.length <= MAX_MESSAGE)) {
      throw new SessionError("oversize", `message must be 1..${MAX_MESSAGE} bytes`);
    }
    this._queue.push(message.slice());
    this._queuedBytes += message.length;
  }

  /**
   * Everything that may be sent now: data within the peer window, and a due ack.
   * @returns {Uint8Array[]}
   */
  datagramsToSend() {
    this._checkUsable();
    const out = this._control;
    this._control = [];
    if (this.state !== "open") return out;
    while (this._queue.length > 0 && this.inFlight < this.peerWindow) out.push(this._nextFragment());
    if (this._ackDue && !this.holdAcks) {
      out.push(Uint8Array.from([FLAG_ACK, (this._expectedSeq - 1) & 0xff]));
      this._takeAck();
    }
    return out;
  }

  /** Datagrams a failed box still sends before closing (its version, to an older phone). */
  takeRefusal() {
    const out = this._refusal;
    this._refusal = [];
    return out;
  }

  /** An ack-only datagram for fragments received but not yet acked (for an idle timer). */
  flushAck() {
    this._checkUsable();
    if (this.state !== "open" || this._unackedReceived === 0) return null;
    this._takeAck();
    return Uint8Array.from([FLAG_ACK, (this._expectedSeq - 1) & 0xff]);
  }

  _takeAck() {
    this._ackDue = false;
    this._unackedReceived = 0;
  }

  _nextFragment() {
    const message = this._queue[0];
    const header = [0];
    let flags = FLAG_DATA;
    if (this._unackedReceived && !this.holdAcks) {
      flags |= FLAG_ACK;
      header.push((this._expectedSeq - 1) & 0xff);
      this._takeAck();
    }
    header.push(this._nextSeq & 0xff);
    if (this._offset === 0) {
      flags |= FLAG_BEGIN;
      header.push(...u16(message.length));
    }
    const room = this.mtu - header.length;
    const chunk = message.subarray(this._offset, this._offset + room);
    this._offset += chunk.length;
    this._queuedBytes -= chunk.length;
    if (this._offset === message.length) {
      flags |= FLAG_END;
      this._queue.shift();
      this._offset = 0;
    }
    header[0] = flags;
    this._nextSeq += 1;
    return concat(Uint8Array.from(header), chunk);
  }
}
