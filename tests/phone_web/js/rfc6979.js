// @ts-check
/**
 * Deterministic ECDSA P-256/SHA-256 (RFC 6979) in plain BigInt arithmetic: test harness only.
 *
 * WebCrypto's ECDSA is randomised, so a browser cannot reproduce the signatures inside the test
 * vectors (which Python makes deterministically) with it. This signer, injected into the same
 * handshake code as the production WebCrypto key, lets the page reproduce BOX_AUTH and PHONE_AUTH
 * byte for byte; every signature it makes is also verified with WebCrypto's ECDSA. Never shipped:
 * it lives under tests/ and is not constant-time.
 */

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const A = P - 3n;
const G = [
  0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
];

/** @param {bigint} a @param {bigint} m */
const mod = (a, m) => ((a % m) + m) % m;

/** @param {bigint} b @param {bigint} e @param {bigint} m */
function pow(b, e, m) {
  let r = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

/** @param {bigint} a @param {bigint} m */
const inv = (a, m) => pow(a, m - 2n, m);

/**
 * Affine point addition (null = infinity).
 * @param {bigint[] | null} p1
 * @param {bigint[] | null} p2
 * @returns {bigint[] | null}
 */
function add(p1, p2) {
  if (p1 === null) return p2;
  if (p2 === null) return p1;
  const [x1, y1] = p1;
  const [x2, y2] = p2;
  let l;
  if (x1 === x2) {
    if (mod(y1 + y2, P) === 0n) return null;
    l = mod((3n * x1 * x1 + A) * inv(2n * y1, P), P);
  } else {
    l = mod((y2 - y1) * inv(x2 - x1, P), P);
  }
  const x3 = mod(l * l - x1 - x2, P);
  return [x3, mod(l * (x1 - x3) - y1, P)];
}

/** @param {bigint} k */
function mulG(k) {
  /** @type {bigint[] | null} */
  let r = null;
  /** @type {bigint[] | null} */
  let q = G;
  while (k > 0n) {
    if (k & 1n) r = add(r, q);
    q = add(q, q);
    k >>= 1n;
  }
  return r;
}

/** @param {Uint8Array} b */
const toInt = (b) => BigInt("0x" + (Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("") || "0"));

/** @param {bigint} v */
function toBytes(v) {
  const h = v.toString(16).padStart(64, "0");
  return Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
}

/** @param {...Uint8Array} parts */
function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** @param {Uint8Array} key @param {...Uint8Array} parts */
async function hmac(key, ...parts) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, cat(...parts)));
}

/**
 * RFC 6979 deterministic signature, 64-byte r||s.
 * @param {Uint8Array} scalar 32-byte private key
 * @param {Uint8Array} message
 */
export async function signDeterministic(scalar, message) {
  const d = toInt(scalar);
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", message));
  const e = toInt(h);
  const x = toBytes(d);
  const h1 = toBytes(mod(e, N));
  let V = new Uint8Array(32).fill(1);
  let K = new Uint8Array(32);
  K = await hmac(K, V, Uint8Array.of(0), x, h1);
  V = await hmac(K, V);
  K = await hmac(K, V, Uint8Array.of(1), x, h1);
  V = await hmac(K, V);
  for (;;) {
    V = await hmac(K, V);
    const k = toInt(V);
    if (k >= 1n && k < N) {
      const R = mulG(k);
      if (R !== null) {
        const r = mod(R[0], N);
        const s = mod(inv(k, N) * (e + r * d), N);
        if (r !== 0n && s !== 0n) return cat(toBytes(r), toBytes(s));
      }
    }
    K = await hmac(K, V, Uint8Array.of(0));
    V = await hmac(K, V);
  }
}

/**
 * The uncompressed public point of a scalar.
 * @param {Uint8Array} scalar
 */
export function publicPoint(scalar) {
  const Q = mulG(toInt(scalar));
  if (Q === null) throw new RangeError("scalar out of range");
  return cat(Uint8Array.of(4), toBytes(Q[0]), toBytes(Q[1]));
}
