// @ts-check
/**
 * Handshake wire messages and key schedule (SIGMA-I over P-256), as pure async functions.
 * Mirrors edgebox/session/handshake.py; spec: docs/protocol.md section 4 (version 2: the 15
 * capabilities bytes open every transcript hash; plaintext ERROR only before the receiver holds
 * traffic keys).
 *
 *   HELLO      phone -> box  0x01 | ver | mode | phone_random(32) | phone_eph(65) [| secret_id(8)]
 *   BOX_AUTH   box -> phone  0x02 | session_id(8) | box_random(32) | box_eph(65) | sealed(177)
 *   PHONE_AUTH phone -> box  0x03 | sealed(177)
 *   ERROR      either        0x7F | code(u16)
 *
 *   psk = H("edgebox v2 pairing psk" | secret) (pairing) or 32 zero bytes; ms = Extract(psk, ECDH)
 *   th2 = H(caps | HELLO | BOX_AUTH[0:106]), th3 = H(caps | HELLO | BOX_AUTH), th4 = th3 + PHONE_AUTH
 *   sealed_x = AES-GCM(Expand(ms, "x hs key", th), 0^12, th, pub | sig | HMAC(Expand(ms, "x finished", th), "x" | pub))
 */

import { concat, readU16, u16, utf8 } from "./bytes.js";
import * as c from "./crypto.js";
import { ErrorCode, SessionError, errorName } from "./errors.js";

export const PROTOCOL_VERSION = 2;
export const RANDOM_LEN = 32;
export const SESSION_ID_LEN = 8;
export const SECRET_ID_LEN = 8;
export const SECRET_LEN = 16;
export const MSG_HELLO = 0x01;
export const MSG_BOX_AUTH = 0x02;
export const MSG_PHONE_AUTH = 0x03;
export const MSG_ERROR = 0x7f;
export const MODE_SESSION = 1;
export const MODE_PAIRING = 2;
const IDENTITY_LEN = c.POINT_LEN + c.SIG_LEN + 32;
export const SEALED_IDENTITY_LEN = IDENTITY_LEN + 16;
export const BOX_AUTH_CLEAR_LEN = 1 + SESSION_ID_LEN + RANDOM_LEN + c.POINT_LEN;
const ZERO_NONCE = new Uint8Array(12);
const ZERO_PSK = new Uint8Array(32);

/**
 * @param {number} mode
 * @param {Uint8Array} random
 * @param {Uint8Array} ephemeral
 * @param {Uint8Array | null} secretId
 */
export function encodeHello(mode, random, ephemeral, secretId) {
  const tail = mode === MODE_PAIRING && secretId ? secretId : new Uint8Array(0);
  return concat(Uint8Array.from([MSG_HELLO, PROTOCOL_VERSION, mode]), random, ephemeral, tail);
}

/**
 * @typedef {{sessionId: Uint8Array, random: Uint8Array, ephemeral: Uint8Array, sealed: Uint8Array, clear: Uint8Array}} BoxAuth
 */

/**
 * @param {Uint8Array} data
 * @returns {Promise<BoxAuth>}
 */
export async function decodeBoxAuth(data) {
  if (data.length !== BOX_AUTH_CLEAR_LEN + SEALED_IDENTITY_LEN || data[0] !== MSG_BOX_AUTH) {
    throw new SessionError("malformed", "BOX_AUTH has the wrong type or length");
  }
  let p = 1;
  const sessionId = data.slice(p, p + SESSION_ID_LEN);
  p += SESSION_ID_LEN;
  const random = data.slice(p, p + RANDOM_LEN);
  p += RANDOM_LEN;
  const ephemeral = data.slice(p, p + c.POINT_LEN);
  await c.importPublic(ephemeral, "ECDH"); // invalid-curve points never reach ECDH
  return { sessionId, random, ephemeral, sealed: data.slice(BOX_AUTH_CLEAR_LEN), clear: data.slice(0, BOX_AUTH_CLEAR_LEN) };
}

/** @param {number} code */
export function encodeError(code) {
  return concat(Uint8Array.from([MSG_ERROR]), u16(code));
}

/** @param {Uint8Array} data */
export function decodeError(data) {
  if (data.length !== 3 || data[0] !== MSG_ERROR) throw new SessionError("malformed", "ERROR has the wrong length");
  const value = readU16(data, 1);
  return Object.values(ErrorCode).includes(/** @type {any} */ (value)) ? errorName(value) : "internal";
}

/**
 * What the box stores for a pairing secret (never the secret itself).
 * @param {Uint8Array} secret
 */
export function pairingPsk(secret) {
  return c.sha256(c.LABEL_PREFIX, utf8("pairing psk"), secret);
}

/**
 * @param {Uint8Array} shared
 * @param {Uint8Array | null} psk
 */
export function masterSecret(shared, psk) {
  return c.hkdfExtract(psk ?? ZERO_PSK, shared);
}

/**
 * AEAD{pub | sig | mac} under the role's handshake key.
 * @param {Uint8Array} ms
 * @param {"box" | "phone"} role
 * @param {Uint8Array} th
 * @param {c.Identity} identity
 */
export async function sealIdentity(ms, role, th, identity) {
  const key = await c.hkdfExpand(ms, `${role} hs key`, th);
  const fin = await c.hkdfExpand(ms, `${role} finished`, th);
  const sig = await identity.sign(concat(c.LABEL_PREFIX, utf8(`${role} sig`), th));
  const tag = await c.hmac(fin, utf8(role), identity.point);
  return c.aeadSeal(await c.aesKey(key), ZERO_NONCE, th, concat(identity.point, sig, tag));
}

/**
 * Decrypt and verify a sealed identity; return the verified public point.
 * @param {Uint8Array} ms
 * @param {"box" | "phone"} role
 * @param {Uint8Array} th
 * @param {Uint8Array} sealed
 */
export async function openIdentity(ms, role, th, sealed) {
  const key = await c.hkdfExpand(ms, `${role} hs key`, th);
  const fin = await c.hkdfExpand(ms, `${role} finished`, th);
  const plain = await c.aeadOpen(await c.aesKey(key), ZERO_NONCE, th, sealed);
  if (plain === null) throw new SessionError("auth_failed", `${role} identity failed to decrypt`);
  const point = plain.slice(0, c.POINT_LEN);
  const sig = plain.slice(c.POINT_LEN, c.POINT_LEN + c.SIG_LEN);
  const tag = plain.slice(c.POINT_LEN + c.SIG_LEN);
  await c.verify(point, sig, concat(c.LABEL_PREFIX, utf8(`${role} sig`), th));
  await c.hmacVerify(fin, tag, utf8(role), point);
  return point;
}

/**
 * (phone->box, box->phone) initial traffic secrets.
 * @param {Uint8Array} ms
 * @param {Uint8Array} th4
 */
export async function trafficSecrets(ms, th4) {
  return [await c.hkdfExpand(ms, "p2b traffic", th4), await c.hkdfExpand(ms, "b2p traffic", th4)];
}
