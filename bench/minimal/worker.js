// The minimal Cache-API Worker: the physical limit for a caching Worker on this runtime (issue 16). An edge
// hit is `caches.default.match` and the cached response handed back as it is; a miss is `fetch` from the
// origin, answered at once, with `caches.default.put` of a clone in the background (the Cache API keeps what
// the origin's Cache-Control allows). Nothing else: no site, no key hashing, no record, no headers of its own.
// The bench tells its tiers apart by the Cache API's own `cf-cache-status: HIT` on what `match` returns.
export default {
  async fetch(request, env, ctx) {
    const cache = caches.default;
    const cached = await cache.match(request.url);
    if (cached) return cached;
    const response = await fetch(env.ORIGIN + new URL(request.url).pathname);
    if (response.ok) ctx.waitUntil(cache.put(request.url, response.clone()));
    return response;
  },
};
