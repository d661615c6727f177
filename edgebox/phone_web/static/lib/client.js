// @ts-check
/**
 * The web phone client over any DatagramLink. Mirrors edgebox/phone/client.py.
 *
 * Theory of operation: `pair(link, keystore, invite)` and `connect(link, keystore, box)` run the
 * framing exchange and the sans-I/O `PhoneConnection` handshake (30 s budget) and resolve to a
 * `PhoneSession`. The session runs one dispatcher loop that always drains the channel (the box is
 * never blocked by a slow page) and routes each application message to its question by id.
 * `session.ask(text)` sends a `prompt` and returns a `Question`: an async iterable of text deltas
 * that ends when `done` arrives (`question.done`), or throws the typed error (`AppError` for
 * quota, blocked, queued...; `SessionError`/`LinkClosed` when the session ends). `cancel()` asks
 * the box to stop; the answer then ends with finish_reason "cancelled". Sends are serialised so
 * records leave in counter order. A timer armed at the connection's `nextDeadline()` drives
 * `handleTimer`: a KEEPALIVE after 120 s without sending and a REKEY every 600 s, even when idle.
 */

import { fromHex, toHex } from "./bytes.js";
import { FramedChannel } from "./channel.js";
import { AppError, InviteError, LinkClosed, SessionError } from "./errors.js";
import { PhoneConnection } from "./connection.js";
import { inviteExpired } from "./invite.js";
import { decodeBoxMessage, encodeCancel, encodePing, encodePrompt } from "./messages.js";

export const HANDSHAKE_TIMEOUT_MS = 30000;

/** Seconds on a monotonic clock (the record layer's time base). */
export function now() {
  return performance.now() / 1000;
}

let nextId = 1;

/** 8 hex digits from the CSPRNG. */
function randomTag() {
  return toHex(crypto.getRandomValues(new Uint8Array(4)));
}

/**
 * Capabilities exchange, then the handshake; the exchanged capabilities open its transcript.
 * @param {import("./transport/link.js").DatagramLink} link
 * @param {(capabilities: Uint8Array) => PhoneConnection} makeConn
 * @param {{window?: number, timeoutMs?: number}} opts
 * @returns {Promise<[FramedChannel, PhoneConnection]>}
 */
async function handshake(link, makeConn, opts) {
  const channel = new FramedChannel(link, { window: opts.window });
  const timeoutMs = opts.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  /** @type {PhoneConnection | null} */
  let conn = null;
  const timer = setTimeout(() => {
    // Tell the box (plaintext or encrypted ERROR, as the state allows), then give up the link.
    const c = conn;
    const fail = () => channel._fail(new SessionError("timeout", "handshake timed out"));
    if (c) c.handleTimer(now() + timeoutMs / 1000).then(fail, fail);
    else fail();
  }, timeoutMs);
  try {
    await channel.open(timeoutMs);
    conn = makeConn(channel.framer.capabilities);
    await conn.start(now());
    while (!conn.established) {
      for (const m of conn.dataToSend()) await channel.send(m);
      const data = await channel.recv();
      for (const event of await conn.receiveMessage(data, now())) {
        if (event.type === "peer_error") {
          throw new SessionError(event.code, `box refused the session (${event.code})`, { remote: true });
        }
      }
    }
    for (const m of conn.dataToSend()) await channel.send(m);
    return [channel, conn];
  } catch (e) {
    // Tell the box why, if we can, then drop the link.
    try {
      for (const m of conn?.dataToSend() ?? []) await channel.send(m);
    } catch {
      /* the link may be gone already */
    }
    await channel.close();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Pair with the box named by `invite` (from its QR code) and return the open session.
 * @param {import("./transport/link.js").DatagramLink} link
 * @param {import("./keystore.js").PhoneKeystore} keystore
 * @param {import("./invite.js").PairingInvite} invite
 * @param {{window?: number, timeoutMs?: number, awaiting?: Iterable<string>}} [opts]
 */
export async function pair(link, keystore, invite, opts = {}) {
  if (inviteExpired(invite, Date.now() / 1000)) {
    await link.close();
    throw new InviteError("pairing code has expired; show a new one on the box", "invite_expired");
  }
  const identity = await keystore.identity();
  const [channel, conn] = await handshake(
    link,
    (capabilities) => new PhoneConnection(identity, invite.boxKeyHash, { capabilities, pairingSecret: [invite.secretId, invite.secret] }),
    opts,
  );
  await keystore.rememberBox({ boxId: invite.boxIdHex, keyHash: toHex(invite.boxKeyHash), pairedAt: Math.floor(Date.now() / 1000) });
  return new PhoneSession(channel, conn, opts.awaiting);
}

/**
 * Open an authenticated session with a box this phone paired with before.
 * @param {import("./transport/link.js").DatagramLink} link
 * @param {import("./keystore.js").PhoneKeystore} keystore
 * @param {import("./keystore.js").PairedBox} box
 * @param {{window?: number, timeoutMs?: number, awaiting?: Iterable<string>}} [opts] awaiting: ids
 *   of questions the box queued earlier, whose answers it may deliver on this session
 */
export async function connect(link, keystore, box, opts = {}) {
  const identity = await keystore.identity();
  const [channel, conn] = await handshake(link, (capabilities) => new PhoneConnection(identity, fromHex(box.keyHash), { capabilities }), opts);
  return new PhoneSession(channel, conn, opts.awaiting);
}

/** One question and its streamed answer. */
export class Question {
  /**
   * @param {PhoneSession} session
   * @param {string} id
   */
  constructor(session, id) {
    this.session = session;
    this.id = id;
    this.text = "";
    /** @type {(string | import("./messages.js").Done | Error)[]} */
    this._items = [];
    /** @type {(() => void) | null} */
    this._wake = null;
    this._expectedSeq = 0;
    /** @type {import("./messages.js").Done | null} */
    this.done = null;
    /** @type {Error | null} */
    this.error = null;
  }

  /** @param {string | import("./messages.js").Done | Error} item */
  _push(item) {
    this._items.push(item);
    const w = this._wake;
    this._wake = null;
    if (w) w();
  }

  /** @param {import("./messages.js").BoxMessage} msg */
  _deliver(msg) {
    if (msg.type === "chunk") {
      if (msg.seq !== this._expectedSeq) {
        this._push(new SessionError("unexpected_message", "chunk out of order"));
        return;
      }
      this._expectedSeq += 1;
      this._push(msg.delta);
    } else if (msg.type === "done") {
      if (msg.finish_reason === "queued") this.session.awaiting.add(this.id);
      this._push(msg);
    } else if (msg.type === "error") {
      this._push(new AppError(msg.code, msg.message, msg.id, msg.retry_after_s));
    }
  }

  /** Ask the box to stop this answer (it still ends, with finish_reason "cancelled"). */
  cancel() {
    return this.session._send(encodeCancel(this.id));
  }

  /** @returns {AsyncGenerator<string, import("./messages.js").Done, void>} */
  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        const item = this._items.shift();
        if (item === undefined) {
          await new Promise((resolve) => (this._wake = () => resolve(undefined)));
          continue;
        }
        if (typeof item === "string") {
          this.text += item;
          yield item;
        } else if (item instanceof Error) {
          this.error = item;
          throw item;
        } else {
          this.done = item;
          return item;
        }
      }
    } finally {
      this.session._routes.delete(this.id);
    }
  }

  /** Wait for the whole answer; resolves to the final `done`. */
  async finished() {
    const it = this[Symbol.asyncIterator]();
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }
}

