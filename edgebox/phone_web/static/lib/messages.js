// @ts-check
/**
 * Application messages inside the secure session: one UTF-8 JSON object per DATA record, a tagged
 * union on "type", version "v": 1. Mirrors edgebox/session/messages.py; spec: docs/protocol.md
 * section 6.
 *
 * Theory of operation: the phone encodes `prompt`, `cancel` and `ping`, and decodes what the box
 * sends (`chunk`, `done`, `error`, `pong`) strictly: unknown types or fields, wrong types and a
 * `v` other than 1 throw `SessionError("unexpected_message")`-free `MessageError`s naming the path,
 * never the value. The checks follow the JSON Schema of `edgebox.session.messages.json_schema()`.
 */

import { fromUtf8, utf8 } from "./bytes.js";
import { EdgeboxError } from "./errors.js";

export const APP_VERSION = 1;
export const MAX_APP_MESSAGE = 65535 - 17;
export const MAX_CONTENT_CHARS = 32000;
const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const TRACE_RE = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export class MessageError extends EdgeboxError {
  /** @param {string} message */
  constructor(message) {
    super(message, "invalid_message");
    this.name = "MessageError";
  }
}

/**
 * @typedef {{type: "chunk", id: string, seq: number, delta: string}} Chunk
 * @typedef {{prompt_tokens: number, completion_tokens: number, total_tokens: number}} Usage
 * @typedef {{type: "done", id: string, finish_reason: "stop" | "length" | "cancelled" | "queued",
 *            source: "echo" | "cache" | "local" | "gateway", usage: Usage, trace: string | null}} Done
 * @typedef {{type: "error", code: string, message: string, id: string | null, retry_after_s: number | null}} AppErrorMessage
 * @typedef {{type: "pong", nonce: number}} Pong
 * @typedef {Chunk | Done | AppErrorMessage | Pong} BoxMessage
 */

/**
 * @param {object} obj
 * @returns {Uint8Array}
 */
function encode(obj) {
  const data = utf8(JSON.stringify(obj));
  if (data.length > MAX_APP_MESSAGE) throw new MessageError("application message exceeds the record size limit");
  return data;
}

/**
 * @param {string} id
 * @param {string} text the user's question
 * @param {{maxTokens?: number, trace?: string | null, canWait?: boolean}} [opts] canWait: the
 *   phone can wait for this answer (`options.can_wait`): with the head-office link down the box
 *   queues it and answers `done` with finish_reason "queued"; the answer is delivered later.
 */
export function encodePrompt(id, text, opts = {}) {
  if (!ID_RE.test(id)) throw new MessageError("request id must be 1-64 of [A-Za-z0-9_.:-]");
  if (text.length < 1 || text.length > MAX_CONTENT_CHARS) {
    throw new MessageError(`a question must be 1..${MAX_CONTENT_CHARS} characters`);
  }
  /** @type {Record<string, unknown>} */
  const msg = { type: "prompt", v: APP_VERSION, id, messages: [{ role: "user", content: text }] };
  if (opts.trace) msg.trace = opts.trace;
  /** @type {Record<string, unknown>} */
  const options = {};
  if (opts.maxTokens) options.max_tokens = opts.maxTokens;
  if (opts.canWait) options.can_wait = true;
  if (Object.keys(options).length) msg.options = options;
  return encode(msg);
}

/** @param {string} id */
export function encodeCancel(id) {
  return encode({ type: "cancel", v: APP_VERSION, id });
}

/** @param {number} nonce */
export function encodePing(nonce) {
  return encode({ type: "ping", v: APP_VERSION, nonce });
}

/**
 * @param {Record<string, unknown>} o
 * @param {string[]} allowed
 * @param {string} path
 */
function onlyFields(o, allowed, path) {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new MessageError(`unknown field in \`${path}\``);
}

/**
 * @param {unknown} v
 * @param {string} path
 */
function int(v, path, min = 0, max = Number.MAX_SAFE_INTEGER) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new MessageError(`expected an integer in range at \`${path}\``);
  }
  return v;
}

