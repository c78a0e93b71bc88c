import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, send, testClock, unique } from "../support/harness";

/**
 * Issue 12 §1–§3 end to end: targeted Cache-Control (RFC 9213), every final status with explicit freshness
 * (RFC 9111 §3), and Age, dates and lifetime limits — the real Worker pipeline in workerd, real local KV and
 * Cache API, the counting origin on loopback, and a clock the test moves.
 */

async function evictEdge(id: string, path: string): Promise<void> {
  await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));
}

const HTTP_DATE = (ms: number) => new Date(ms).toUTCString();

describe("Age, dates and limits (issue 12 §3)", () => {
  it("reads the first value of an Age list, so a two-hour-old answer is not served as fresh (RFC 9111 §5.1)", async () => {
    const { host } = await newSite();
    const path = `/${unique("age-list")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=3600", age: "7200, 0" } });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("cache-status")).toContain("not-stored-stale");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v2");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("reads the first of several Age field lines and counts it against the lifetime (RFC 9111 §4.2.3)", async () => {
    const { host } = await newSite();
    const path = `/${unique("age-lines")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=600", age: ["500", "0"] } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(50);
    const hit = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await hit.text()).toBe("v1");
    expect(Number(hit.headers.get("age"))).toBeGreaterThanOrEqual(550);
    clock.advance(60);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("never lets an unparseable Age make an answer fresh: it is taken as the largest age", async () => {
    const { host } = await newSite();
    const path = `/${unique("age-bad")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=3600", age: "soon" } });
    await send(`http://${host}${path}`);
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v2");
  });

  it("reads an Expires and Date written in lower case (RFC 9110 §5.6.7)", async () => {
    const { host } = await newSite();
    const path = `/${unique("expires-case")}`;
    const clock = testClock();
    const date = clock.now();
    await origin.route(path, {
      body: "v{hit}",
      headers: { date: HTTP_DATE(date).toLowerCase(), expires: HTTP_DATE(date + 120_000).toLowerCase() },
    });
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(100);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v1");
    clock.advance(30);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("stores a lifetime past KV's TTL range (max-age=2147483648) in both tiers", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("huge-ttl")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=2147483648" } });
    expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toContain("stored");
    const edge = await send(`http://${host}${path}`);
    expect(edge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    await evictEdge(id, path);
    const kv = await send(`http://${host}${path}`);
    expect(kv.headers.get("cache-status")).toMatch(/Tiercel-KV; hit/);
    expect(await kv.text()).toBe("v1");
    expect((await origin.hits(path)).hits).toBe(1);
  });
});
