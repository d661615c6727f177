// @ts-check
/**
 * Web Bluetooth backend of the transport seam: the box's frozen GATT service (docs/ble.md,
 * edgebox/ble/layout.py) as a DatagramLink. A thin layer on purpose: everything above it is the
 * same code the WebSocket test runs against the real box.
 *
 *   RX   (write without response): phone -> box, one write = one datagram
 *   TX   (notify): box -> phone, one notification = link tag(4) | datagram
 *   INFO (read): JSON {"v":1, "proto", "box", "key", "tag", "mtu"} for this connection
 *
 * Theory of operation: `requestBox()` shows the browser's chooser filtered on the service UUID (a
 * user gesture is required); `openGattLink(device)` connects, discovers the service, reads INFO
 * (the datagram size: Web Bluetooth does not expose the ATT MTU, the box does), subscribes to TX
 * and returns the link. Notifications whose tag is not ours (BlueZ < 5.70 broadcasts to every
 * subscriber) are dropped. Disconnection closes the link.
 */

import { equal, fromHex, fromUtf8 } from "../bytes.js";
import { LinkClosed, PhoneError } from "../errors.js";
import { DatagramQueue } from "./link.js";

/** @typedef {import("./link.js").DatagramLink} DatagramLink */

export const SERVICE_UUID = "6b1e0000-3c57-4f0e-9a5e-2f7b5e0d1a01";
export const RX_UUID = "6b1e0001-3c57-4f0e-9a5e-2f7b5e0d1a01";
export const TX_UUID = "6b1e0002-3c57-4f0e-9a5e-2f7b5e0d1a01";
export const INFO_UUID = "6b1e0003-3c57-4f0e-9a5e-2f7b5e0d1a01";
export const LAYOUT_VERSION = 1;
export const TAG_LEN = 4;
const MIN_DATAGRAM = 23 - 5 - TAG_LEN;
const MAX_DATAGRAM = 512 - TAG_LEN;

/** @typedef {{proto: number, boxId: string, keyHash: string, tag: Uint8Array, mtu: number}} LinkInfo */

/**
 * Parse the INFO characteristic value (layout version 1), refusing anything malformed.
 * @param {DataView} value
 * @returns {LinkInfo}
 */
export function decodeInfo(value) {
  const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (bytes.length > 400) throw new PhoneError("box INFO value too long", "ble_info_invalid");
  /** @type {any} */
  let o;
  try {
    o = JSON.parse(fromUtf8(bytes));
  } catch {
    throw new PhoneError("box INFO value is not JSON", "ble_info_invalid");
  }
  if (typeof o !== "object" || o === null || o.v !== LAYOUT_VERSION) {
    throw new PhoneError("unsupported box BLE layout", "ble_info_invalid");
  }
  const { proto, box, key, tag, mtu } = o;
  if (!Number.isInteger(proto) || typeof box !== "string" || typeof key !== "string" || typeof tag !== "string") {
    throw new PhoneError("box INFO field of the wrong type", "ble_info_invalid");
  }
  if (!Number.isInteger(mtu) || mtu < MIN_DATAGRAM || mtu > MAX_DATAGRAM) {
    throw new PhoneError("box INFO datagram size out of range", "ble_info_invalid");
  }
  let tagBytes;
  try {
    tagBytes = fromHex(tag);
    fromHex(key);
  } catch {
    throw new PhoneError("box INFO hex field malformed", "ble_info_invalid");
  }
  if (tagBytes.length !== TAG_LEN) throw new PhoneError("box INFO tag has the wrong length", "ble_info_invalid");
  return { proto, boxId: box, keyHash: key.toLowerCase(), tag: tagBytes, mtu };
}

/** Is Web Bluetooth usable here (secure context, supporting browser)? */
export function bluetoothAvailable() {
  return globalThis.isSecureContext && typeof navigator !== "undefined" && "bluetooth" in navigator;
}

/**
 * Show the browser's device chooser for edgebox boxes (needs a user gesture).
 * @param {{namePrefix?: string}} [opts]
 */