/**
 * @param {unknown} v
 * @param {string} path
 */
function str(v, path, max = Infinity) {
  if (typeof v !== "string" || v.length > max) throw new MessageError(`expected a string at \`${path}\``);
  return v;
}

/**
 * @param {unknown} v
 * @param {string} path
 */
function reqId(v, path) {
  if (typeof v !== "string" || !ID_RE.test(v)) throw new MessageError(`invalid request id at \`${path}\``);
  return v;
}

/**
 * @template {string} T
 * @param {unknown} v
 * @param {readonly T[]} options
 * @param {string} path
 * @returns {T}
 */
function oneOf(v, options, path) {
  if (typeof v !== "string" || !options.includes(/** @type {T} */ (v))) {
    throw new MessageError(`invalid value at \`${path}\``);
  }
  return /** @type {T} */ (v);
}

/**
 * Strictly decode one message from the box.
 * @param {Uint8Array} data
 * @returns {BoxMessage}
 */
export function decodeBoxMessage(data) {
  if (data.length > MAX_APP_MESSAGE) throw new MessageError("application message exceeds the record size limit");
  /** @type {unknown} */
  let obj;
  try {
    obj = JSON.parse(fromUtf8(data));
  } catch {
    throw new MessageError("message is not UTF-8 JSON");
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new MessageError("expected an object at `$`");
  const o = /** @type {Record<string, unknown>} */ (obj);
  if ("v" in o && o.v !== APP_VERSION) throw new MessageError("unsupported message version");
  switch (o.type) {
    case "chunk":
      onlyFields(o, ["type", "v", "id", "seq", "delta"], "$");
      return { type: "chunk", id: reqId(o.id, "$.id"), seq: int(o.seq, "$.seq"), delta: str(o.delta, "$.delta") };
    case "done": {
      onlyFields(o, ["type", "v", "id", "finish_reason", "source", "usage", "trace"], "$");
      const u = /** @type {Record<string, unknown>} */ (o.usage ?? {});
      if (typeof u !== "object" || u === null || Array.isArray(u)) throw new MessageError("expected an object at `$.usage`");
      onlyFields(u, ["prompt_tokens", "completion_tokens", "total_tokens"], "$.usage");
      const trace = o.trace ?? null;
      if (trace !== null && (typeof trace !== "string" || !TRACE_RE.test(trace))) {
        throw new MessageError("invalid traceparent at `$.trace`");
      }
      return {
        type: "done",
        id: reqId(o.id, "$.id"),
        finish_reason: oneOf(o.finish_reason ?? "stop", /** @type {const} */ (["stop", "length", "cancelled", "queued"]), "$.finish_reason"),
        source: oneOf(o.source ?? "gateway", /** @type {const} */ (["echo", "cache", "local", "gateway"]), "$.source"),
        usage: {
          prompt_tokens: int(u.prompt_tokens ?? 0, "$.usage.prompt_tokens"),
          completion_tokens: int(u.completion_tokens ?? 0, "$.usage.completion_tokens"),
          total_tokens: int(u.total_tokens ?? 0, "$.usage.total_tokens"),
        },
        trace: /** @type {string | null} */ (trace),
      };
    }
    case "error": {
      onlyFields(o, ["type", "v", "code", "message", "id", "retry_after_s"], "$");
      const ra = o.retry_after_s ?? null;
      if (ra !== null && (typeof ra !== "number" || !(ra >= 0))) throw new MessageError("invalid value at `$.retry_after_s`");
      return {
        type: "error",
        code: str(o.code, "$.code", 64),
        message: str(o.message, "$.message", 500),
        id: o.id === undefined || o.id === null ? null : reqId(o.id, "$.id"),
        retry_after_s: /** @type {number | null} */ (ra),
      };
    }
    case "pong":
      onlyFields(o, ["type", "v", "nonce"], "$");
      return { type: "pong", nonce: int(o.nonce, "$.nonce", 0, 2 ** 53) };
    default:
      throw new MessageError("unknown message type at `$.type`");
  }
}
