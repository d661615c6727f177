// @ts-check
/**
 * Cryptographic building blocks over WebCrypto (P-256 ECDH/ECDSA, HKDF-SHA-256, AES-256-GCM),
 * mirroring edgebox/session/crypto.py.
 *
 * Theory of operation: thin, strict wrappers so that every protocol decision is in one place.
 * Public keys travel only as 65-byte uncompressed SEC1 points and are validated before use: the
 * length and the 0x04 prefix here (compressed, hybrid and infinity encodings refused), the
 * on-curve and coordinate-range checks by WebCrypto's raw import (BoringSSL), which throws on any
 * invalid point: the defence against invalid-curve attacks (CVE-2018-5383). ECDSA signatures are
 * WebCrypto's native IEEE P1363 form, i.e. exactly the 64-byte r||s the protocol uses. HKDF is
 * split into Extract (HMAC(salt, ikm)) and a one-block Expand (HMAC(prk, info | 0x01)), because the
 * key schedule expands from a PRK. All functions are async (WebCrypto is); none keeps state.
 */

import { concat, utf8 } from "./bytes.js";
import { SessionError } from "./errors.js";

export const POINT_LEN = 65;
export const SIG_LEN = 64;
export const HASH_LEN = 32;
export const LABEL_PREFIX = utf8("edgebox v2 ");

const subtle = globalThis.crypto.subtle;
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const ECDSA = { name: "ECDSA", namedCurve: "P-256" };
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" };
const HMAC = { name: "HMAC", hash: "SHA-256" };

/**
 * WebCrypto wants a BufferSource backed by an ArrayBuffer; copy views of anything else.
 * @param {Uint8Array} b
 * @returns {Uint8Array<ArrayBuffer>}
 */
function buf(b) {
  return b.buffer instanceof ArrayBuffer ? /** @type {Uint8Array<ArrayBuffer>} */ (b) : new Uint8Array(b);
}

/** @param {...Uint8Array} parts */
export async function sha256(...parts) {
  return new Uint8Array(await subtle.digest("SHA-256", buf(concat(...parts))));
}

/**
 * @param {Uint8Array} key
 * @param {...Uint8Array} parts
 */
export async function hmac(key, ...parts) {
  const k = await subtle.importKey("raw", buf(key), HMAC, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, buf(concat(...parts))));
}

/**
 * Constant-time-enough check of an HMAC tag: WebCrypto's verify compares in constant time.
 * @param {Uint8Array} key
 * @param {Uint8Array} tag
 * @param {...Uint8Array} parts
 */
export async function hmacVerify(key, tag, ...parts) {
  const k = await subtle.importKey("raw", buf(key), HMAC, false, ["verify"]);
  if (!(await subtle.verify("HMAC", k, buf(tag), buf(concat(...parts))))) {
    throw new SessionError("auth_failed", "finished MAC did not verify");
  }
}

/**
 * @param {Uint8Array} salt
 * @param {Uint8Array} ikm
 */
export function hkdfExtract(salt, ikm) {
  return hmac(salt, ikm);
}

/**
 * HKDF-Expand(prk, LABEL_PREFIX | label | context, 32): a single HMAC block.
 * @param {Uint8Array} prk
 * @param {string} label
 * @param {Uint8Array} [context]
 */
export function hkdfExpand(prk, label, context = new Uint8Array(0)) {
  return hmac(prk, LABEL_PREFIX, utf8(label), context, new Uint8Array([1]));
}

/**
 * Validate and import a peer's public point (ECDH or ECDSA use).
 * @param {Uint8Array} point
 * @param {"ECDH" | "ECDSA"} use
 */
export async function importPublic(point, use) {
  if (point.length !== POINT_LEN || point[0] !== 0x04) {
    throw new SessionError("invalid_point", "public key is not a 65-byte uncompressed P-256 point");
  }
  try {
    return await subtle.importKey("raw", buf(point), use === "ECDH" ? ECDH : ECDSA, true, use === "ECDH" ? [] : ["verify"]);
  } catch {
    throw new SessionError("invalid_point", "public key is not on the P-256 curve");
  }
}

/** @param {CryptoKey} key */
export async function exportPoint(key) {
  return new Uint8Array(await subtle.exportKey("raw", key));
}

