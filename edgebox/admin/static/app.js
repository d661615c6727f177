// edgebox admin: the only script (served by the box; the CSP allows nothing else). The pages work
// without it; it adds live status refresh, the pairing countdown, copying the pairing code, upload
// progress and confirmations.
"use strict";

function poll(url) {
  return fetch(url, { headers: { "X-Edgebox-Poll": "1" }, credentials: "same-origin", cache: "no-store" });
}

function liveStatus() {
  const box = document.getElementById("live");
  if (!box) return;
  const every = Math.max(1, Number(box.dataset.every || 5)) * 1000;
  const tick = async () => {
    try {
      const r = await poll(box.dataset.live);
      if (r.status === 403) { location.reload(); return; }
      if (r.ok) box.innerHTML = await r.text();
    } catch (e) { /* box unreachable for a moment: keep the last view */ }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

function pairing() {
  const card = document.getElementById("pairing");
  const countdown = document.getElementById("countdown");
  if (!card || !countdown) return;
  const skew = Date.now() / 1000 - Number(card.dataset.now);
  const expires = Number(card.dataset.expires);
  const status = document.getElementById("pair-status");
  const code = document.getElementById("pair-code");
  let finished = false;
  const finish = (html, ok) => {
    finished = true;
    status.innerHTML = "";
    status.append(...html);
    status.classList.toggle("ok", ok);
    if (code) code.remove();  // the QR and its text: the code is used up or expired
  };
  const draw = () => {
    if (finished) return;
    const left = Math.max(0, Math.round(expires - (Date.now() / 1000 - skew)));
    countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
    if (left === 0) finish([document.createTextNode("This pairing code has expired.")], false);
    else setTimeout(draw, 1000);
  };
  const check = async () => {
    if (finished) return;
    try {
      const r = await poll(card.dataset.state);
      if (r.ok) {
        const s = await r.json();
        if (s.status === "paired") {
          const strong = document.createElement("strong");
          strong.id = "paired-name";
          strong.textContent = s.phone_name || s.phone_id;
          const link = document.createElement("a");
          link.href = "/phones"; link.textContent = "Go to phones";
          finish([document.createTextNode("Paired: "), strong, document.createTextNode(" · "), link], true);
          return;
        }
        if (s.status !== "pending") {
          finish([document.createTextNode(`This pairing code is ${s.status}.`)], false);
          return;
        }
      }
    } catch (e) { /* retry */ }
    setTimeout(check, 1500);
  };
  draw();
  check();
}

function copyPayload() {
  const button = document.getElementById("copy-payload");
  const payload = document.getElementById("pair-payload");
  if (!button || !payload) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(payload.textContent.trim());
      button.textContent = "Copied";
    } catch (e) {
      // No clipboard access: select the text so that the user can copy it by hand.
      const range = document.createRange();
      range.selectNodeContents(payload);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = "Selected: copy it";
    }
  });
}

// The backend's stages (admin/backend.py DocumentProgress) in words; "embedding" counts passages.
const STAGE_WORDS = {
  queued: "Waiting to start…",
  reading: "Reading the file…",
  chunking: "Splitting it into passages…",
  storing: "Saving the passages…",
};

function upload() {
  const form = document.getElementById("upload");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const box = document.getElementById("upload-progress");
    const bar = document.getElementById("upload-bar");
    const stage = document.getElementById("upload-stage");
    box.hidden = false;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { bar.max = 100; bar.value = Math.round(50 * e.loaded / e.total); }
      stage.textContent = "Uploading…";
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status !== 202) { stage.textContent = body.error || `Upload refused (${xhr.status})`; return; }
      const follow = async () => {
        const r = await poll(body.state);
        const j = await r.json();
        if (j.error) { stage.textContent = `Failed: ${j.error}`; return; }
        const frac = j.total ? j.done / j.total : 0;
        bar.value = 50 + Math.round(50 * (j.stage === "done" ? 1 : frac));
        stage.textContent = j.stage === "embedding"
          ? `Embedding passages: ${j.done} of ${j.total} done…`
          : STAGE_WORDS[j.stage] || "Working…";
        if (j.stage === "done") {
          stage.textContent = `Added ${j.filename}: ${j.document.chunks} passages.`;
          setTimeout(() => location.assign("/documents?notice=" + encodeURIComponent(`Added ${j.filename}.`)), 400);
          return;
        }
        setTimeout(follow, 300);
      };
      follow();
    };
    xhr.onerror = () => { stage.textContent = "Upload failed: the box is unreachable."; };
    xhr.send(new FormData(form));
  });
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => { if (!confirm(form.dataset.confirm)) ev.preventDefault(); });
  }
}

document.addEventListener("DOMContentLoaded", () => { liveStatus(); pairing(); copyPayload(); upload(); confirmations(); });
