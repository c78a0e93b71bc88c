// The baseline: the first write-up's Worker (an S3 asset cache on Workers KV, 2020), written here from its
// description, not copied. Each request is looked up in the data center's Cache API, then in KV under its
// path, then fetched from ORIGIN + path. A miss is buffered, written to KV and to the cache, and only then
// answered; a KV hit is written to the cache before it is answered. No HTTP semantics: every answer is
// kept, whatever its status or Cache-Control, and the origin's headers are passed on as they are.
// `x-bench-tier` (cache, kv or origin) and `x-bench-kv-put` (on a miss) are for the bench's own checks.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const cacheKey = new Request(url.toString());
    const cache = caches.default;

    const cached = await cache.match(cacheKey);
    if (cached) return tagged(cached, { "x-bench-tier": "cache" });

    const path = url.pathname;
    const stored = await env.ASSETS.getWithMetadata(path, "arrayBuffer");
    if (stored.value !== null) {
      const headers = { "content-type": stored.metadata?.contentType ?? "application/octet-stream" };
      headers["cache-control"] = "public, max-age=3600";
      const response = new Response(stored.value, { headers });
      await cache.put(cacheKey, response.clone());
      return tagged(response, { "x-bench-tier": "kv" });
    }

    const origin = await fetch(env.ORIGIN + path);
    const body = await origin.arrayBuffer();
    const contentType = origin.headers.get("content-type") ?? "application/octet-stream";
    let kvPut = "stored";
    try {
      await env.ASSETS.put(path, body, { metadata: { contentType } });
    } catch (error) {
      // Workers KV takes values up to 25 MiB; the write-up's Worker has no answer for larger objects.
      kvPut = "failed";
      console.log(JSON.stringify({ event: "baseline.kv-put-failed", path, error: String(error) }));
    }
    const response = new Response(body, { status: origin.status, headers: origin.headers });
    await cache.put(cacheKey, response.clone());
    return tagged(response, { "x-bench-tier": "origin", "x-bench-kv-put": kvPut });
  },
};

function tagged(response, fields) {
  const copy = new Response(response.body, response);
  for (const [name, value] of Object.entries(fields)) copy.headers.set(name, value);
  return copy;
}
