import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, send, unique } from "../support/harness";

/** The three tiers end to end: origin miss, edge hit, KV hit refilling the edge. */
describe("tiers", () => {
  it("streams a miss from the origin, stores it in both tiers in the background, then hits the edge", async () => {
    const { host } = await newSite();
    const path = `/${unique("asset")}.css`;

    const first = await send(`http://${host}${path}`);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe(`GET ${path} #1`);
    // The cold miss goes through the shield (on by default), which fetched the origin and wrote KV.
    expect(first.headers.get("cache-status")).toBe(
      "Tiercel-Shield; fwd=miss; fwd-status=200; detail=storing, Tiercel-KV; fwd=miss; fwd-status=200; detail=storing, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing",
    );
    expect(first.headers.get("server-timing")).toMatch(/^site;dur=[\d.]+, edge;dur=[\d.]+, kv;dur=[\d.]+, shield;dur=/);

    const second = await send(`http://${host}${path}`);
    expect(await second.text()).toBe(`GET ${path} #1`);
    expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit; ttl=\d+$/);
    expect(second.headers.get("age")).toMatch(/^\d+$/);
    expect(second.headers.get("content-length")).toBe(String(`GET ${path} #1`.length));
    expect(second.headers.get("server-timing")).not.toContain("origin");
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("answers from KV when the edge has nothing, and refills the edge in the background", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("img")}.png`;
    await send(`http://${host}${path}`);
    // This data center's cache loses the object (eviction); the global tier still has it.
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));

    const fromKv = await send(`http://${host}${path}`);
    expect(await fromKv.text()).toBe(`GET ${path} #1`);
    expect(fromKv.headers.get("cache-status")).toMatch(
      /^Tiercel-KV; hit; ttl=\d+, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing$/,
    );
    expect(fromKv.headers.get("server-timing")).toMatch(/edge;dur=.*kv;dur=/);

    const fromEdge = await send(`http://${host}${path}`);
    expect(fromEdge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await fromEdge.text()).toBe(`GET ${path} #1`);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("keys the exact query: another query string is another object", async () => {
    const { host } = await newSite();
    const path = `/${unique("q")}`;
    await send(`http://${host}${path}?a=1&b=2`);
    const reordered = await send(`http://${host}${path}?b=2&a=1`);
    expect(reordered.headers.get("cache-status")).toContain("fwd=miss");
    const same = await send(`http://${host}${path}?a=1&b=2`);
    expect(same.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("keeps the headers of an entry whose record is too big for KV metadata", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("big-headers")}`;
    const long = "x".repeat(1500);
    await origin.route(path, { body: "payload", headers: { "cache-control": "max-age=300", "x-long": long } });
    await send(`http://${host}${path}`);
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));

    const fromKv = await send(`http://${host}${path}`);
    expect(fromKv.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
    expect(fromKv.headers.get("x-long")).toBe(long);
    expect(await fromKv.text()).toBe("payload");
  });

  it("keeps a binary body byte for byte", async () => {
    const { host } = await newSite();
    const path = `/${unique("bytes")}.bin`;
    await origin.route(path, { size: 100_000, headers: { "cache-control": "max-age=300" } });
    const first = new Uint8Array(await (await send(`http://${host}${path}`)).arrayBuffer());
    const second = await send(`http://${host}${path}`);
    expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(new Uint8Array(await second.arrayBuffer())).toEqual(first);
    expect(first.byteLength).toBe(100_000);
  });
});

describe("two sites with the same paths", () => {
  it("never see each other's objects", async () => {
    const a = await newSite({ basePath: "/site-a" });
    const b = await newSite({ basePath: "/site-b" });
    const path = `/${unique("shared")}/index.html`;

    const fromA = await send(`http://${a.host}${path}`);
    const fromB = await send(`http://${b.host}${path}`);
    expect(await fromA.text()).toBe(`GET /site-a${path} #1`);
    expect(await fromB.text()).toBe(`GET /site-b${path} #1`);
    expect(fromB.headers.get("cache-status")).toContain("fwd=miss");

    const againA = await send(`http://${a.host}${path}`);
    const againB = await send(`http://${b.host}${path}`);
    expect(await againA.text()).toBe(`GET /site-a${path} #1`);
    expect(await againB.text()).toBe(`GET /site-b${path} #1`);
    expect((await origin.hits(`/site-a${path}`)).hits).toBe(1);
    expect((await origin.hits(`/site-b${path}`)).hits).toBe(1);
  });
});
