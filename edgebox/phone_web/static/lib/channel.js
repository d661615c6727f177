// @ts-check
/**
 * Async driver that runs the sans-I/O framer over a DatagramLink. Mirrors
 * edgebox/transport/channel.py.
 *
 * Theory of operation: one reader loop owns `link.recv()` and never waits for the application:
 * it feeds each datagram to the `Framer`, queues completed messages and immediately sends whatever
 * the framer now allows (acks, more fragments). When `recvQueue` messages are waiting it sets the
 * framer's `holdAcks`: acks for our own fragments are still read (no deadlock while both sides
 * send), but the box gets no new window until the application catches up (back-pressure end to
 * end, at most one window buffered). `send(message)` queues a message in
 * the framer and pushes fragments as the peer's window permits, waiting for acks when it is full.
 * A fragment unacknowledged for `ackTimeoutMs`, a framing error or link loss fails the channel;
 * every waiter then gets that error.
 */

import { LinkClosed, SessionError } from "./errors.js";
import { DEFAULT_WINDOW, Framer, MAX_MTU } from "./framing.js";

export const ACK_TIMEOUT_MS = 15000;
export const OPEN_TIMEOUT_MS = 15000;

export class FramedChannel {
  /**
   * @param {import("./transport/link.js").DatagramLink} link
   * @param {{window?: number, recvQueue?: number, ackTimeoutMs?: number}} [opts]
   */
  constructor(link, opts = {}) {
    this.link = link;
    this.framer = new Framer(Math.min(link.mtu, MAX_MTU), opts.window ?? DEFAULT_WINDOW);
    this._recvQueue = opts.recvQueue ?? 8;
    this._ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    /** @type {Uint8Array[]} */
    this._messages = [];
    /** @type {(() => void)[]} */
    this._waiters = [];
    /** @type {Error | null} */
    this.error = null;
    this._sending = Promise.resolve();
    this._reader = null;
    /** Datagrams sent and received (for benches and the BLE test). */
    this.stats = { sent: 0, received: 0, largestSent: 0 };
  }

  _wake() {
    for (const w of this._waiters.splice(0)) w();
  }

  /** @returns {Promise<void>} */
  _changed(timeoutMs = 0) {
    return new Promise((resolve) => {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
      this._waiters.push(done);
      if (timeoutMs > 0) timer = setTimeout(done, timeoutMs);
    });
  }

  /** @param {Error} e */
  _fail(e) {
    if (this.error === null) this.error = e;
    this._wake();
  }

  _raiseIfFailed() {
    if (this.error !== null) throw this.error;
  }

  /** Run the capabilities exchange and start the reader. */
  async open(timeoutMs = OPEN_TIMEOUT_MS) {
    await this._sendDatagram(this.framer.start());
    this._reader = this._readLoop();
    const deadline = Date.now() + timeoutMs;
    while (!this.framer.isOpen && this.error === null) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this._fail(new SessionError("timeout", "capabilities exchange timed out"));
        break;
      }
      await this._changed(left);
    }
    this._raiseIfFailed();
  }

  /** @param {Uint8Array} d */
  async _sendDatagram(d) {
    this.stats.sent += 1;
    this.stats.largestSent = Math.max(this.stats.largestSent, d.length);
    await this.link.send(d);
  }

  async _readLoop() {
    try {
      for (;;) {
        const datagram = await this.link.recv();
        this.stats.received += 1;
        const messages = this.framer.receiveDatagram(datagram);
        for (const m of messages) this._messages.push(m);
        if (messages.length > 0) this._wake();
        this.framer.holdAcks = this._messages.length >= this._recvQueue;
        await this._flush();
        this._wake();
      }
    } catch (e) {
      this._fail(e instanceof Error ? e : new LinkClosed("transport failed"));
    }
  }

  /** Send what the framer allows now (serialised so datagrams keep their order). */
  _flush() {
    const run = this._sending.then(async () => {
      if (this.error !== null || this.framer.state === "failed") return;
      for (const d of this.framer.datagramsToSend()) await this._sendDatagram(d);
    });
    this._sending = run.catch((e) => this._fail(e instanceof Error ? e : new LinkClosed("send failed")));
    return this._sending;
  }

  /**
   * Queue one message and wait until all of it has been handed to the link.
   * @param {Uint8Array} message
   */
  async send(message) {
    this._raiseIfFailed();
    this.framer.sendMessage(message);
    for (;;) {
      await this._flush();
      this._raiseIfFailed();
      if (this.framer.queuedBytes === 0) return;
      const start = Date.now();
      while (this.error === null && this.framer.inFlight >= this.framer.peerWindow) {
        const left = this._ackTimeoutMs - (Date.now() - start);
        if (left <= 0) {
          this._fail(new SessionError("timeout", "box stopped acknowledging"));
          break;
        }
        await this._changed(left);
      }
      this._raiseIfFailed();
    }
  }

  /**
   * The next complete message; rejects with the channel's error once it has failed.
   * @returns {Promise<Uint8Array>}
   */
  async recv() {
    for (;;) {
      const m = this._messages.shift();
      if (m !== undefined) {
        if (this.framer.holdAcks && this._messages.length < this._recvQueue) {
          this.framer.holdAcks = false;
          this._flush(); // the ack that was held back
        }
        return m;
      }
      this._raiseIfFailed();
      await this._changed();
    }
  }

  async close() {
    this._fail(new LinkClosed("channel closed"));
    await this.link.close();
  }
}