export async function requestBox(opts = {}) {
  if (!bluetoothAvailable()) throw new PhoneError("Web Bluetooth is not available", "bluetooth_unavailable");
  /** @type {BluetoothLEScanFilter[]} */
  const filters = [{ services: [SERVICE_UUID] }];
  if (opts.namePrefix) filters.push({ namePrefix: opts.namePrefix });
  try {
    return await navigator.bluetooth.requestDevice({ filters, optionalServices: [SERVICE_UUID] });
  } catch (e) {
    if (e instanceof DOMException && e.name === "NotFoundError") throw new PhoneError("no box was chosen", "bluetooth_cancelled");
    throw new PhoneError("Bluetooth is not available", "bluetooth_unavailable");
  }
}

/** @implements {DatagramLink} */
export class GattLink {
  /**
   * @param {BluetoothDevice} device
   * @param {BluetoothRemoteGATTCharacteristic} rx
   * @param {BluetoothRemoteGATTCharacteristic} tx
   * @param {LinkInfo} info
   */
  constructor(device, rx, tx, info) {
    this.device = device;
    this.rx = rx;
    this.tx = tx;
    this.info = info;
    this.mtu = info.mtu;
    this.peer = `ble:${device.id}`;
    this._in = new DatagramQueue();
    this._withResponse = !rx.properties.writeWithoutResponse;
    this._onValue = () => {
      const v = this.tx.value;
      if (!v) return;
      const bytes = new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
      if (bytes.length < TAG_LEN || !equal(bytes.subarray(0, TAG_LEN), this.info.tag)) return; // another phone's
      this._in.put(bytes.subarray(TAG_LEN));
    };
    this._onGone = () => this._in.close(new LinkClosed("the box disconnected"));
    tx.addEventListener("characteristicvaluechanged", this._onValue);
    device.addEventListener("gattserverdisconnected", this._onGone);
  }

  /** @param {Uint8Array} datagram */
  async send(datagram) {
    if (this._in.closed) throw new LinkClosed("link is closed");
    if (datagram.length > this.mtu) throw new RangeError(`datagram of ${datagram.length} bytes exceeds link MTU ${this.mtu}`);
    try {
      const copy = new Uint8Array(datagram);
      if (this._withResponse) await this.rx.writeValueWithResponse(copy);
      else await this.rx.writeValueWithoutResponse(copy);
    } catch {
      this._in.close(new LinkClosed("Bluetooth write failed"));
      throw new LinkClosed("Bluetooth write failed");
    }
  }

  recv() {
    return this._in.take();
  }

  async close() {
    this._in.close();
    this.tx.removeEventListener("characteristicvaluechanged", this._onValue);
    this.device.removeEventListener("gattserverdisconnected", this._onGone);
    if (this.device.gatt?.connected) this.device.gatt.disconnect();
  }
}

/**
 * Connect to a chosen box, discover the service, read INFO, subscribe to TX.
 * @param {BluetoothDevice} device
 * @param {{expectBoxId?: string | null}} [opts]
 */
export async function openGattLink(device, opts = {}) {
  if (!device.gatt) throw new PhoneError("this device has no GATT server", "bluetooth_unavailable");
  let server;
  try {
    server = await device.gatt.connect();
  } catch {
    throw new LinkClosed("cannot connect to the box over Bluetooth");
  }
  try {
    const service = await server.getPrimaryService(SERVICE_UUID);
    const [rx, tx, infoChar] = await Promise.all([
      service.getCharacteristic(RX_UUID),
      service.getCharacteristic(TX_UUID),
      service.getCharacteristic(INFO_UUID),
    ]);
    const info = decodeInfo(await infoChar.readValue());
    if (opts.expectBoxId && info.boxId !== opts.expectBoxId) {
      throw new PhoneError("that is not the box this phone paired with", "box_mismatch");
    }
    const link = new GattLink(device, rx, tx, info);
    await tx.startNotifications();
    return link;
  } catch (e) {
    server.disconnect();
    if (e instanceof PhoneError) throw e;
    throw new LinkClosed(`the box's Bluetooth service is not usable (${e instanceof Error ? e.name : "error"})`);
  }
}

