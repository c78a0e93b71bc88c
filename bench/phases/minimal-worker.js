// The minimal Cache-API Worker the large-media phase compares Tiercel with (bench/phases/large-media.mjs):
// the data center's Cache API, else the origin, its body teed to the client and to cache.put. No KV, no
// checks. Until bench/minimal/ exists on main (another helper's), it lives here.
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const key = new Request(url.toString());
    const cached = await caches.default.match(key);
    if (cached) return cached;
    const origin = await fetch(env.ORIGIN + url.pathname);
    if (!origin.ok || !origin.body) return origin;
    const [client, store] = origin.body.tee();
    ctx.waitUntil(caches.default.put(key, new Response(store, origin)).catch(() => {}));
    return new Response(client, origin);
  },
};