/**
 * The answer to a question the box queued, delivered later: its text, then the final `done`, or
 * the box's `error` if head office refused it.
 * @typedef {{requestId: string, text: string, done: import("./messages.js").Done | null, error: AppError | SessionError | null}} LateAnswer
 */

export class PhoneSession {
  /**
   * @param {FramedChannel} channel
   * @param {PhoneConnection} conn
   * @param {Iterable<string>} [awaiting] ids of queued questions whose answers may arrive here
   */
  constructor(channel, conn, awaiting = []) {
    this.channel = channel;
    this.conn = conn;
    /** Ids of queued questions whose answers the box may deliver. @type {Set<string>} */
    this.awaiting = new Set(awaiting);
    /** Late answers being assembled, by id. @type {Map<string, {text: string, seq: number}>} */
    this._late = new Map();
    /** Late answers complete before a handler was set. @type {LateAnswer[]} */
    this._lateReady = [];
    /** @type {((answer: LateAnswer) => void) | null} */
    this._onLateAnswer = null;
    /** @type {Map<string, Question>} */
    this._routes = new Map();
    /** @type {Map<number, (e?: Error) => void>} */
    this._pongs = new Map();
    /** @type {Error | null} */
    this.error = null;
    /** Called once when the session ends (error, box closed, closed locally). @type {((e: Error) => void) | null} */
    this.onEnd = null;
    this._sendChain = Promise.resolve();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
    this._dispatcher = this._dispatch();
    this._arm();
  }