/**
 * A fresh ephemeral ECDH key pair; the private half is not extractable.
 * @returns {Promise<{privateKey: CryptoKey, point: Uint8Array}>}
 */
export async function generateEphemeral() {
  const pair = /** @type {CryptoKeyPair} */ (await subtle.generateKey(ECDH, false, ["deriveBits"]));
  return { privateKey: pair.privateKey, point: await exportPoint(pair.publicKey) };
}

/**
 * PKCS#8 DER for a raw P-256 scalar (no public key: WebCrypto derives it). Test vectors only.
 * @param {Uint8Array} scalar
 */
export function pkcs8FromScalar(scalar) {
  if (scalar.length !== 32) throw new TypeError("private scalar must be 32 bytes");
  const head = Uint8Array.from([
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
  ]);
  return concat(head, scalar);
}

/**
 * Import a known scalar as an ECDH private key (test vectors inject fixed ephemerals).
 * @param {Uint8Array} scalar
 */
export function importEcdhScalar(scalar) {
  return subtle.importKey("pkcs8", buf(pkcs8FromScalar(scalar)), ECDH, false, ["deriveBits"]);
}

/**
 * Import a known scalar as an ECDSA signing key (test vectors, and the Python interop fixture).
 * @param {Uint8Array} scalar
 */
export function importEcdsaScalar(scalar) {
  return subtle.importKey("pkcs8", buf(pkcs8FromScalar(scalar)), ECDSA, false, ["sign"]);
}

/**
 * @param {CryptoKey} privateKey
 * @param {Uint8Array} peerPoint
 */
export async function ecdh(privateKey, peerPoint) {
  const peer = await importPublic(peerPoint, "ECDH");
  return new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: peer }, privateKey, 256));
}

/**
 * ECDSA-P256-SHA256, 64-byte r||s (WebCrypto's native form).
 * @param {CryptoKey} privateKey
 * @param {Uint8Array} message
 */
export async function sign(privateKey, message) {
  return new Uint8Array(await subtle.sign(ECDSA_SHA256, privateKey, buf(message)));
}

/**
 * @param {Uint8Array} point
 * @param {Uint8Array} signature
 * @param {Uint8Array} message
 */
export async function verify(point, signature, message) {
  if (signature.length !== SIG_LEN) throw new SessionError("auth_failed", "signature has the wrong length");
  const key = await importPublic(point, "ECDSA");
  if (!(await subtle.verify(ECDSA_SHA256, key, buf(signature), buf(message)))) {
    throw new SessionError("auth_failed", "signature did not verify");
  }
}

/** @param {Uint8Array} raw 32-byte key */
export function aesKey(raw) {
  return subtle.importKey("raw", buf(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/**
 * @param {CryptoKey} key
 * @param {Uint8Array} nonce
 * @param {Uint8Array} aad
 * @param {Uint8Array} plaintext
 */
export async function aeadSeal(key, nonce, aad, plaintext) {
  return new Uint8Array(
    await subtle.encrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(plaintext)),
  );
}

/**
 * Returns null when the tag does not verify (the caller names the cause).
 * @param {CryptoKey} key
 * @param {Uint8Array} nonce
 * @param {Uint8Array} aad
 * @param {Uint8Array} sealed ciphertext | tag
 * @returns {Promise<Uint8Array | null>}
 */
export async function aeadOpen(key, nonce, aad, sealed) {
  try {
    return new Uint8Array(
      await subtle.decrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(sealed)),
    );
  } catch {
    return null;
  }
}

/**
 * The phone's long-term identity as the handshake uses it: a public point and a signer. The
 * production identity is a non-extractable WebCrypto key (keystore.js); test vectors inject a
 * deterministic RFC 6979 signer (WebCrypto's ECDSA is randomised).
 * @typedef {{point: Uint8Array, sign(message: Uint8Array): Promise<Uint8Array>}} Identity
 */

/**
 * @param {CryptoKey} privateKey ECDSA P-256 signing key (may be non-extractable)
 * @param {Uint8Array} point its public point
 * @returns {Identity}
 */
export function webCryptoIdentity(privateKey, point) {
  return { point, sign: (m) => sign(privateKey, m) };
}
