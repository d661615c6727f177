// @ts-check
/**
 * Service worker: the page works with no network after its first load.
 *
 * Theory of operation: on install every file of the bundle (FILES; a test keeps the list equal to
 * the folder) is fetched into a versioned cache; on activate older caches are dropped. Requests
 * for bundle files are answered from the cache at once and refreshed in the background
 * (stale-while-revalidate), so a phone in a branch without data still opens the page, and an
 * updated box serves the new version on the next visit. Nothing else (WebSocket, Bluetooth) goes
 * through here.
 */

/** @type {ServiceWorkerGlobalScope} */
const sw = /** @type {any} */ (self);

const CACHE = "edgebox-phone-v2";
const FILES = [
  "./",
  "index.html",
  "app.js",
  "style.css",
  "manifest.webmanifest",
  "icon.svg",
  "icon-192.png",
  "icon-512.png",
  "lib/bytes.js",
  "lib/channel.js",
  "lib/client.js",
  "lib/connection.js",
  "lib/crypto.js",
  "lib/errors.js",
  "lib/framing.js",
  "lib/handshake.js",
  "lib/invite.js",
  "lib/keystore.js",
  "lib/messages.js",
  "lib/records.js",
  "lib/scanner.js",
  "lib/waiting.js",
  "lib/transport/bluetooth.js",
  "lib/transport/link.js",
  "lib/transport/websocket.js",
];

sw.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(FILES);
      await sw.skipWaiting();
    })(),
  );
});

sw.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET" || new URL(req.url).origin !== sw.location.origin) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const hit = await cache.match(req, { ignoreSearch: true });
      const refresh = fetch(req)
        .then(async (res) => {
          if (res.ok && hit) await cache.put(req, res.clone());
          return res;
        })
        .catch(() => null);
      if (hit) {
        event.waitUntil(refresh);
        return hit;
      }
      const res = await refresh;
      return res ?? new Response("offline", { status: 503, statusText: "offline" });
    })(),
  );
});
