// @ts-check
/**
 * The page: pairing (camera or pasted code), asking with a streamed answer, cancel, and typed
 * errors in plain words. All protocol work is in lib/; this file only wires the DOM to it.
 *
 * Theory of operation: on load the keystore is opened from IndexedDB (made on first use, with a
 * non-extractable key) and the service worker registered. A session is opened on demand (Pair or
 * the first Ask) over the chosen transport: Web Bluetooth in production, the development
 * WebSocket link when chosen in the settings or by `?ws=URL`. It stays open for later questions
 * and is dropped when the box ends it; the next Ask reconnects. Every failure becomes one sentence
 * from `plainWords()` with its stable code in `data-code` (tests read it).
 *
 * A question asked with "The answer may wait" that the box queues (head office unreachable) is
 * kept in IndexedDB (lib/waiting.js) and listed under "Questions that waited"; every session is
 * opened with the ids still queued, so the answer the box delivers later (on the live session or
 * after the next connection, also after a reload) is stored with its question and shown there.
 * `window.edgeboxPhone`
 * exposes the state for tests and debugging; it holds no secrets (the key cannot be exported).
 */

import { AppError, EdgeboxError, PhoneError, SessionError, plainWords } from "./lib/errors.js";
import { connect, pair } from "./lib/client.js";
import { phoneId } from "./lib/connection.js";
import { decodeInvite } from "./lib/invite.js";
import { PhoneKeystore } from "./lib/keystore.js";
import { WaitingQuestions } from "./lib/waiting.js";
import { scanPairingCode, scanningAvailable } from "./lib/scanner.js";
import { bluetoothAvailable, openGattLink, requestBox } from "./lib/transport/bluetooth.js";
import { connectWebSocket } from "./lib/transport/websocket.js";

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return /** @type {T} */ (el);
}

const ui = {
  status: $("status"),
  insecure: $("insecure"),
  offlineNote: $("offline-note"),
  pairSection: $("pair-section"),
  askSection: $("ask-section"),
  scan: /** @type {HTMLButtonElement} */ ($("scan")),
  scanner: $("scanner"),
  camera: /** @type {HTMLVideoElement} */ ($("camera")),
  scanStop: /** @type {HTMLButtonElement} */ ($("scan-stop")),
  payload: /** @type {HTMLTextAreaElement} */ ($("payload")),
  pair: /** @type {HTMLButtonElement} */ ($("pair")),
  question: /** @type {HTMLTextAreaElement} */ ($("question")),
  canWait: /** @type {HTMLInputElement} */ ($("can-wait")),
  waitingSection: $("waiting-section"),
  waiting: $("waiting"),
  fetchWaiting: /** @type {HTMLButtonElement} */ ($("fetch-waiting")),
  ask: /** @type {HTMLButtonElement} */ ($("ask")),
  cancel: /** @type {HTMLButtonElement} */ ($("cancel")),
  answer: $("answer"),
  answerMeta: $("answer-meta"),
  error: $("error"),
  wsUrl: /** @type {HTMLInputElement} */ ($("ws-url")),
  phoneId: $("phone-id"),
  boxId: $("box-id"),
  disconnect: /** @type {HTMLButtonElement} */ ($("disconnect")),
  forget: /** @type {HTMLButtonElement} */ ($("forget")),
};

const app = {
  /** @type {PhoneKeystore | null} */
  keystore: null,
  /** @type {WaitingQuestions | null} */
  waiting: null,
  /** @type {import("./lib/keystore.js").PairedBox | null} */
  box: null,
  /** @type {import("./lib/client.js").PhoneSession | null} */
  session: null,
  /** @type {import("./lib/client.js").Question | null} */
  question: null,
  /** The current Bluetooth link (tests drive the emulated peripheral through it). */
  /** @type {import("./lib/transport/bluetooth.js").GattLink | null} */
  link: null,
  busy: false,
  /** The box refused this phone (revoked, unknown): show the pairing form again. */
  mustPairAgain: false,
  /** Handshake durations in ms, newest last (the page's own measurement). */
  handshakeMs: /** @type {number[]} */ ([]),
};
/** @type {any} */ (window).edgeboxPhone = app;

/**
 * @param {string} text
 * @param {"" | "ok" | "bad"} [kind]
 */
function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = `pill ${kind}`;
}

/** @param {unknown} err */
function showError(err) {
  // A revoked or forgotten phone can only pair again: offer the pairing form beside the error.
  if (err instanceof EdgeboxError && (err.code === "phone_revoked" || err.code === "phone_unknown")) {
    app.mustPairAgain = true;
    ui.pairSection.hidden = false;
  }
  ui.error.hidden = false;
  ui.error.textContent = plainWords(err);
  ui.error.dataset.code = err instanceof EdgeboxError ? err.code : "internal";
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
  delete ui.error.dataset.code;
}

function transport() {
  const checked = /** @type {HTMLInputElement | null} */ (document.querySelector('input[name="transport"]:checked'));
  return checked?.value === "websocket" ? "websocket" : "bluetooth";
}

