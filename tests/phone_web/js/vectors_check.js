// @ts-check
/**
 * Re-derives docs/protocol-vectors.json in the browser with the web phone's own modules.
 *
 * `reproduce(vectors)` returns a flat map "section.path" -> hex computed here. The phone side
 * (HELLO, PHONE_AUTH, phone records, framing fragments, invite text) comes from the production
 * state machines with the vector's fixed ephemerals and randoms injected; the box side (BOX_AUTH,
 * ACCEPT, box records, caps response, acks) from the same primitives, as tests/session/
 * test_vectors.py does in Python. Signatures come from an RFC 6979 signer (WebCrypto's ECDSA is
 * randomised) and are each verified with WebCrypto. The Python test compares every leaf of the
 * JSON file against this map.
 */

import { concat, fromHex, toHex, utf8 } from "/phone/lib/bytes.js";
import * as c from "/phone/lib/crypto.js";
import { PhoneConnection } from "/phone/lib/connection.js";
import { Framer } from "/phone/lib/framing.js";
import * as hs from "/phone/lib/handshake.js";
import { decodeInvite, encodeInvite } from "/phone/lib/invite.js";
import { ACCEPT, DATA, ERROR, KEEPALIVE, REKEY, RecordLayer, nextSecret } from "/phone/lib/records.js";
import { publicPoint, signDeterministic } from "./rfc6979.js";

/**
 * @param {Uint8Array} scalar
 * @returns {c.Identity}
 */
function detIdentity(scalar) {
  const point = publicPoint(scalar);
  return {
    point,
    async sign(m) {
      const sig = await signDeterministic(scalar, m);
      await c.verify(point, sig, m); // WebCrypto agrees with the deterministic signer
      return sig;
    },
  };
}

/** @param {Uint8Array} scalar */
async function ephemeral(scalar) {
  return { privateKey: await c.importEcdhScalar(scalar), point: publicPoint(scalar) };
}

/** The capabilities exchange that opens every transcript (phone and box at mtu 244, window 96). */
function capabilities() {
  const phone = new Framer(244, 96);
  const box = new Framer(244, 96, "box");
  const req = phone.start();
  box.receiveDatagram(req);
  const [rsp] = box.datagramsToSend();
  phone.receiveDatagram(rsp);
  if (toHex(phone.capabilities) !== toHex(concat(req, rsp)) || toHex(box.capabilities) !== toHex(phone.capabilities)) {
    throw new Error("framers disagree on the capabilities transcript");
  }
  return [req, rsp];
}

/**
 * @param {any} inputs
 * @param {"pairing" | "session"} mode
 * @param {Record<string, string>} out
 * @param {string} [section] output section (default: the mode)
 * @param {number | null} [refuse] the box refuses the phone with this code
 */