  /** Arm the timer for the connection's next deadline (keep-alive or rekey). */
  _arm() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    const deadline = this.conn.nextDeadline();
    if (this.error || !Number.isFinite(deadline)) return;
    const ms = Math.min(2 ** 31 - 1, Math.max(0, (deadline - now()) * 1000));
    this._timer = setTimeout(() => {
      this._timer = null;
      const run = this._sendChain.then(async () => {
        if (this.error) return;
        await this.conn.handleTimer(now());
        for (const m of this.conn.dataToSend()) await this.channel.send(m);
      });
      this._sendChain = run.catch((e) => this.channel._fail(e instanceof Error ? e : new LinkClosed("timer failed")));
      this._sendChain.then(() => this._arm());
    }, ms);
  }

  /** Called with each late answer to a queued question (also those that arrived before it was set). */
  get onLateAnswer() {
    return this._onLateAnswer;
  }

  set onLateAnswer(handler) {
    this._onLateAnswer = handler;
    if (!handler) return;
    for (const answer of this._lateReady.splice(0)) handler(answer);
  }

  /**
   * One unsolicited message for an awaited id: a piece of a late answer.
   * @param {import("./messages.js").Chunk | import("./messages.js").Done | import("./messages.js").AppErrorMessage} msg
   * @param {string} id
   */
  _deliverLate(msg, id) {
    const part = this._late.get(id) ?? { text: "", seq: 0 };
    this._late.set(id, part);
    if (msg.type === "chunk") {
      if (msg.seq === part.seq) {
        part.seq += 1;
        part.text += msg.delta;
        return;
      }
      this._finishLate({ requestId: id, text: part.text, done: null, error: new SessionError("unexpected_message", "chunk out of order") });
    } else if (msg.type === "done") {
      this._finishLate({ requestId: id, text: part.text, done: msg, error: null });
    } else {
      this._finishLate({ requestId: id, text: part.text, done: null, error: new AppError(msg.code, msg.message, id, msg.retry_after_s) });
    }
  }

  /** @param {LateAnswer} answer */
  _finishLate(answer) {
    this._late.delete(answer.requestId);
    this.awaiting.delete(answer.requestId);
    if (this._onLateAnswer) this._onLateAnswer(answer);
    else this._lateReady.push(answer);
  }

  get sessionId() {
    return this.conn.sessionId;
  }

  async _dispatch() {
    /** @type {Error} */
    let error;
    try {
      for (;;) {
        const data = await this.channel.recv();
        for (const event of await this.conn.receiveMessage(data, now())) {
          if (event.type === "message") this._route(decodeBoxMessage(event.payload));
          else if (event.type === "peer_closed") throw new LinkClosed("box closed the session");
          else if (event.type === "peer_error") {
            throw new SessionError(event.code, `box ended the session (${event.code})`, { remote: true });
          }
        }
      }
    } catch (e) {
      error = e instanceof Error ? e : new LinkClosed("session closed");
      // Tell the box why (a queued ERROR), if the link still works.
      try {
        for (const m of this.conn.dataToSend()) await this.channel.send(m);
      } catch {
        /* gone */
      }
    }
    this.error ??= error;
    if (this._timer !== null) clearTimeout(this._timer);
    for (const q of this._routes.values()) q._push(this.error);
    for (const p of this._pongs.values()) p(this.error);
    this._pongs.clear();
    await this.channel.close();
    if (this.onEnd) this.onEnd(this.error);
  }

  /** @param {import("./messages.js").BoxMessage} msg */
  _route(msg) {
    if (msg.type === "pong") {
      const p = this._pongs.get(msg.nonce);
      this._pongs.delete(msg.nonce);
      if (p) p();
      return;
    }
    const q = msg.id ? this._routes.get(msg.id) : undefined;
    if (q) q._deliver(msg);
    else if (msg.id && this.awaiting.has(msg.id)) this._deliverLate(msg, msg.id);
  }

  /**
   * Seal and send one application message (serialised: records leave in counter order).
   * @param {Uint8Array} payload
   */
  _send(payload) {
    const run = this._sendChain.then(async () => {
      if (this.error) throw this.error;
      await this.conn.sendMessage(payload, now());
      for (const m of this.conn.dataToSend()) await this.channel.send(m);
      this._arm();
    });
    this._sendChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Ask a question; iterate the result for the streamed answer.
   * @param {string} text
   * @param {{requestId?: string, maxTokens?: number, trace?: string, canWait?: boolean}} [opts]
   *   canWait: the box may queue it while head office is unreachable (finish_reason "queued")
   */
  async ask(text, opts = {}) {
    if (this.error) throw this.error;
    // Random suffix: an answer the box queued for an earlier page load must never meet a new question.
    const id = opts.requestId ?? `w${Date.now().toString(36)}-${nextId++}-${randomTag()}`;
    const payload = encodePrompt(id, text, opts);
    const q = new Question(this, id);
    this._routes.set(id, q);
    try {
      await this._send(payload);
    } catch (e) {
      this._routes.delete(id);
      throw e;
    }
    return q;
  }

  /** Round trip a ping (liveness). */
  async ping(timeoutMs = 10000) {
    const nonce = nextId++;
    const answered = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new SessionError("timeout", "no pong from the box")), timeoutMs);
      this._pongs.set(nonce, (e) => {
        clearTimeout(timer);
        if (e) reject(e);
        else resolve(undefined);
      });
    });
    await this._send(encodePing(nonce));
    await answered;
  }

  /**
   * Send arbitrary bytes as one DATA record (tests).
   * @param {Uint8Array} payload
   */
  sendRaw(payload) {
    return this._send(payload);
  }

  /** Orderly end: an authenticated CLOSE record, then drop the link. */
  async close() {
    try {
      await this._sendChain;
      await this.conn.close(now());
      for (const m of this.conn.dataToSend()) await this.channel.send(m);
    } catch {
      /* closing anyway */
    }
    this.error ??= new LinkClosed("session closed");
    await this.channel.close();
    await this._dispatcher;
  }
}