/** @param {string | null} expectBoxId */
async function openLink(expectBoxId) {
  if (transport() === "websocket") {
    const url = ui.wsUrl.value.trim();
    if (!url) throw new PhoneError("no development link address", "link_closed");
    return connectWebSocket(url);
  }
  const device = await requestBox(expectBoxId ? { namePrefix: `edgebox-${expectBoxId.slice(0, 6)}` } : {});
  const link = await openGattLink(device, { expectBoxId });
  app.link = link;
  return link;
}

/** Writes to the waiting questions, one after another: a late answer is never stored before its question. */
let waitingWrites = Promise.resolve();

/**
 * @template T
 * @param {() => Promise<T>} write
 * @returns {Promise<T>}
 */
function serialWrite(write) {
  const run = waitingWrites.then(write);
  waitingWrites = run.then(
    () => undefined,
    () => undefined,
  );
  return run;
}

const QUEUED_WORDS = "Queued — the answer will arrive when the box is back online.";

/** Redraw "Questions that waited" from IndexedDB. */
async function renderWaiting() {
  const list = app.waiting && app.box ? await app.waiting.list(app.box.boxId) : [];
  ui.waiting.replaceChildren(
    ...list.map((rec) => {
      const li = document.createElement("li");
      li.dataset.id = rec.id;
      li.dataset.state = rec.state;
      const q = document.createElement("p");
      q.className = "q";
      q.textContent = rec.question;
      const a = document.createElement("p");
      a.className = "a";
      if (rec.state === "queued") a.textContent = QUEUED_WORDS;
      else if (rec.state === "failed") a.textContent = plainWords(new AppError(rec.errorCode ?? "internal", "", rec.id, null));
      else a.textContent = rec.answer;
      li.append(q, a);
      if (rec.state !== "queued") {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "secondary remove";
        remove.textContent = "Remove";
        li.append(remove);
      }
      return li;
    }),
  );
  ui.waitingSection.hidden = list.length === 0;
  ui.fetchWaiting.hidden = !list.some((r) => r.state === "queued") || Boolean(app.session);
}

/** @param {import("./lib/client.js").LateAnswer} late */
async function onLateAnswer(late) {
  try {
    const waiting = app.waiting;
    if (waiting) await serialWrite(() => waiting.answered(late));
  } catch (e) {
    showError(e);
  }
  await renderWaiting();
}

/** Ids of this box's questions still queued (their answers may come on the next session). */
async function awaitingIds() {
  return app.waiting && app.box ? app.waiting.awaitingIds(app.box.boxId) : [];
}

function renderPaired() {
  ui.boxId.textContent = app.box ? app.box.boxId : "none";
  ui.askSection.hidden = !app.box;
  ui.pairSection.hidden = Boolean(app.box) && !app.mustPairAgain;
  if (!app.box) setStatus("Not paired");
  else if (app.session) setStatus("Connected", "ok");
  else setStatus("Paired · not connected");
}

/** @param {import("./lib/client.js").PhoneSession} session */
function adopt(session) {
  app.session = session;
  session.onEnd = (err) => {
    if (app.session === session) app.session = null;
    if (err instanceof SessionError && err.remote) showError(err);
    renderPaired();
    renderWaiting();
  };
  session.onLateAnswer = (late) => void onLateAnswer(late);
  renderPaired();
  renderWaiting();
}

async function onPair() {
  if (app.busy || !app.keystore) return;
  clearError();
  app.busy = true;
  ui.pair.disabled = true;
  setStatus("Pairing…");
  try {
    const invite = await decodeInvite(ui.payload.value);
    const link = await openLink(invite.boxIdHex);
    const t0 = performance.now();
    const awaiting = app.waiting ? await app.waiting.awaitingIds(invite.boxIdHex) : [];
    const session = await pair(link, app.keystore, invite, { awaiting });
    app.handshakeMs.push(performance.now() - t0);
    app.box = await app.keystore.box(invite.boxIdHex);
    app.mustPairAgain = false;
    ui.payload.value = "";
    adopt(session);
  } catch (e) {
    showError(e);
    renderPaired();
  } finally {
    app.busy = false;
    ui.pair.disabled = false;
  }
}

async function ensureSession() {
  if (app.session) return app.session;
  if (!app.keystore || !app.box) throw new PhoneError("not paired", "not_paired");
  setStatus("Connecting…");
  const link = await openLink(app.box.boxId);
  const t0 = performance.now();
  const session = await connect(link, app.keystore, app.box, { awaiting: await awaitingIds() });
  app.handshakeMs.push(performance.now() - t0);
  adopt(session);
  return session;
}

