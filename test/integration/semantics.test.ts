import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import worker from "../../src/worker";
import { newSite, origin, putSite, send, testClock, unique } from "../support/harness";

/**
 * RFC 9111 semantics end to end, in both tiers: the real Worker pipeline in workerd, real local KV and
 * Cache API, the counting origin on loopback, and time moved by the test (never slept).
 */

async function evictEdge(id: string, path: string, query = ""): Promise<void> {
  await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query }));
}

const HTTP_DATE = (ms: number) => new Date(ms).toUTCString();

describe("freshness (RFC 9111 §4.2)", () => {
  it("uses s-maxage over max-age in a shared cache (§4.2.1)", async () => {
    const { host } = await newSite();
    const path = `/${unique("smaxage")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=10, s-maxage=100" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(50);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v1");
    clock.advance(60);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("uses Expires minus Date when there is no max-age (§4.2.1)", async () => {
    const { host } = await newSite();
    const path = `/${unique("expires")}`;
    const clock = testClock();
    const date = clock.now();
    await origin.route(path, {
      body: "v{hit}",
      headers: { date: HTTP_DATE(date), expires: HTTP_DATE(date + 120_000) },
    });
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(100);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v1");
    clock.advance(30);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("counts the origin's Age against the lifetime (§4.2.3)", async () => {
    const { host } = await newSite();
    const path = `/${unique("age")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=60", age: "50" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(5);
    const hit = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(Number(hit.headers.get("age"))).toBeGreaterThanOrEqual(55);
    clock.advance(10);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("applies heuristic freshness from Last-Modified only where allowed (§4.2.2)", async () => {
    const { host } = await newSite();
    const path = `/${unique("heuristic")}`;
    const clock = testClock();
    // Modified 100 minutes ago: 10% is 10 minutes of freshness.
    await origin.route(path, { body: "v{hit}", headers: { "last-modified": HTTP_DATE(clock.now() - 6_000_000) } });
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(300);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v1");
    clock.advance(400);
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("v2");
  });

  it("uses the site's edge TTL over the origin's, and sends the browser TTL to clients", async () => {
    const { host } = await newSite({ cache: { edgeTtl: 300, browserTtl: 30 } });
    const path = `/${unique("ttl")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=10" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(200);
    const hit = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await hit.text()).toBe("v1");
    expect(hit.headers.get("cache-control")).toBe("public, max-age=30");
  });
});

describe("what is never stored (RFC 9111 §3)", () => {
  it("does not store a response to a request with Authorization unless the response allows it (§3.5)", async () => {
    const { host } = await newSite();
    const denied = `/${unique("auth")}`;
    const allowed = `/${unique("auth-public")}`;
    await origin.route(denied, { body: "v{hit}", headers: { "cache-control": "max-age=60" } });
    await origin.route(allowed, { body: "v{hit}", headers: { "cache-control": "public, max-age=60" } });
    const init = { headers: { authorization: "Bearer secret" } };
    await send(`http://${host}${denied}`, init);
    expect(await (await send(`http://${host}${denied}`, init)).text()).toBe("v2");
    await send(`http://${host}${allowed}`, init);
    expect(await (await send(`http://${host}${allowed}`, init)).text()).toBe("v1");
  });

  it("stores a response that sets a cookie, without the cookie, when the site opts in (§7.3)", async () => {
    const { host } = await newSite({ cache: { stripSetCookie: true } });
    const path = `/${unique("cookie")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=60", "set-cookie": "s=1" } });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("set-cookie")).toBeNull();
    const second = await send(`http://${host}${path}`);
    expect(await second.text()).toBe("v1");
    expect(second.headers.get("set-cookie")).toBeNull();
  });
});

describe("revalidation (RFC 9111 §4.3)", () => {
  it("revalidates a stale entry with its validators; a 304 refreshes both tiers without the body (§4.3.4)", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("reval")}`;
    await origin.route(path, {
      body: "original body",
      conditional: true,
      headers: { "cache-control": "max-age=10", etag: '"v1"' },
    });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);

    const revalidated = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(revalidated.status).toBe(200);
    expect(await revalidated.text()).toBe("original body");
    expect(revalidated.headers.get("cache-status")).toContain("fwd=stale; fwd-status=304; detail=storing");
    const seen = await origin.hits(path);
    expect(seen.hits).toBe(2);
    expect(seen.last?.headers["if-none-match"]).toBe('"v1"');

    // Fresh again in the edge, and in KV once the edge forgets it.
    clock.advance(5);
    const edge = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(edge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    await evictEdge(id, path);
    const kv = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(kv.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
    expect(await kv.text()).toBe("original body");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("drops the stored entry when a 304 makes the response unstorable (§3.2, §3)", async () => {
    const { host } = await newSite();
    const path = `/${unique("reval-nostore")}`;
    await origin.route(path, {
      body: "body",
      conditional: true,
      headers: { "cache-control": "max-age=10", etag: '"n"' },
    });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, {
      body: "body",
      conditional: true,
      headers: { "cache-control": "no-store", etag: '"n"' },
    });
    const revalidated = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await revalidated.text()).toBe("body");
    expect(revalidated.headers.get("cache-status")).toContain("not-stored-no-store");
    const next = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(next.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(3);
  });

  it("refuses a 304 to a request that sent no validator, and stores nothing (RFC 9110 §15.4.5)", async () => {
    const { host } = await newSite();
    const path = `/${unique("bad304")}`;
    await origin.route(path, { status: 304, headers: { "cache-control": "max-age=60" } });
    const response = await send(`http://${host}${path}`);
    expect(response.status).toBe(502);
    expect(((await response.json()) as ErrorBody).error.code).toBe("origin_bad_response");
    await send(`http://${host}${path}`);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("validates a no-cache response before every use (§5.2.2.4)", async () => {
    const { host } = await newSite();
    const path = `/${unique("nocache")}`;
    await origin.route(path, {
      body: "body",
      conditional: true,
      headers: { "cache-control": "no-cache", etag: '"x"' },
    });
    await send(`http://${host}${path}`);
    for (const expected of [2, 3]) {
      const response = await send(`http://${host}${path}`);
      expect(await response.text()).toBe("body");
      expect(response.headers.get("cache-status")).toContain("fwd-status=304");
      expect((await origin.hits(path)).hits).toBe(expected);
    }
  });

  it("never serves a must-revalidate response stale, not even when the origin fails (§5.2.2.2)", async () => {
    const { host } = await newSite({ cache: { staleIfError: 600 } });
    const path = `/${unique("mustreval")}`;
    await origin.route(path, { body: "v1", headers: { "cache-control": "max-age=10, must-revalidate" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, { status: 503, body: "down" });
    const response = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(response.status).toBe(503);
  });
});

describe("client conditionals (RFC 9110 §13)", () => {
  it("answers If-None-Match with 304 from a fresh entry, without the origin (§13.1.2)", async () => {
    const { host } = await newSite();
    const path = `/${unique("inm")}`;
    await origin.route(path, { body: "body", headers: { "cache-control": "max-age=60", etag: 'W/"e1"' } });
    await send(`http://${host}${path}`);
    const response = await send(`http://${host}${path}`, { headers: { "if-none-match": '"other", W/"e1"' } });
    expect(response.status).toBe(304);
    expect(response.headers.get("etag")).toBe('W/"e1"');
    expect(await response.text()).toBe("");
    const miss = await send(`http://${host}${path}`, { headers: { "if-none-match": '"other"' } });
    expect(miss.status).toBe(200);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("answers If-Modified-Since with 304 when not modified since (§13.1.3)", async () => {
    const { host } = await newSite();
    const path = `/${unique("ims")}`;
    const modified = HTTP_DATE(Date.now() - 3_600_000);
    await origin.route(path, { body: "body", headers: { "cache-control": "max-age=60", "last-modified": modified } });
    await send(`http://${host}${path}`);
    const response = await send(`http://${host}${path}`, { headers: { "if-modified-since": HTTP_DATE(Date.now()) } });
    expect(response.status).toBe(304);
    expect(response.headers.get("last-modified")).toBe(modified);
    const older = HTTP_DATE(Date.now() - 7_200_000);
    expect((await send(`http://${host}${path}`, { headers: { "if-modified-since": older } })).status).toBe(200);
  });

  it("answers a conditional miss from the fetched response, not the origin's 304", async () => {
    const { host } = await newSite();
    const path = `/${unique("cond-miss")}`;
    await origin.route(path, {
      body: "body",
      conditional: true,
      headers: { "cache-control": "max-age=60", etag: '"a"' },
    });
    const response = await send(`http://${host}${path}`, { headers: { "if-none-match": '"a"' } });
    expect(response.status).toBe(304);
    expect((await origin.hits(path)).last?.headers["if-none-match"]).toBeUndefined();
    const full = await send(`http://${host}${path}`);
    expect(await full.text()).toBe("body");
  });
});

describe("ranges (RFC 9110 §14)", () => {
  const BODY = "0123456789abcdefghij";

  async function rangedSite() {
    const site = await newSite();
    const path = `/${unique("range")}.bin`;
    await origin.route(path, { body: BODY, headers: { "cache-control": "max-age=300", etag: '"r1"' } });
    return { ...site, path };
  }

  it("answers a range on a miss with 206, and fills the cache with the whole object", async () => {
    const { host, path } = await rangedSite();
    const response = await send(`http://${host}${path}`, { headers: { range: "bytes=2-5" } });
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(`bytes 2-5/${BODY.length}`);
    expect(await response.text()).toBe("2345");
    expect((await origin.hits(path)).last?.headers.range).toBeUndefined();
    const whole = await send(`http://${host}${path}`);
    expect(whole.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await whole.text()).toBe(BODY);
  });

  it.each([
    ["edge", false],
    ["KV", true],
  ])("answers single, open-ended and suffix ranges from the %s tier (§14.1.2)", async (_, fromKv) => {
    const { host, id, path } = await rangedSite();
    await send(`http://${host}${path}`);
    const cases: [string, string, string][] = [
      ["bytes=0-0", "0", "bytes 0-0/20"],
      ["bytes=15-", "fghij", "bytes 15-19/20"],
      ["bytes=-3", "hij", "bytes 17-19/20"],
      ["bytes=18-100", "ij", "bytes 18-19/20"],
    ];
    for (const [range, body, contentRange] of cases) {
      if (fromKv) await evictEdge(id, path);
      const response = await send(`http://${host}${path}`, { headers: { range } });
      expect(response.headers.get("cache-status")).toMatch(fromKv ? /^Tiercel-KV; hit/ : /^Tiercel-Edge; hit/);
      expect(response.status).toBe(206);
      expect(response.headers.get("content-range")).toBe(contentRange);
      expect(await response.text()).toBe(body);
    }
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("answers an unsatisfiable range with 416 and the length (§15.5.17)", async () => {
    const { host, path } = await rangedSite();
    await send(`http://${host}${path}`);
    const response = await send(`http://${host}${path}`, { headers: { range: "bytes=50-60" } });
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe(`bytes */${BODY.length}`);
  });

  it("bounds many or overlapping ranges by answering the whole object (§14.2)", async () => {
    const { host, path } = await rangedSite();
    await send(`http://${host}${path}`);
    const response = await send(`http://${host}${path}`, { headers: { range: "bytes=0-1,1-2,3-4" } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(BODY);
  });

  it("ignores a range whose If-Range no longer matches (§13.1.5)", async () => {
    const { host, path } = await rangedSite();
    await send(`http://${host}${path}`);
    const stale = await send(`http://${host}${path}`, { headers: { range: "bytes=0-1", "if-range": '"old"' } });
    expect(stale.status).toBe(200);
    const current = await send(`http://${host}${path}`, { headers: { range: "bytes=0-1", "if-range": '"r1"' } });
    expect(current.status).toBe(206);
  });
});

describe("Vary (RFC 9111 §4.1)", () => {
  it("stores one variant per selecting header value and never serves one to a request that differs", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("vary")}`;
    await origin.route(path, {
      body: "variant {hit}",
      headers: { "cache-control": "max-age=60", vary: "Accept-Language" },
    });
    const en = { headers: { "accept-language": "en" } };
    const fr = { headers: { "accept-language": "fr" } };
    expect(await (await send(`http://${host}${path}`, en)).text()).toBe("variant 1");
    const frFirst = await send(`http://${host}${path}`, fr);
    expect(await frFirst.text()).toBe("variant 2");
    expect(frFirst.headers.get("cache-status")).toContain("fwd=vary-miss");
    expect(await (await send(`http://${host}${path}`, en)).text()).toBe("variant 1");
    // Whitespace around list members does not make a new variant (normalized values).
    const enSpaced = await send(`http://${host}${path}`, { headers: { "accept-language": " en " } });
    expect(await enSpaced.text()).toBe("variant 1");
    await evictEdge(id, path);
    const fromKv = await send(`http://${host}${path}`, fr);
    expect(fromKv.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
    expect(await fromKv.text()).toBe("variant 2");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("variant 3");
    expect((await origin.hits(path)).hits).toBe(3);
  });
});

describe("stale responses (RFC 5861)", () => {
  it("serves stale within stale-while-revalidate at once and refreshes once in the background (§3)", async () => {
    const { host } = await newSite();
    const path = `/${unique("swr")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=10, stale-while-revalidate=60" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    const [a, b] = await Promise.all([
      send(`http://${host}${path}`, undefined, { now: clock.now }),
      send(`http://${host}${path}`, undefined, { now: clock.now }),
    ]);
    expect(await a.text()).toBe("v1");
    expect(await b.text()).toBe("v1");
    expect(a.headers.get("cache-status")).toMatch(/hit; ttl=-\d+; detail=stale-while-revalidate/);
    expect((await origin.hits(path)).hits).toBe(2);
    const refreshed = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await refreshed.text()).toBe("v2");
    expect(refreshed.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });

  it("serves stale within stale-if-error on a 5xx, a timeout or a refused connection, and not after (§4)", async () => {
    // Grace off, so that only the stale-if-error window counts (grace.test.ts covers grace).
    const { host, id } = await newSite({ cache: { grace: 0 } });
    const path = `/${unique("sie")}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "max-age=10, stale-if-error=100" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(30);

    await origin.route(path, { status: 500, body: "broken" });
    const on5xx = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(on5xx.status).toBe(200);
    expect(await on5xx.text()).toBe("good");
    expect(on5xx.headers.get("cache-status")).toContain("fwd=stale; fwd-status=500; detail=stale-if-error");

    await origin.route(path, { hangUp: true });
    const onHangUp = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await onHangUp.text()).toBe("good");

    await putSite(host, {
      id,
      origin: { kind: "http", url: "http://127.0.0.1:9", allowPrivate: true },
      cache: { grace: 0 },
    });
    const onRefused = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(await onRefused.text()).toBe("good");
    expect(onRefused.headers.get("cache-status")).toContain("fwd-status=502");

    clock.advance(100);
    const tooLate = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(tooLate.status).toBe(502);
  });

  it("uses the site's stale-if-error default when the origin gives none, and passes errors through unstored", async () => {
    const { host } = await newSite({ cache: { staleIfError: 60 } });
    const path = `/${unique("sie-default")}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "max-age=10" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    // No explicit freshness: an error with one would be stored (issue 12 §2, test/integration/explicit-freshness).
    await origin.route(path, { status: 503, body: "busy" });
    expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("good");
    clock.advance(100);
    const error = await send(`http://${host}${path}`, undefined, { now: clock.now });
    expect(error.status).toBe(503);
    expect(error.headers.get("cache-status")).toContain("not-stored-no-expiration");
  });
});

describe("unsafe methods (RFC 9111 §4.4)", () => {
  it("invalidates the URL, and the same-site Location and Content-Location, after a non-error response", async () => {
    const { host } = await newSite();
    const target = `/${unique("post")}`;
    const located = `/${unique("located")}`;
    const contentLocated = `/${unique("content-located")}`;
    for (const path of [target, located, contentLocated]) {
      await origin.route(path, { body: `${path} {hit}`, headers: { "cache-control": "max-age=300" } });
      await send(`http://${host}${path}`);
    }
    await origin.route(target, {
      status: 201,
      body: "created",
      headers: { location: located, "content-location": `http://${host}${contentLocated}` },
    });
    const post = await send(`http://${host}${target}`, { method: "POST", body: "x" });
    expect(post.status).toBe(201);
    await origin.route(target, { body: `${target} {hit}`, headers: { "cache-control": "max-age=300" } });
    expect(await (await send(`http://${host}${target}`)).text()).toBe(`${target} 3`);
    expect(await (await send(`http://${host}${located}`)).text()).toBe(`${located} 2`);
    expect(await (await send(`http://${host}${contentLocated}`)).text()).toBe(`${contentLocated} 2`);
  });

  it("keeps what is stored when the unsafe request fails", async () => {
    const { host } = await newSite();
    const path = `/${unique("delete-fails")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=300" } });
    await send(`http://${host}${path}`);
    await origin.route(path, { status: 500, body: "no" });
    await send(`http://${host}${path}`, { method: "DELETE" });
    const after = await send(`http://${host}${path}`);
    expect(after.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await after.text()).toBe("v1");
  });
});

describe("negative caching", () => {
  it("stores 404 and 410 for the site's negative TTL only", async () => {
    const { host } = await newSite({ cache: { negativeTtl: 30 } });
    for (const status of [404, 410]) {
      const path = `/${unique(`gone-${status}`)}`;
      await origin.route(path, { status, body: "missing {hit}", headers: { "cache-control": "max-age=3600" } });
      const clock = testClock();
      await send(`http://${host}${path}`, undefined, { now: clock.now });
      clock.advance(20);
      const hit = await send(`http://${host}${path}`, undefined, { now: clock.now });
      expect(hit.status).toBe(status);
      expect(await hit.text()).toBe("missing 1");
      clock.advance(20);
      expect(await (await send(`http://${host}${path}`, undefined, { now: clock.now })).text()).toBe("missing 2");
    }
  });
});

describe("request collapsing", () => {
  it("makes one origin request for concurrent misses, and every waiter gets the whole response", async () => {
    const { host } = await newSite();
    const path = `/${unique("collapse")}`;
    await origin.route(path, { size: 50_000, delayMs: 200, headers: { "cache-control": "max-age=60" } });
    const responses = await Promise.all(Array.from({ length: 10 }, () => send(`http://${host}${path}`)));
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect((await response.arrayBuffer()).byteLength).toBe(50_000);
    }
    const collapsed = responses.filter((r) => r.headers.get("cache-status")?.includes("collapsed"));
    expect(collapsed.length).toBe(9);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("sends each waiter to the origin itself when the shared response is private", async () => {
    const { host } = await newSite();
    const path = `/${unique("collapse-private")}`;
    await origin.route(path, { body: "mine {hit}", delayMs: 100, headers: { "cache-control": "private" } });
    const responses = await Promise.all(Array.from({ length: 5 }, () => send(`http://${host}${path}`)));
    const bodies = await Promise.all(responses.map((r) => r.text()));
    expect(new Set(bodies).size).toBe(5);
    expect((await origin.hits(path)).hits).toBe(5);
  });

  it("lets no waiter hang when the shared fetch fails", async () => {
    const { host } = await newSite();
    const path = `/${unique("collapse-fail")}`;
    await origin.route(path, { hangUp: true, delayMs: 100 });
    const responses = await Promise.all(Array.from({ length: 5 }, () => send(`http://${host}${path}`)));
    for (const response of responses) expect(response.status).toBe(502);
  });
});

describe("large objects", () => {
  it("streams a 30 MiB object through, stores it in R2 (its record in KV) and in the edge, and serves it back whole", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("large")}.bin`;
    const size = 30 * 1024 * 1024;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
    const first = await send(`http://${host}${path}`);
    expect((await first.arrayBuffer()).byteLength).toBe(size);
    expect(first.headers.get("cache-status")).toContain("detail=storing");

    const key = await cacheKey({ siteId: id, path, query: "" });
    // This in-isolate reader can be faster than the local tiers: a tier more than the look-ahead behind it gives
    // up, and the key's next fill is stored at the tiers' pace (store.ts; large-media.test.ts tests both).
    let fills = 1;
    if ((await env.CACHE_KV.get(`c:${key}`)) === null || (await env.CACHE_R2.head(`c/${key}`)) === null) {
      const again = await send(`http://${host}${path}`);
      expect((await again.arrayBuffer()).byteLength).toBe(size);
      fills = 2;
    }
    // Past the site's largeObjectBytes (8 MiB): the body is in R2, the record in KV says so.
    const record = await env.CACHE_KV.getWithMetadata<{ e?: { at?: string } }>(`c:${key}`);
    expect(record.metadata?.e?.at).toBe("r2");
    expect((await env.CACHE_R2.head(`c/${key}`))?.size).toBe(size);

    const edge = await send(`http://${host}${path}`, { headers: { range: `bytes=${size - 10}-` } });
    expect(edge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await edge.text()).toBe("0123456789".slice((size - 10) % 10).padEnd(10, "0123456789"));

    await evictEdge(id, path);
    const fromKv = await send(`http://${host}${path}`);
    expect(fromKv.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
    const bytes = new Uint8Array(await fromKv.arrayBuffer());
    expect(bytes.byteLength).toBe(size);
    expect(String.fromCharCode(...bytes.subarray(size - 20))).toBe(
      "0123456789".repeat(3).slice(size % 10, (size % 10) + 20),
    );
    expect((await origin.hits(path)).hits).toBe(fills);
  }, 60_000);

  it("never stores a large body that breaks off", async () => {
    const { host } = await newSite();
    const path = `/${unique("large-short")}.bin`;
    await origin.route(path, {
      size: 6 * 1024 * 1024,
      truncateAfter: 5 * 1024 * 1024,
      headers: { "cache-control": "max-age=300" },
    });
    await send(`http://${host}${path}`);
    const again = await send(`http://${host}${path}`);
    expect(again.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("site limits", () => {
  it("streams a body larger than the site's maxObjectBytes through unstored", async () => {
    const { host } = await newSite();
    const path = `/${unique("limited")}`;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      limits: { maxObjectBytes: 1000 },
    });
    await origin.route(path, { size: 5000, headers: { "cache-control": "max-age=300" } });
    const first = await send(`http://${host}${path}`);
    expect((await first.arrayBuffer()).byteLength).toBe(5000);
    expect(first.headers.get("cache-status")).toContain("detail=not-stored-too-large");
    const second = await send(`http://${host}${path}`);
    expect(second.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("bodies of unknown length", () => {
  it("streams a chunked miss without a made-up length, stores it, and answers later hits with its length", async () => {
    const { host } = await newSite();
    const path = `/${unique("chunked")}`;
    await origin.route(path, { size: 3000, chunked: 500, headers: { "cache-control": "max-age=300" } });
    const miss = await send(`http://${host}${path}`, { headers: { range: "bytes=0-9" } });
    expect(miss.status).toBe(200);
    expect(miss.headers.get("content-length")).not.toBe("-1");
    expect((await miss.arrayBuffer()).byteLength).toBe(3000);
    const hit = await send(`http://${host}${path}`, { headers: { range: "bytes=0-9" } });
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(hit.status).toBe(206);
    expect(hit.headers.get("content-range")).toBe("bytes 0-9/3000");
  });
});

describe("review follow-ups", () => {
  it("keeps the other variants when one is refreshed in the background (stale-while-revalidate)", async () => {
    const { host } = await newSite();
    const path = `/${unique("vary-swr")}`;
    await origin.route(path, {
      body: "v{hit}",
      headers: { "cache-control": "max-age=10, stale-while-revalidate=60", vary: "Accept-Language" },
    });
    const clock = testClock();
    const en = { headers: { "accept-language": "en" } };
    const fr = { headers: { "accept-language": "fr" } };
    await send(`http://${host}${path}`, en, { now: clock.now });
    await send(`http://${host}${path}`, fr, { now: clock.now });
    clock.advance(20);
    expect(await (await send(`http://${host}${path}`, en, { now: clock.now })).text()).toBe("v1");
    // The background refresh of "en" must not orphan "fr".
    const frAfter = await send(`http://${host}${path}`, fr, { now: clock.now });
    expect(await frAfter.text()).toBe("v2");
    expect(frAfter.headers.get("cache-status")).toContain("hit");
  });

  it("does not let a fill that started before an unsafe request store the old response after it", async () => {
    const { host } = await newSite();
    const path = `/${unique("put-race")}`;
    await origin.route(path, { body: "v{hit}", delayMs: 300, headers: { "cache-control": "max-age=300" } });
    const fill = send(`http://${host}${path}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await origin.route(`${path}`, { body: "v{hit}", headers: { "cache-control": "max-age=300" } });
    const put = await send(`http://${host}${path}`, { method: "PUT", body: "new" });
    expect(put.status).toBe(200);
    expect(await (await fill).text()).toBe("v1");
    const after = await send(`http://${host}${path}`);
    expect(after.headers.get("cache-status")).toContain("fwd=miss");
  });

  it("does not apply the site's default stale-if-error to an s-maxage response (RFC 9111 §5.2.2.10)", async () => {
    const { host } = await newSite({ cache: { staleIfError: 600 } });
    const path = `/${unique("smaxage-sie")}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "s-maxage=10" } });
    const clock = testClock();
    await send(`http://${host}${path}`, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, { status: 503, body: "busy" });
    expect((await send(`http://${host}${path}`, undefined, { now: clock.now })).status).toBe(503);
  });
});

describe("a request right after a large miss", () => {
  it("is answered while the large store is still being written (no waiter hangs)", async () => {
    const { host } = await newSite();
    const path = `/${unique("large-then-get")}.bin`;
    const size = 12 * 1024 * 1024;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
    const ctx1 = createExecutionContext();
    const first = await worker.fetch(
      new Request(`http://${host}${path}`) as Request<unknown, IncomingRequestCfProperties>,
      env,
      ctx1,
    );
    expect((await first.arrayBuffer()).byteLength).toBe(size);
    // The background store (KV chunks, the counted Cache API copy) may still be running.
    const ctx2 = createExecutionContext();
    const second = await worker.fetch(
      new Request(`http://${host}${path}`) as Request<unknown, IncomingRequestCfProperties>,
      env,
      ctx2,
    );
    expect(second.status).toBe(200);
    expect((await second.arrayBuffer()).byteLength).toBe(size);
    await waitOnExecutionContext(ctx1);
    await waitOnExecutionContext(ctx2);
  }, 60_000);
});
