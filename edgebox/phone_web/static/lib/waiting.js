// @ts-check
/**
 * The questions a box queued for later (store-and-forward), kept in the keystore's IndexedDB.
 *
 * Theory of operation: when the box answers a "may wait" question with finish_reason "queued",
 * the page stores `{id, boxId, question, askedAt, state: "queued"}` under the request id. Every
 * session to that box is opened with the ids still queued (`awaitingIds`), so an answer the box
 * delivers later — on the live session, or right after a later handshake, even after a reload —
 * is matched to its question and stored with it (`state` "answered" or "failed"). The records are
 * this phone's own conversation: they stay in this browser and are deleted with `remove`.
 */

/**
 * @typedef {{id: string, boxId: string, question: string, askedAt: number,
 *            state: "queued" | "answered" | "failed", answer: string, source: string | null,
 *            answeredAt: number | null, errorCode: string | null}} WaitingQuestion (times in ms since the epoch)
 */

/**
 * @template T
 * @param {IDBRequest<T>} req
 * @returns {Promise<T>}
 */
function done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {IDBTransaction} tx */
function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export class WaitingQuestions {
  /** @param {IDBDatabase} db the keystore's database (it creates the "questions" store) */
  constructor(db) {
    this.db = db;
  }

  /**
   * Remember a question the box queued.
   * @param {string} id
   * @param {string} boxId
   * @param {string} question
   * @returns {Promise<WaitingQuestion>}
   */
  async queued(id, boxId, question) {
    /** @type {WaitingQuestion} */
    const rec = { id, boxId, question, askedAt: Date.now(), state: "queued", answer: "", source: null, answeredAt: null, errorCode: null };
    const tx = this.db.transaction("questions", "readwrite");
    tx.objectStore("questions").put(rec);
    await committed(tx);
    return rec;
  }

  /**
   * Store the late answer with its question; null when the id is not a question kept here.
   * @param {import("./client.js").LateAnswer} late
   * @returns {Promise<WaitingQuestion | null>}
   */
  async answered(late) {
    const tx = this.db.transaction("questions", "readwrite");
    const store = tx.objectStore("questions");
    /** @type {WaitingQuestion | undefined} */
    const rec = await done(store.get(late.requestId));
    if (!rec) return null;
    rec.answer = late.text;
    rec.answeredAt = Date.now();
    rec.state = late.error ? "failed" : "answered";
    rec.source = late.done ? late.done.source : null;
    rec.errorCode = late.error ? late.error.code : null;
    store.put(rec);
    await committed(tx);
    return rec;
  }

  /**
   * Every kept question, oldest first (optionally of one box).
   * @param {string | null} [boxId]
   * @returns {Promise<WaitingQuestion[]>}
   */
  async list(boxId = null) {
    const tx = this.db.transaction("questions", "readonly");
    /** @type {WaitingQuestion[]} */
    const all = await done(tx.objectStore("questions").getAll());
    return all.filter((q) => !boxId || q.boxId === boxId).sort((a, b) => a.askedAt - b.askedAt || (a.id < b.id ? -1 : 1));
  }

  /**
   * Ids of the questions still waiting for an answer from `boxId`.
   * @param {string} boxId
   */
  async awaitingIds(boxId) {
    return (await this.list(boxId)).filter((q) => q.state === "queued").map((q) => q.id);
  }

  /** @param {string} id */
  async remove(id) {
    const tx = this.db.transaction("questions", "readwrite");
    tx.objectStore("questions").delete(id);
    await committed(tx);
  }
}