async function onAsk() {
  const text = ui.question.value.trim();
  if (!text || app.question) return;
  clearError();
  ui.ask.disabled = true;
  ui.answer.textContent = "";
  ui.answerMeta.textContent = "";
  ui.answer.dataset.state = "asking";
  try {
    const session = await ensureSession();
    const q = await session.ask(text, { canWait: ui.canWait.checked });
    app.question = q;
    ui.cancel.disabled = false;
    ui.answer.dataset.state = "streaming";
    for await (const delta of q) ui.answer.textContent += delta;
    const done = q.done;
    if (done && done.finish_reason === "queued") {
      ui.answerMeta.textContent = QUEUED_WORDS;
      ui.answer.dataset.state = "queued";
      const waiting = app.waiting;
      const boxId = app.box?.boxId;
      if (waiting && boxId) await serialWrite(() => waiting.queued(q.id, boxId, text));
      await renderWaiting();
    } else if (done) {
      const how = done.finish_reason === "cancelled" ? "stopped" : done.finish_reason === "length" ? "cut at the length limit" : "finished";
      ui.answerMeta.textContent = `Answer ${how} · from ${done.source} · ${done.usage.total_tokens} tokens`;
      ui.answer.dataset.state = done.finish_reason;
    }
  } catch (e) {
    ui.answer.dataset.state = "error";
    showError(e);
    if (!(e instanceof AppError)) renderPaired();
  } finally {
    app.question = null;
    ui.cancel.disabled = true;
    ui.ask.disabled = false;
  }
}

async function onCancel() {
  const q = app.question;
  if (!q) return;
  ui.cancel.disabled = true;
  try {
    await q.cancel();
  } catch (e) {
    showError(e);
  }
}

/** @type {AbortController | null} */
let scanning = null;

async function onScan() {
  clearError();
  if (!(await scanningAvailable())) {
    showError(new PhoneError("no QR scanning here", "camera_unavailable"));
    ui.payload.focus();
    return;
  }
  scanning = new AbortController();
  ui.scanner.hidden = false;
  try {
    ui.payload.value = await scanPairingCode(ui.camera, scanning.signal);
    ui.scanner.hidden = true;
    await onPair();
  } catch (e) {
    if (!(e instanceof PhoneError && e.code === "scan_cancelled")) showError(e);
  } finally {
    ui.scanner.hidden = true;
    scanning = null;
  }
}

async function onFetchWaiting() {
  clearError();
  try {
    await ensureSession();
  } catch (e) {
    showError(e);
    renderPaired();
  }
}

/** @param {Event} ev */
async function onWaitingClick(ev) {
  const target = /** @type {HTMLElement} */ (ev.target);
  const li = target.closest("li");
  if (!target.classList.contains("remove") || !li?.dataset.id || !app.waiting) return;
  await app.waiting.remove(li.dataset.id);
  await renderWaiting();
}

async function onDisconnect() {
  const s = app.session;
  app.session = null;
  if (s) await s.close();
  renderPaired();
}

async function onForget() {
  if (!app.keystore || !app.box) return;
  await onDisconnect();
  await app.keystore.forgetBox(app.box.boxId);
  app.box = null;
  renderPaired();
  await renderWaiting();
}

async function main() {
  const params = new URLSearchParams(location.search);
  const ws = params.get("ws");
  if (ws) {
    ui.wsUrl.value = ws;
    const radio = /** @type {HTMLInputElement | null} */ (document.querySelector('input[value="websocket"]'));
    if (radio) radio.checked = true;
  } else if (!bluetoothAvailable()) {
    const radio = /** @type {HTMLInputElement | null} */ (document.querySelector('input[value="websocket"]'));
    if (radio) radio.checked = true;
  }
  ui.pair.addEventListener("click", onPair);
  ui.ask.addEventListener("click", onAsk);
  ui.cancel.addEventListener("click", onCancel);
  ui.scan.addEventListener("click", onScan);
  ui.scanStop.addEventListener("click", () => scanning?.abort());
  ui.disconnect.addEventListener("click", onDisconnect);
  ui.forget.addEventListener("click", onForget);
  ui.fetchWaiting.addEventListener("click", onFetchWaiting);
  ui.waiting.addEventListener("click", onWaitingClick);
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
    ui.insecure.hidden = false;
    setStatus("Needs HTTPS", "bad");
    showError(new PhoneError("insecure context", "insecure_context"));
    return;
  }
  if ("serviceWorker" in navigator && !params.has("nosw")) {
    navigator.serviceWorker.register("sw.js").then(
      () => (ui.offlineNote.dataset.offline = "ready"),
      () => {
        // Typically "An SSL certificate error occurred": the page's certificate is not trusted,
        // so it works online but cannot be kept for offline use (docs/phone-web.md).
        ui.offlineNote.hidden = false;
        ui.offlineNote.dataset.offline = "unavailable";
      },
    );
  }
  try {
    app.keystore = await PhoneKeystore.open();
    app.waiting = new WaitingQuestions(app.keystore.db);
    const stored = await app.keystore.stored();
    ui.phoneId.textContent = await phoneId(stored.point);
    const boxes = await app.keystore.boxes();
    app.box = boxes.length ? await app.keystore.box() : null;
  } catch (e) {
    showError(e);
  }
  renderPaired();
  await renderWaiting();
  document.body.dataset.ready = "1";
}

main();
