// @ts-check
/**
 * QR code scanning with the camera through the Shape Detection API's BarcodeDetector (Chrome on
 * Android, ChromeOS and macOS; not desktop Linux or Windows, not iOS Safari). Where it is missing
 * the page says so and the user pastes the code's text instead.
 *
 * Theory of operation: getUserMedia opens the rear camera into a <video>; every 200 ms the current
 * frame goes to `BarcodeDetector.detect`; the first QR value that starts with "EDGEBOX1:" ends the
 * scan and the camera is released. Nothing leaves the phone.
 */

import { PhoneError } from "./errors.js";

/**
 * @typedef {{detect(source: HTMLVideoElement): Promise<{rawValue: string}[]>}} Detector
 * @typedef {{new (opts: {formats: string[]}): Detector, getSupportedFormats(): Promise<string[]>}} DetectorClass
 */

/** @returns {DetectorClass | null} */
function detectorClass() {
  const cls = /** @type {any} */ (globalThis).BarcodeDetector;
  return typeof cls === "function" ? cls : null;
}

/** Can this browser scan QR codes with the camera? */
export async function scanningAvailable() {
  const cls = detectorClass();
  if (!cls || !navigator.mediaDevices?.getUserMedia) return false;
  try {
    return (await cls.getSupportedFormats()).includes("qr_code");
  } catch {
    return false;
  }
}

/**
 * Scan until a pairing code is seen or `signal` aborts.
 * @param {HTMLVideoElement} video
 * @param {AbortSignal} signal
 * @returns {Promise<string>}
 */
export async function scanPairingCode(video, signal) {
  const cls = detectorClass();
  if (!cls || !(await scanningAvailable())) throw new PhoneError("no QR scanning here", "camera_unavailable");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  } catch {
    throw new PhoneError("camera not available", "camera_unavailable");
  }
  const detector = new cls({ formats: ["qr_code"] });
  video.srcObject = stream;
  try {
    await video.play();
    while (!signal.aborted) {
      const codes = await detector.detect(video).catch(() => []);
      const hit = codes.find((x) => x.rawValue.toUpperCase().startsWith("EDGEBOX1:"));
      if (hit) return hit.rawValue;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new PhoneError("scan stopped", "scan_cancelled");
  } finally {
    for (const t of stream.getTracks()) t.stop();
    video.srcObject = null;
  }
}
