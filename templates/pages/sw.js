// The phone pages' service worker (issue 15): pages the collector opened while online (the
// day's case list and each case with its forms) are kept, so they open without signal. Only
// GET pages are kept; actions are queued by the page itself (case.html.j2) and sent later.
const CACHE = "collection-pages-v1";

self.addEventListener("install", (event) => { self.skipWaiting(); });
self.addEventListener("activate", (event) => { event.waitUntil(self.clients.claim()); });

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!(url.pathname === "/my" || url.pathname.startsWith("/cases/"))) return;
  // Network first, the kept copy when there is no signal.
  event.respondWith(
    fetch(request).then((response) => {
      if (response.ok) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(request, copy));
      }
      return response;
    }).catch(() => caches.match(request).then((kept) => kept || Response.error()))
  );
});
