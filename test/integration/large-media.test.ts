import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { platformFor } from "../../src/worker";
import { newSite, origin, send, unique } from "../support/harness";

/** Bytes the tiers answered for a site so far (the stats' `bytes`: a ranged read counts the range). */
function bytesRead(id: string): number {
  return platformFor(env).stats.snapshot(id)[id]?.bytes ?? 0;
}

const digits = (start: number, length: number) => Array.from({ length }, (_, i) => String((start + i) % 10)).join("");

describe("large media (issue 15)", () => {
  it("answers a tail range of a large stored object from R2 reading only the tail, then refills the edge", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("video")}.mp4`;
    const size = 12 * 1024 * 1024 + 3;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300", "content-type": "video/mp4" } });
    await send(`http://${host}${path}`);
    const key = await cacheKey({ siteId: id, path, query: "" });
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(key);

    const before = bytesRead(id);
    const tail = await send(`http://${host}${path}`, { headers: { range: "bytes=-1000" } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get("content-range")).toBe(`bytes ${size - 1000}-${size - 1}/${size}`);
    expect(tail.headers.get("cache-status")).toMatch(
      /^Tiercel-KV; hit; ttl=\d+, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing$/,
    );
    expect(await tail.text()).toBe(digits(size - 1000, 1000));
    expect(bytesRead(id) - before).toBe(1000);

    // The whole object was read once in the background into the edge: the next range is an edge hit.
    const middle = await send(`http://${host}${path}`, { headers: { range: "bytes=5000000-5000009" } });
    expect(middle.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await middle.text()).toBe(digits(5_000_000, 10));
    expect((await origin.hits(path)).hits).toBe(1);
  }, 60_000);

  it("keeps a key's first fill out of the global tier under second-request admission", async () => {
    const { host, id } = await newSite({ cache: { globalAdmission: "second-request" } });
    const path = `/${unique("once")}.txt`;
    await origin.route(path, { body: "asked for once", headers: { "cache-control": "max-age=300" } });
    const key = await cacheKey({ siteId: id, path, query: "" });
    await send(`http://${host}${path}`);
    expect(await env.CACHE_KV.get(`c:${key}`)).toBeNull();

    // Asked again after this data center lost it: now it goes to the global tier too.
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(key);
    await send(`http://${host}${path}`);
    expect(await env.CACHE_KV.get(`c:${key}`)).toBe("asked for once");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});