async function handshake(inputs, mode, out, section = mode, refuse = null) {
  const p = (/** @type {string} */ k) => `${section}.${k}`;
  const box = detIdentity(fromHex(inputs.box_private_scalar));
  const phone = detIdentity(fromHex(inputs.phone_private_scalar));
  const boxEph = await ephemeral(fromHex(inputs.box_ephemeral_scalar));
  const phoneEph = await ephemeral(fromHex(inputs.phone_ephemeral_scalar));
  const sid = fromHex(inputs.session_id);
  const secretId = fromHex(inputs.secret_id);
  const secret = fromHex(inputs.secret);
  const pin = await c.sha256(box.point);
  if (refuse === null) {
    out[p("box_public")] = toHex(box.point);
    out[p("box_key_hash")] = toHex(pin);
    out[p("phone_public")] = toHex(phone.point);
  }
  const psk = mode === "pairing" ? await hs.pairingPsk(secret) : null;
  if (refuse === null) out[p("psk")] = psk ? toHex(psk) : "null";

  const [req, rsp] = capabilities();
  const caps = concat(req, rsp);
  const conn = new PhoneConnection(phone, pin, {
    capabilities: caps,
    pairingSecret: mode === "pairing" ? [secretId, secret] : null,
    ephemeral: phoneEph,
    random: fromHex(inputs.phone_random),
  });
  await conn.start(0);
  const [hello] = conn.dataToSend();
  out[p("messages.hello")] = toHex(hello);

  // box side, from primitives
  const shared = await c.ecdh(boxEph.privateKey, phoneEph.point);
  const ms = await hs.masterSecret(shared, psk);
  const clear = concat(Uint8Array.of(hs.MSG_BOX_AUTH), sid, fromHex(inputs.box_random), boxEph.point);
  const th2 = await c.sha256(caps, hello, clear);
  const boxAuth = concat(clear, await hs.sealIdentity(ms, "box", th2, box));
  out[p("messages.box_auth")] = toHex(boxAuth);

  const events = await conn.receiveMessage(boxAuth, 0);
  if (events.length !== 0) throw new Error("unexpected events after BOX_AUTH");
  const [phoneAuth] = conn.dataToSend();
  out[p("messages.phone_auth")] = toHex(phoneAuth);
  const th3 = await c.sha256(caps, hello, boxAuth);
  const th4 = await c.sha256(caps, hello, boxAuth, phoneAuth);
  const opened = await hs.openIdentity(ms, "phone", th3, phoneAuth.subarray(1));
  if (toHex(opened) !== toHex(phone.point)) throw new Error("box side opened the wrong phone key");
  const [p2b, b2p] = await hs.trafficSecrets(ms, th4);
  const boxRecords = await RecordLayer.create(sid, b2p, p2b, 0);
  if (refuse !== null) {
    const refusal = await boxRecords.sealError(refuse, 0);
    if (!refusal) throw new Error("box could not seal its refusal");
    out[p("code")] = String(refuse);
    out[p("b2p_traffic_secret")] = toHex(b2p);
    out[p("messages.error_record")] = toHex(refusal);
    const ev = await conn.receiveMessage(refusal, 0);
    if (ev[0]?.type !== "peer_error" || conn.state !== "failed") throw new Error("phone did not take the refusal");
    out[p("phone_saw")] = ev[0].code;
    return;
  }
  out[p("messages.caps_request")] = toHex(req);
  out[p("messages.caps_response")] = toHex(rsp);
  out[p("ecdh_shared")] = toHex(shared);
  out[p("master_secret")] = toHex(ms);
  out[p("th2")] = toHex(th2);
  out[p("th3")] = toHex(th3);
  out[p("th4")] = toHex(th4);
  out[p("box_hs_key")] = toHex(await c.hkdfExpand(ms, "box hs key", th2));
  out[p("phone_hs_key")] = toHex(await c.hkdfExpand(ms, "phone hs key", th3));
  out[p("p2b_traffic_secret")] = toHex(p2b);
  out[p("b2p_traffic_secret")] = toHex(b2p);
  out[p("p2b_traffic_secret_after_rekey")] = toHex(await nextSecret(p2b));

  // Rule 2: once the phone holds keys, an injected plaintext ERROR ("phone revoked") is ignored.
  if ((await conn.receiveMessage(fromHex("7f0009"), 0)).length !== 0 || conn.state !== "auth_sent") {
    throw new Error("phone honoured a plaintext ERROR after it held keys");
  }
  const accept = await boxRecords.seal(ACCEPT, new Uint8Array(0), 0);
  out[p("messages.accept_record")] = toHex(accept);
  const est = await conn.receiveMessage(accept, 0);
  if (est[0]?.type !== "established") throw new Error("phone did not establish on ACCEPT");

  await conn.sendMessage(utf8('{"type":"ping","nonce":1}'), 0);
  const [p2bRecord] = conn.dataToSend();
  out[p("messages.p2b_data_record")] = toHex(p2bRecord);
  const [kind, ping] = await boxRecords.open(p2bRecord, 0);
  if (kind !== DATA || new TextDecoder().decode(ping) !== '{"type":"ping","nonce":1}') throw new Error("box could not open the phone's record");

  const b2pRecord = await boxRecords.seal(DATA, utf8('{"type":"pong","nonce":1}'), 0);
  out[p("messages.b2p_data_record")] = toHex(b2pRecord);
  const got = await conn.receiveMessage(b2pRecord, 0);
  const ev = got[0];
  if (ev?.type !== "message" || new TextDecoder().decode(ev.payload) !== '{"type":"pong","nonce":1}') {
    throw new Error("phone could not open the box's record");
  }

  // The clock: a KEEPALIVE after 120 s without sending, a REKEY at 600 s, traffic after it.
  if (conn.nextDeadline() !== 120) throw new Error(`keep-alive deadline ${conn.nextDeadline()}`);
  await conn.handleTimer(120);
  const [keepalive] = conn.dataToSend();
  if ((await boxRecords.open(keepalive, 120))[0] !== KEEPALIVE) throw new Error("no KEEPALIVE on an idle session");
  await conn.handleTimer(600);
  const [rekey] = conn.dataToSend();
  if ((await boxRecords.open(rekey, 600))[0] !== REKEY) throw new Error("no REKEY at 600 s");
  await conn.sendMessage(utf8("after rekey"), 601);
  const [after] = conn.dataToSend();
  const [k2, c2] = await boxRecords.open(after, 601);
  if (k2 !== DATA || new TextDecoder().decode(c2) !== "after rekey") throw new Error("traffic after the rekey failed");
}

/**
 * @param {any} v the parsed vectors file
 * @returns {Promise<Record<string, string>>}
 */
