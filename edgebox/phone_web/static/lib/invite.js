// @ts-check
/**
 * Pairing invitations: the payload of the QR code on the box's admin page. Mirrors
 * edgebox/session/invite.py; spec: docs/protocol.md section 2.
 *
 *   "EDGEBOX1:" + base32(box_id(8) | box_key_hash(32) | secret_id(8) | secret(16) | expires_at(u32) | check(2))
 *
 * check = SHA-256(preceding 70 bytes)[:2] catches a mistyped or damaged code with a clear error.
 */

import { base32Decode, base32Encode, concat, equal, readU32, toHex, u32 } from "./bytes.js";
import { sha256 } from "./crypto.js";
import { InviteError } from "./errors.js";

export const PREFIX = "EDGEBOX1:";
const BODY_LEN = 8 + 32 + 8 + 16 + 4;

/**
 * @typedef {{boxId: Uint8Array, boxIdHex: string, boxKeyHash: Uint8Array, secretId: Uint8Array,
 *            secret: Uint8Array, expiresAt: number}} PairingInvite
 */

/**
 * Decode the text of a pairing QR code (whitespace around it and letter case do not matter).
 * @param {string} text
 * @returns {Promise<PairingInvite>}
 */
export async function decodeInvite(text) {
  const t = text.trim();
  if (!t.toUpperCase().startsWith(PREFIX)) {
    throw new InviteError("not an edgebox pairing code (expected EDGEBOX1:...)");
  }
  const raw = base32Decode(t.slice(PREFIX.length));
  if (raw === null) throw new InviteError("pairing code is not valid base32");
  if (raw.length !== BODY_LEN + 2) throw new InviteError("pairing code has the wrong length");
  const body = raw.subarray(0, BODY_LEN);
  if (!equal((await sha256(body)).subarray(0, 2), raw.subarray(BODY_LEN))) {
    throw new InviteError("pairing code checksum mismatch (mistyped or damaged)");
  }
  const boxId = body.slice(0, 8);
  return {
    boxId,
    boxIdHex: toHex(boxId),
    boxKeyHash: body.slice(8, 40),
    secretId: body.slice(40, 48),
    secret: body.slice(48, 64),
    expiresAt: readU32(body, 64),
  };
}

/**
 * @param {PairingInvite} invite
 * @param {number} nowUnix
 */
export function inviteExpired(invite, nowUnix) {
  return nowUnix >= invite.expiresAt;
}

/**
 * The QR text of an invitation (the box makes these; the page uses it to show a code it holds).
 * @param {PairingInvite} invite
 */
export async function encodeInvite(invite) {
  const body = concat(invite.boxId, invite.boxKeyHash, invite.secretId, invite.secret, u32(invite.expiresAt));
  return PREFIX + base32Encode(concat(body, (await sha256(body)).subarray(0, 2)));
}
