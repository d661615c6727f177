// @ts-check
/**
 * Byte helpers shared by every layer: concatenation, hex, big-endian integers, constant-time
 * comparison, UTF-8 and RFC 4648 base32 (the pairing code's alphabet).
 *
 * Theory of operation: the protocol modules only ever handle `Uint8Array`s; these helpers keep
 * them free of ad-hoc DataView code. Nothing here allocates more than its result.
 */

const ENC = new TextEncoder();
const DEC = new TextDecoder("utf-8", { fatal: true });
const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/**
 * @param {...Uint8Array} parts
 * @returns {Uint8Array}
 */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** @param {Uint8Array} b */
export function toHex(b) {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** @param {string} s */
export function fromHex(s) {
  if (s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) throw new TypeError("not a hex string");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** @param {string} s */
export function utf8(s) {
  return ENC.encode(s);
}

/**
 * Strict UTF-8 decoding (throws TypeError on invalid input).
 * @param {Uint8Array} b
 */
export function fromUtf8(b) {
  return DEC.decode(b);
}

/**
 * Constant-time equality of two byte strings (length is not secret).
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** @param {number} v */
export function u16(v) {
  return new Uint8Array([(v >>> 8) & 0xff, v & 0xff]);
}

/**
 * @param {Uint8Array} b
 * @param {number} off
 */
export function readU16(b, off) {
  return (b[off] << 8) | b[off + 1];
}

/**
 * @param {Uint8Array} b
 * @param {number} off
 */
export function readU32(b, off) {
  return ((b[off] << 24) >>> 0) + (b[off + 1] << 16) + (b[off + 2] << 8) + b[off + 3];
}

/** @param {number} v */
export function u32(v) {
  return new Uint8Array([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

/**
 * A 12-byte AES-GCM nonce: 4 zero bytes then the counter as a big-endian u64 (counter < 2^53).
 * @param {number} counter
 */
export function counterNonce(counter) {
  const n = new Uint8Array(12);
  const hi = Math.floor(counter / 0x100000000);
  const lo = counter >>> 0;
  const dv = new DataView(n.buffer);
  dv.setUint32(4, hi);
  dv.setUint32(8, lo);
  return n;
}

/**
 * RFC 4648 base32, no padding.
 * @param {Uint8Array} b
 */
export function base32Encode(b) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const x of b) {
    value = (value << 8) | x;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * RFC 4648 base32 without padding (case-insensitive); null if the text is not valid base32.
 * Trailing bits must be zero, as Python's b32decode requires.
 * @param {string} s
 * @returns {Uint8Array | null}
 */
export function base32Decode(s) {
  const text = s.toUpperCase().replace(/=+$/, "");
  if ([1, 3, 6].includes(text.length % 8)) return null;
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) return null;
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
    value &= (1 << bits) - 1;
  }
  if (value !== 0) return null;
  return new Uint8Array(out);
}
