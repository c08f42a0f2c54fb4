// The phone pages' service worker (issue 15): pages the collector opened while online (the
// day's case list and each case with its forms) are kept, so they open without signal. Only
// the HTML of /my and /cases/<loan> is kept (never the record's PDF or CSV, nor agreements),
// in a cache of the signed-in session (the page's X-Offline-Key header, a hash of the
// session: another user's pages are never served), for at most the session's 12 hours since
// the last page seen online. Signing out clears it all (Clear-Site-Data on /logout); a page
// answered by the sign-in page forgets it too. Actions are queued by the page (case.html.j2).
const PREFIX = "collection-pages-";
const STATE = "collection-session";
const KEY_URL = "/__offline_key";
const KEEP_MS = 12 * 3600 * 1000;

function kept(path) {
  return path === "/my" || /^\/cases\/[^/]+$/.test(path);
}

async function currentKey() {
  const state = await caches.open(STATE);
  const stored = await state.match(KEY_URL);
  if (!stored) return null;
  const { key, at } = await stored.json();
  return Date.now() - at <= KEEP_MS ? key : null;
}

async function setKey(key) {
  const state = await caches.open(STATE);
  await state.put(KEY_URL, new Response(JSON.stringify({ key, at: Date.now() })));
  for (const name of await caches.keys()) {
    if (name.startsWith(PREFIX) && name !== PREFIX + key) await caches.delete(name);
  }
}

async function forget() {
  for (const name of await caches.keys()) {
    if (name.startsWith(PREFIX) || name === STATE) await caches.delete(name);
  }
}

self.addEventListener("install", () => { self.skipWaiting(); });
self.addEventListener("activate", (event) => {
  // Caches of the first version were shared by every user: gone.
  event.waitUntil(caches.delete("collection-pages-v1").then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!kept(url.pathname)) return;
  // Network first; the kept copy of this session when there is no signal.
  event.respondWith((async () => {
    let response;
    try {
      response = await fetch(request);
    } catch (e) {
      const key = await currentKey();
      if (!key) return Response.error();
      const copy = await (await caches.open(PREFIX + key)).match(request);
      return copy || Response.error();
    }
    const key = response.headers.get("X-Offline-Key");
    const html = (response.headers.get("content-type") || "").startsWith("text/html");
    if (response.ok && key && html && !response.redirected) {
      await setKey(key);
      await (await caches.open(PREFIX + key)).put(request, response.clone());
    } else if (response.status === 401 || new URL(response.url).pathname === "/login") {
      await forget();  // no session: nothing kept is shown
    }
    return response;
  })());
});
