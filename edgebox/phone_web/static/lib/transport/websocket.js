// @ts-check
/**
 * WebSocket development transport: one binary WebSocket message = one datagram. The box side is
 * edgebox/transport/websocket.py, enabled only by `[dev] websocket = true` (never in the shipped
 * config). It exists so the whole web client (framing, handshake, records, UI) runs against the
 * real Python box in a browser without Bluetooth; it adds nothing to security (the session is
 * end-to-end authenticated and encrypted over any transport).
 */

import { LinkClosed } from "../errors.js";
import { DatagramQueue } from "./link.js";

/** @typedef {import("./link.js").DatagramLink} DatagramLink */

const HIGH_WATER = 64 * 1024;

/** @implements {DatagramLink} */
export class WebSocketLink {
  /**
   * @param {WebSocket} ws an open socket
   * @param {number} mtu
   */
  constructor(ws, mtu) {
    this.ws = ws;
    this.mtu = mtu;
    this.peer = `ws:${new URL(ws.url).host}`;
    this._in = new DatagramQueue();
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this._in.put(new Uint8Array(ev.data));
      else this._fail("box sent a text message on the datagram socket");
    };
    ws.onclose = () => this._in.close(new LinkClosed("the box closed the connection"));
    ws.onerror = () => this._in.close(new LinkClosed("the connection to the box failed"));
  }

  /** @param {string} why */
  _fail(why) {
    this._in.close(new LinkClosed(why));
    this.ws.close();
  }

  /** @param {Uint8Array} datagram */
  async send(datagram) {
    if (this._in.closed || this.ws.readyState !== WebSocket.OPEN) throw new LinkClosed("link is closed");
    if (datagram.length > this.mtu) throw new RangeError(`datagram of ${datagram.length} bytes exceeds link MTU ${this.mtu}`);
    while (this.ws.bufferedAmount > HIGH_WATER) {
      await new Promise((r) => setTimeout(r, 5));
      if (this.ws.readyState !== WebSocket.OPEN) throw new LinkClosed("link is closed");
    }
    this.ws.send(datagram);
  }

  recv() {
    return this._in.take();
  }

  async close() {
    this._in.close();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
  }
}

/**
 * Open a WebSocket link to `url` (ws:// or wss://).
 * @param {string} url
 * @param {{mtu?: number, timeoutMs?: number}} [opts]
 * @returns {Promise<WebSocketLink>}
 */
export function connectWebSocket(url, opts = {}) {
  const mtu = opts.mtu ?? 244;
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      reject(new LinkClosed("not a usable box address"));
      return;
    }
    const timer = setTimeout(() => {
      ws.close();
      reject(new LinkClosed("the box did not answer"));
    }, opts.timeoutMs ?? 10000);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(new WebSocketLink(ws, mtu));
    };
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new LinkClosed("cannot reach the box"));
    };
  });
}