export async function reproduce(v) {
  /** @type {Record<string, string>} */
  const out = {};
  out.protocol_version = String(hs.PROTOCOL_VERSION);
  await handshake(v.inputs, "pairing", out);
  await handshake(v.inputs, "session", out);
  await handshake(v.inputs, "session", out, "refused", v.refused.code);
  if (out["refused.phone_saw"] !== "phone_revoked") throw new Error("refusal code not seen by the phone");
  delete out["refused.phone_saw"];

  // records
  const r = v.records;
  const send = fromHex(r.send_secret);
  const layer = await RecordLayer.create(fromHex(r.session_id), send, new Uint8Array(32), 0);
  out["records.session_id"] = r.session_id;
  out["records.send_secret"] = toHex(send);
  out["records.traffic_key"] = toHex(await c.hkdfExpand(send, "traffic key"));
  out["records.pad_block"] = String(layer.config.padBlock);
  /** @type {Record<string, number>} */
  const types = { data: DATA, rekey: REKEY, keepalive: KEEPALIVE, error: ERROR };
  const reader = await RecordLayer.create(fromHex(r.session_id), new Uint8Array(32), send, 0);
  for (const [i, rec] of r.records.entries()) {
    const t = types[rec.type];
    if (t === undefined) throw new Error(`unknown record type in vectors: ${rec.type}`);
    const wire = await layer.seal(t, fromHex(rec.content), 0);
    out[`records.records.${i}.counter`] = String(i);
    out[`records.records.${i}.type`] = rec.type;
    out[`records.records.${i}.content`] = rec.content;
    out[`records.records.${i}.wire`] = toHex(wire);
    // and the receiver strips the padding (its counter set to this record's: ERROR ends a stream)
    reader._recv.counter = i;
    reader.closedByPeer = false;
    const [kind, content] = await reader.open(wire, 0);
    if (kind !== t || toHex(content) !== rec.content) throw new Error(`record ${i} did not open to its content`);
  }

  // framing
  const f = v.framing;
  const phone = new Framer(f.phone_mtu, f.phone_window);
  const box = new Framer(f.box_mtu, f.box_window, "box");
  const req = phone.start();
  box.receiveDatagram(req);
  const [rsp] = box.datagramsToSend();
  phone.receiveDatagram(rsp);
  const message = fromHex(f.message);
  phone.sendMessage(message);
  const fragments = phone.datagramsToSend();
  /** @type {Uint8Array[]} */
  let received = [];
  for (const d of fragments) received = received.concat(box.receiveDatagram(d));
  if (received.length !== 1 || toHex(received[0]) !== f.message) throw new Error("box framer did not reassemble the message");
  const acks = box.datagramsToSend();
  for (const a of acks) phone.receiveDatagram(a);
  if (phone.inFlight !== 0) throw new Error("phone framer still has fragments in flight after the acks");
  Object.assign(out, {
    "framing.phone_mtu": String(f.phone_mtu),
    "framing.phone_window": String(f.phone_window),
    "framing.box_mtu": String(f.box_mtu),
    "framing.box_window": String(f.box_window),
    "framing.caps_request": toHex(req),
    "framing.caps_response": toHex(rsp),
    "framing.message": toHex(message),
  });
  fragments.forEach((d, i) => (out[`framing.fragments.${i}`] = toHex(d)));
  acks.forEach((d, i) => (out[`framing.box_acks.${i}`] = toHex(d)));

  // a version-1 phone meets a version-2 box: the box still answers with its version, then fails
  const old = new Framer(244, 96, "box");
  let oldError = "";
  try {
    old.receiveDatagram(fromHex(v.old_version.v1_caps_request));
  } catch (e) {
    oldError = /** @type {any} */ (e).code;
  }
  out["old_version.v1_caps_request"] = v.old_version.v1_caps_request;
  out["old_version.box_answer"] = toHex(old.takeRefusal()[0] ?? new Uint8Array(0));
  out["old_version.box_error"] = oldError;
  // ... and this phone refuses an answer that names another version
  const phone2 = new Framer(244, 96);
  phone2.start();
  const v1Answer = fromHex(v.old_version.box_answer);
  v1Answer[3] = 1;
  try {
    phone2.receiveDatagram(v1Answer);
    throw new Error("phone accepted a version-1 capabilities answer");
  } catch (e) {
    if (/** @type {any} */ (e).code !== "unsupported_version") throw e;
  }

  // invite
  const inv = await decodeInvite(v.invite.text);
  const i = v.inputs;
  if (inv.boxIdHex !== i.box_id || toHex(inv.secretId) !== i.secret_id || toHex(inv.secret) !== i.secret || String(inv.expiresAt) !== i.expires_at) {
    throw new Error("invite decoded to other fields");
  }
  out["invite.text"] = await encodeInvite({
    ...inv,
    boxKeyHash: await c.sha256(publicPoint(fromHex(i.box_private_scalar))),
  });
  return out;
}
