// @ts-check
/**
 * Typed errors of the web phone, mirroring edgebox.errors and edgebox.session.errors.
 *
 * Theory of operation: every failure a user can meet is an `EdgeboxError` with a stable `code`
 * (the same strings the Python side uses). `SessionError` carries the u16 wire code of the
 * session protocol (docs/protocol.md section 7); `AppError` an application error code sent by the
 * box (quota, blocked, queued...); `LinkClosed` a transport that went away; `InviteError` a bad
 * pairing code. `plainWords(err)` turns any of them into one sentence for the page. Messages never
 * carry keys, secrets, plaintext or peer-supplied bytes.
 */

/** Wire error codes (u16) of the session protocol, by name. */
export const ErrorCode = Object.freeze({
  internal: 1,
  malformed: 2,
  unsupported_version: 3,
  unexpected_message: 4,
  invalid_point: 5,
  auth_failed: 6,
  box_key_mismatch: 7,
  phone_unknown: 8,
  phone_revoked: 9,
  pairing_secret_invalid: 10,
  replay: 11,
  reorder: 12,
  rekey_overdue: 13,
  counter_exhausted: 14,
  oversize: 15,
  frame_sequence: 16,
  frame_window: 17,
  timeout: 18,
  closed: 19,
  busy: 20,
  phone_id_conflict: 21,
});

/** @typedef {keyof typeof ErrorCode} ErrorName */

/**
 * @param {number} value
 * @returns {ErrorName}
 */
export function errorName(value) {
  for (const [name, v] of Object.entries(ErrorCode)) {
    if (v === value) return /** @type {ErrorName} */ (name);
  }
  return "internal";
}

export class EdgeboxError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message);
    this.name = "EdgeboxError";
    this.code = code;
  }
}

/** A fatal protocol error on one connection. */
export class SessionError extends EdgeboxError {
  /**
   * @param {ErrorName} code
   * @param {string} message
   * @param {{remote?: boolean}} [opts] remote: the box sent this code in an ERROR message
   */
  constructor(code, message, opts = {}) {
    super(message, code);
    this.name = "SessionError";
    this.wireCode = ErrorCode[code];
    this.remote = Boolean(opts.remote);
  }
}

/** An application-level error answer from the box (the session goes on). */
export class AppError extends EdgeboxError {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string | null} requestId
   * @param {number | null} retryAfterS
   */
  constructor(code, message, requestId, retryAfterS) {
    super(message, code);
    this.name = "AppError";
    this.requestId = requestId;
    this.retryAfterS = retryAfterS;
  }
}

/** The link is gone (box out of range, socket closed, closed locally). */
export class LinkClosed extends EdgeboxError {
  /** @param {string} message */
  constructor(message) {
    super(message, "link_closed");
    this.name = "LinkClosed";
  }
}

/** A pairing code that cannot be used. */
export class InviteError extends EdgeboxError {
  /**
   * @param {string} message
   * @param {string} [code]
   */
  constructor(message, code = "invite_invalid") {
    super(message, code);
    this.name = "InviteError";
  }
}

/** Local misuse or an unavailable platform feature (no Web Bluetooth, no camera...). */
export class PhoneError extends EdgeboxError {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message, code);
    this.name = "PhoneError";
  }
}

/** @type {Record<string, string>} */
const WORDS = {
  // application errors from the box
  quota_exceeded: "This branch has used its AI quota for now.",
  injection_blocked: "The box blocked this question: it looks like an attempt to manipulate the assistant.",
  upstream_unavailable:
    "The box cannot reach head office right now, and the branch documents do not answer this. Try again later, or tick “The answer may wait” so the box keeps the question and sends the answer when it is back online.",
  upstream_error: "Head office's AI service failed to answer. Try again.",
  busy: "The box is busy right now (your other questions, or other phones connecting). Try again in a moment.",
  too_large: "That question is too long to send.",
  invalid_message: "The box did not understand the request (update this page).",
  unsupported_version: "This page and the box speak different versions. Reload the page.",
  duplicate_id: "That question was already sent.",
  // session errors
  phone_revoked: "This phone was removed from the box. Ask the branch manager to pair it again.",
  phone_unknown: "The box does not know this phone. Pair it again with a new code.",
  pairing_secret_invalid:
    "That pairing code cannot be used (expired, already used or too many tries). Show a new one on the box.",
  box_key_mismatch: "This is not the box you paired with. Do not continue; tell the branch manager.",
  auth_failed: "The connection could not be verified (wrong code, or not the box). Nothing was sent.",
  timeout: "The box did not answer in time. Move closer and try again.",
  replay: "The connection was tampered with and was closed. Nothing was lost; try again.",
  reorder: "The connection was tampered with and was closed. Nothing was lost; try again.",
  malformed: "The connection was damaged and was closed. Try again.",
  closed: "The connection is closed. Connect again.",
  phone_id_conflict: "This phone cannot be paired with this box (its id is taken). Reset this page's data and pair again.",
  // phone side
  link_closed: "Not connected to the box (out of range or switched off). Connect again.",
  invite_invalid: "That is not a valid edgebox pairing code. Scan or paste it again.",
  invite_expired: "That pairing code has expired. Show a new one on the box.",
  not_paired: "This phone is not paired with a box yet. Scan the box's pairing code first.",
  bluetooth_unavailable:
    "This browser cannot use Bluetooth. Use Chrome or Edge on Android or a computer (not iPhone Safari).",
  bluetooth_cancelled: "No box was chosen.",
  camera_unavailable: "The camera cannot scan codes in this browser. Paste the pairing code instead.",
  insecure_context: "This page must be opened over HTTPS (or from the box's own address) to work.",
  offline: "This phone is offline and the box cannot be reached.",
};

/**
 * One sentence for a person, for any error thrown by this client.
 * @param {unknown} err
 */
export function plainWords(err) {
  if (err instanceof AppError) {
    let text = WORDS[err.code] ?? "The box could not answer this question.";
    if (err.code === "quota_exceeded" && err.retryAfterS) {
      text += ` Try again in about ${Math.max(1, Math.round(err.retryAfterS / 60))} minute(s).`;
    }
    return text;
  }
  if (err instanceof EdgeboxError) {
    return WORDS[err.code] ?? "Something went wrong with the secure connection. Try again.";
  }
  return "Something went wrong. Try again.";
}
