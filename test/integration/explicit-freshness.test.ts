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
    expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toContain("detail=storing");
    const edge = await send(`http://${host}${path}`);
    expect(edge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    await evictEdge(id, path);
    const kv = await send(`http://${host}${path}`);
    expect(kv.headers.get("cache-status")).toMatch(/Tiercel-KV; hit/);
    expect(await kv.text()).toBe("v1");
    expect((await origin.hits(path)).hits).toBe(1);
  });
});

describe("every final status with explicit freshness (issue 12 §2, RFC 9111 §3)", () => {
  const headersFor = (status: number): Record<string, string> =>
    status === 303 ? { location: "/elsewhere" } : { "content-type": "text/plain" };

  it.each([204, 299, 303, 400, 403, 500, 503])(
    "stores a %i with max-age and answers it from the cache",
    async (status) => {
      const { host } = await newSite();
      const path = `/${unique(`status-${status}`)}`;
      const body = status === 204 ? undefined : "answer {hit}";
      await origin.route(path, {
        status,
        ...(body ? { body } : {}),
        headers: { ...headersFor(status), "cache-control": "max-age=60" },
      });
      const first = await send(`http://${host}${path}`);
      expect(first.status).toBe(status);
      expect(first.headers.get("cache-status")).toContain("detail=storing");
      const second = await send(`http://${host}${path}`);
      expect(second.status).toBe(status);
      expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(await second.text()).toBe(body ? "answer 1" : "");
      expect((await origin.hits(path)).hits).toBe(1);
    },
  );

  it.each([299, 303, 400, 403, 500, 503])("does not store a %i without explicit freshness", async (status) => {
    const { host } = await newSite({ cache: { staleWhileRevalidate: 60, staleIfError: 60 } });
    const path = `/${unique(`status-none-${status}`)}`;
    const lastModified = HTTP_DATE(Date.now() - 86_400_000);
    await origin.route(path, {
      status,
      body: "answer {hit}",
      headers: { ...headersFor(status), "last-modified": lastModified },
    });
    await send(`http://${host}${path}`);
    const second = await send(`http://${host}${path}`);
    expect(second.status).toBe(status);
    expect(second.headers.get("cache-status")).toContain("not-stored");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("stores a 204's null body in both tiers and answers it from KV once the edge forgets it", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("no-content")}`;
    await origin.route(path, { status: 204, headers: { "cache-control": "max-age=60", "x-kind": "empty" } });
    await send(`http://${host}${path}`);
    await evictEdge(id, path);
    const kv = await send(`http://${host}${path}`);
    expect(kv.status).toBe(204);
    expect(kv.headers.get("cache-status")).toMatch(/Tiercel-KV; hit/);
    expect(kv.headers.get("x-kind")).toBe("empty");
    expect(kv.body).toBeNull();
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("never lets a stored 503 outlive its freshness: no edgeTtl, no stale windows, the working origin answers", async () => {
    const { host } = await newSite({ cache: { edgeTtl: 3600, staleWhileRevalidate: 600, staleIfError: 600 } });
    const path = `/${unique("error-fresh-only")}`;
    await origin.route(path, {
      status: 503,
      body: "down {hit}",
      headers: { "cache-control": "max-age=10, stale-while-revalidate=600" },
    });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(5);
    const cached = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(cached.status).toBe(503);
    expect(await cached.text()).toBe("down 1");
    clock.advance(10);
    await origin.route(path, { body: "up {hit}", headers: { "cache-control": "max-age=60" } });
    const recovered = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(recovered.status).toBe(200);
    expect(await recovered.text()).toBe("up 2");
  });

  it("keeps negative caching: a 404 with a long max-age lives for the site's negativeTtl", async () => {
    const { host } = await newSite({ cache: { negativeTtl: 30 } });
    const path = `/${unique("negative")}`;
    await origin.route(path, { status: 404, body: "missing {hit}", headers: { "cache-control": "max-age=3600" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(40);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("missing 2");
  });
});

describe("targeted cache control (issue 12 §1, RFC 9213)", () => {
  it("stores a response whose CDN-Cache-Control allows it despite Cache-Control: no-store, and passes both on", async () => {
    const { host } = await newSite();
    const path = `/${unique("cdn-cc")}`;
    await origin.route(path, {
      body: "v{hit}",
      headers: { "cache-control": "no-store", "cdn-cache-control": "max-age=60" },
    });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("cache-status")).toContain("detail=storing");
    const hit = await send(`http://${host}${path}`);
    expect(await hit.text()).toBe("v1");
    expect(hit.headers.get("cache-control")).toBe("no-store");
    expect(hit.headers.get("cdn-cache-control")).toBe("max-age=60");
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("does not store a response whose Tiercel-Cache-Control says no-store despite Cache-Control: max-age=600, and strips it", async () => {
    const { host } = await newSite();
    const path = `/${unique("tiercel-cc")}`;
    await origin.route(path, {
      body: "v{hit}",
      headers: { "cache-control": "max-age=600", "tiercel-cache-control": "no-store" },
    });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("cache-status")).toContain("not-stored-no-store");
    expect(first.headers.get("cache-control")).toBe("max-age=600");
    expect(first.headers.get("tiercel-cache-control")).toBeNull();
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v2");
  });

  it("prefers Tiercel-Cache-Control over CDN-Cache-Control, and never shows it to clients on hits", async () => {
    const { host } = await newSite();
    const path = `/${unique("both-targeted")}`;
    await origin.route(path, {
      body: "v{hit}",
      headers: { "cdn-cache-control": "no-store", "tiercel-cache-control": "max-age=60" },
    });
    await send(`http://${host}${path}`);
    const hit = await send(`http://${host}${path}`);
    expect(await hit.text()).toBe("v1");
    expect(hit.headers.get("tiercel-cache-control")).toBeNull();
    expect(hit.headers.get("cdn-cache-control")).toBe("no-store");
  });

  it("ignores an invalid targeted field as a whole and uses Cache-Control (RFC 9213 §2.1)", async () => {
    const { host } = await newSite();
    const stored = `/${unique("invalid-targeted")}`;
    const refused = `/${unique("invalid-targeted-nostore")}`;
    // Upper-case keys and a trailing comma are not a Structured Fields Dictionary.
    await origin.route(stored, {
      body: "v{hit}",
      headers: { "cache-control": "max-age=60", "tiercel-cache-control": "No-Store" },
    });
    await origin.route(refused, {
      body: "v{hit}",
      headers: { "cache-control": "no-store", "cdn-cache-control": "max-age=60," },
    });
    await send(`http://${host}${stored}`);
    expect(await (await send(`http://${host}${stored}`)).text()).toBe("v1");
    await send(`http://${host}${refused}`);
    expect(await (await send(`http://${host}${refused}`)).text()).toBe("v2");
  });

  it("replaces Expires too: a targeted max-age=10 wins over an Expires an hour away (RFC 9213 §2.2)", async () => {
    const { host } = await newSite();
    const path = `/${unique("targeted-expires")}`;
    const clock = testClock();
    await origin.route(path, {
      body: "v{hit}",
      headers: {
        date: HTTP_DATE(clock.now()),
        expires: HTTP_DATE(clock.now() + 3_600_000),
        "cdn-cache-control": "max-age=10",
      },
    });
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("keeps the site's edgeTtl above a targeted field (edgeTtl > targeted > Cache-Control)", async () => {
    const { host } = await newSite({ cache: { edgeTtl: 300 } });
    const path = `/${unique("targeted-edgettl")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cdn-cache-control": "max-age=10" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(200);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v1");
  });

  it("never serves stale what a targeted must-revalidate forbids, whatever the site's stale-if-error", async () => {
    const { host } = await newSite({ cache: { staleIfError: 600 } });
    const path = `/${unique("targeted-mustreval")}`;
    await origin.route(path, {
      body: "v1",
      headers: { "cache-control": "max-age=10", "cdn-cache-control": "max-age=10, must-revalidate" },
    });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, { status: 503, body: "down" });
    expect((await send(`http://${host}${path}`, undefined, { now: clock.now })).status).toBe(503);
  });

  it("obeys only the fields the site lists: with targetedFields [] CDN-Cache-Control changes nothing", async () => {
    const { host } = await newSite({ cache: { targetedFields: [] } });
    const path = `/${unique("targeted-off")}`;
    await origin.route(path, {
      body: "v{hit}",
      headers: { "cache-control": "no-store", "cdn-cache-control": "max-age=60" },
    });
    await send(`http://${host}${path}`);
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v2");
  });

  it("strips Tiercel-Cache-Control from uncached methods' answers too", async () => {
    const { host } = await newSite();
    const path = `/${unique("targeted-post")}`;
    await origin.route(path, {
      body: "ok",
      headers: { "tiercel-cache-control": "no-store", "cdn-cache-control": "no-store" },
    });
    const response = await send(`http://${host}${path}`, { method: "POST", body: "x" });
    expect(response.headers.get("tiercel-cache-control")).toBeNull();
    expect(response.headers.get("cdn-cache-control")).toBe("no-store");
  });
});

describe("fills with many readers", () => {
  it("collapses 20 concurrent misses of a 204 and of a 503 with max-age into one origin request each", async () => {
    const { host } = await newSite();
    for (const status of [204, 503]) {
      const path = `/${unique(`many-${status}`)}`;
      await origin.route(path, {
        status,
        delayMs: 200,
        ...(status === 204 ? {} : { body: "busy" }),
        headers: { "cdn-cache-control": "max-age=60", "cache-control": "no-store" },
      });
      const answers = await Promise.all(Array.from({ length: 20 }, () => send(`http://${host}${path}`)));
      expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(status));
      expect(answers.every((answer) => answer.headers.get("cache-control") === "no-store")).toBe(true);
      expect((await origin.hits(path)).hits).toBe(1);
      expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    }
  });
});
