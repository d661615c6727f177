// @ts-check
/**
 * The transport seam of the web phone, the same as edgebox.transport.DatagramLink: one link to the
 * box that carries datagrams of at most `mtu` bytes, in order. `send` may wait (back-pressure) and
 * never drops silently; `recv` resolves to the next datagram or rejects with `LinkClosed`. The
 * WebSocket (development) and Web Bluetooth (GATT) backends implement it; everything above it
 * (framing, session, UI) is the same whatever the transport.
 *
 * @typedef {{readonly mtu: number, readonly peer: string,
 *            send(datagram: Uint8Array): Promise<void>,
 *            recv(): Promise<Uint8Array>,
 *            close(): Promise<void>}} DatagramLink
 */

import { LinkClosed } from "../errors.js";

/** An unbounded FIFO of datagrams with a blocking `take()`, closable once with a reason. */
export class DatagramQueue {
  constructor() {
    /** @type {Uint8Array[]} */
    this._items = [];
    /** @type {((v: Uint8Array) => void)[]} */
    this._takers = [];
    /** @type {((e: Error) => void)[]} */
    this._failers = [];
    /** @type {Error | null} */
    this.closed = null;
  }

  /** @param {Uint8Array} item */
  put(item) {
    if (this.closed) return;
    const taker = this._takers.shift();
    if (taker) {
      this._failers.shift();
      taker(item);
    } else {
      this._items.push(item);
    }
  }

  /** @returns {Promise<Uint8Array>} */
  take() {
    const item = this._items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this._takers.push(resolve);
      this._failers.push(reject);
    });
  }

  /** @param {Error} [reason] */
  close(reason = new LinkClosed("link is closed")) {
    if (this.closed) return;
    this.closed = reason;
    this._takers = [];
    for (const fail of this._failers.splice(0)) fail(reason);
  }

  get size() {
    return this._items.length;
  }
}
