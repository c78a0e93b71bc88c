import { describe, expect, it } from "vitest";
import { newSite, origin, putSite, send, testClock, unique } from "../support/harness";
import type { RouteSpec } from "../support/origin-server";

/**
 * Cut-short origin bodies (issue 11 §3), in both connect modes: the client's body read fails (never a clean
 * end), a declared length is passed on, and nothing is stored (the next request goes to the origin again).
 * A body of unknown length (chunked, or decoded) is read whole before the head leaves (cache.collectUnknownLength),
 * so one that breaks off is answered 502 `origin_bad_response`, never a 200.
 */

const MODES = ["fetch", "direct"] as const;

async function siteIn(mode: (typeof MODES)[number]): Promise<string> {
  if (mode === "fetch") return (await newSite()).host;
  const host = `${unique("cut")}.test`;
  const port = new URL(origin.url).port;
  await putSite(host, {
    id: unique("id"),
    origin: { kind: "http", url: "http://www.customer.test", connectTo: `127.0.0.1:${port}`, allowPrivate: true },
  });
  return host;
}

const CACHEABLE = { "cache-control": "max-age=600" };
const CASES: [string, RouteSpec, string | null][] = [
  ["a declared length not reached", { size: 50_000, truncateAfter: 10_000, headers: CACHEABLE }, "50000"],
  [
    "a chunked body that breaks off after several chunks",
    { size: 200_000, chunked: 16_384, truncateAfter: 100_000, headers: CACHEABLE },
    null,
  ],
  [
    "a declared length not reached, over 4 MiB",
    { size: 5_000_000, truncateAfter: 100_000, headers: CACHEABLE },
    "5000000",
  ],
  [
    "a chunked body without its last chunk",
    { raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=600\r\n\r\n5\r\nhello\r\n" },
    null,
  ],
  ["a gzip body cut short", { size: 50_000, encode: "gzip", truncateAfter: 40, headers: CACHEABLE }, null],
];

describe.each(MODES)("cut-short bodies, %s mode", (mode) => {
  for (const [name, route, length] of CASES) {
    it(`fails the client's transfer and stores nothing: ${name}`, async () => {
      const host = await siteIn(mode);
      const path = `/${unique("cut")}`;
      await origin.route(path, route);
      const first = (await send(`http://${host}${path}`)) as Response & { bodyError?: unknown };
      if (length === null) {
        // Unknown length: the body was read before the head left, so the failure is the answer.
        expect(first.status).toBe(502);
        expect(((await first.json()) as { error: { code: string } }).error.code).toBe("origin_bad_response");
        expect(first.headers.get("cache-status")).toMatch(/fwd=miss; fwd-status=200; detail=origin_bad_response/);
      } else {
        expect(first.status).toBe(200);
        expect(first.headers.get("content-length")).toBe(length);
        expect(first.bodyError).toBeInstanceOf(Error);
      }
      const second = (await send(`http://${host}${path}`)) as Response & { bodyError?: unknown };
      expect(second.headers.get("cache-status")).toContain("fwd=miss");
      expect((await origin.hits(path)).hits).toBe(2);
    });
  }
});

/**
 * A stale entry whose refresh gets a cut-short body keeps the entry: nothing cut short replaces it, whether
 * the refresh runs in the background (stale-while-revalidate) or in the request (revalidation with
 * stale-if-error and grace configured).
 */
describe("cut-short refreshes store nothing", () => {
  const CUT: RouteSpec = { size: 50_000, truncateAfter: 10_000, headers: { "cache-control": "max-age=600" } };

  it("a background refresh (stale-while-revalidate) whose body is cut short leaves the stale entry", async () => {
    const { host } = await newSite();
    const path = `/${unique("swr-cut")}`;
    const url = `http://${host}${path}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "max-age=10, stale-while-revalidate=600" } });
    const clock = testClock();
    await send(url, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, CUT);
    const stale = await send(url, undefined, { now: clock.now });
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toContain("detail=stale-while-revalidate");
    expect((await origin.hits(path)).hits).toBe(2); // the refresh ran (send waits for waitUntil)
    const after = await send(url, undefined, { now: clock.now });
    expect(await after.text()).toBe("good");
    expect(after.headers.get("cache-status")).toContain("detail=stale-while-revalidate");
  });

  it("a revalidation whose 200 is cut short, under stale-if-error and grace, fails the client and keeps the entry", async () => {
    const { host } = await newSite({ cache: { grace: 86_400 } });
    const path = `/${unique("sie-cut")}`;
    const url = `http://${host}${path}`;
    await origin.route(path, {
      body: "good",
      headers: { "cache-control": "max-age=10, stale-if-error=600", etag: '"v1"' },
    });
    const clock = testClock();
    await send(url, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, CUT);
    const cut = (await send(url, undefined, { now: clock.now })) as Response & { bodyError?: unknown };
    expect(cut.headers.get("content-length")).toBe("50000");
    expect(cut.bodyError).toBeInstanceOf(Error);
    expect(cut.headers.get("cache-status")).not.toMatch(/; stored/);
    // The old entry is still there: an origin failure now answers it stale, never a cut-short body.
    await origin.route(path, { status: 503, body: "down" });
    const stale = await send(url, undefined, { now: clock.now });
    expect(stale.status).toBe(200);
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toContain("detail=stale-if-error");
  });
});

/**
 * Answers of unknown length (issue 11 §3): read whole before the head leaves, up to the site's
 * `cache.collectUnknownLength`, and sent with their length; past it they stream chunked (a known limit:
 * workerd ends a chunked answer cleanly even when its body errors), and what broke off is still never stored.
 */
describe("answers of unknown length", () => {
  it.each(MODES)("a whole chunked body goes out with its length (%s mode)", async (mode) => {
    const host = await siteIn(mode);
    const path = `/${unique("chunked")}`;
    await origin.route(path, { size: 100_000, chunked: 16_384, headers: CACHEABLE });
    const miss = await send(`http://${host}${path}`);
    expect(miss.status).toBe(200);
    expect(miss.headers.get("content-length")).toBe("100000");
    expect((await miss.arrayBuffer()).byteLength).toBe(100_000);
    expect(miss.headers.get("cache-status")).toContain("detail=storing");
    const hit = await send(`http://${host}${path}`);
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });

  it.each(MODES)("a decoded gzip body goes out with its decoded length (%s mode)", async (mode) => {
    const host = await siteIn(mode);
    const path = `/${unique("gzip")}`;
    await origin.route(path, { size: 100_000, encode: "gzip", headers: CACHEABLE });
    const miss = await send(`http://${host}${path}`);
    expect(miss.headers.get("content-encoding")).toBeNull();
    expect(miss.headers.get("content-length")).toBe("100000");
    expect((await miss.arrayBuffer()).byteLength).toBe(100_000);
  });

  it("an uncacheable chunked answer that breaks off is a 502 too, and a whole one has its length", async () => {
    const { host } = await newSite();
    const cut = `/${unique("private-cut")}`;
    const whole = `/${unique("private-whole")}`;
    const uncacheable = { "cache-control": "private" };
    await origin.route(cut, { size: 50_000, chunked: 8_192, truncateAfter: 20_000, headers: uncacheable });
    await origin.route(whole, { size: 50_000, chunked: 8_192, headers: uncacheable });
    const broken = await send(`http://${host}${cut}`);
    expect(broken.status).toBe(502);
    expect(broken.headers.get("cache-status")).toContain("detail=origin_bad_response");
    const sent = await send(`http://${host}${whole}`);
    expect(sent.headers.get("content-length")).toBe("50000");
    expect(sent.headers.get("cache-status")).toContain("detail=not-stored-private");
  });

  it("a bypassed or POST answer that breaks off is a 502, never a short 200", async () => {
    const { host } = await newSite({ bypass: { paths: ["/live/"] } });
    const path = `/live/${unique("bypass-cut")}`;
    await origin.route(path, { size: 50_000, chunked: 8_192, truncateAfter: 20_000 });
    const bypassed = await send(`http://${host}${path}`);
    expect(bypassed.status).toBe(502);
    expect(bypassed.headers.get("cache-status")).toMatch(/fwd=bypass; fwd-status=200; detail=origin_bad_response/);
    const posted = await send(`http://${host}${path}`, { method: "POST", body: "x" });
    expect(posted.status).toBe(502);
  });

  it("an event stream is never held back", async () => {
    const { host } = await newSite({ bypass: { paths: ["/events/"] } });
    const path = `/events/${unique("sse")}`;
    await origin.route(path, {
      body: "data: 1\n\n",
      chunked: 4,
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
    const events = await send(`http://${host}${path}`);
    expect(events.headers.get("content-length")).toBeNull();
    expect(await events.text()).toBe("data: 1\n\n");
  });

  it("an answer that says X-Accel-Buffering: no is never held back", async () => {
    const { host } = await newSite({ bypass: { paths: ["/stream/"] } });
    const held = `/stream/${unique("held")}`;
    const streamed = `/stream/${unique("streamed")}`;
    const json = { "content-type": "application/x-ndjson" };
    await origin.route(held, { body: '{"n":1}\n', chunked: 4, headers: json });
    await origin.route(streamed, { body: '{"n":1}\n', chunked: 4, headers: { ...json, "x-accel-buffering": "no" } });
    expect((await send(`http://${host}${held}`)).headers.get("content-length")).toBe("8");
    const answer = await send(`http://${host}${streamed}`);
    expect(answer.headers.get("content-length")).toBeNull();
    expect(await answer.text()).toBe('{"n":1}\n');
  });

  it("past the site's bound the answer streams chunked; one that breaks off still fails and is not stored", async () => {
    const { host } = await newSite({ cache: { collectUnknownLength: 10_000 } });
    const whole = `/${unique("over-whole")}`;
    const cut = `/${unique("over-cut")}`;
    await origin.route(whole, { size: 50_000, chunked: 8_192, headers: CACHEABLE });
    await origin.route(cut, { size: 50_000, chunked: 8_192, truncateAfter: 30_000, headers: CACHEABLE });
    const sent = await send(`http://${host}${whole}`);
    expect(sent.headers.get("content-length")).toBeNull();
    expect((await sent.arrayBuffer()).byteLength).toBe(50_000);
    const broken = (await send(`http://${host}${cut}`)) as Response & { bodyError?: unknown };
    expect(broken.status).toBe(200);
    expect(broken.bodyError).toBeInstanceOf(Error);
    const again = await send(`http://${host}${cut}`);
    expect(again.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(cut)).hits).toBe(2);
  });

  it("a revalidation whose chunked 200 breaks off is answered stale within stale-if-error", async () => {
    const { host } = await newSite();
    const path = `/${unique("sie-chunked")}`;
    const url = `http://${host}${path}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "max-age=10, stale-if-error=600" } });
    const clock = testClock();
    await send(url, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, { size: 50_000, chunked: 8_192, truncateAfter: 20_000, headers: CACHEABLE });
    const stale = await send(url, undefined, { now: clock.now });
    expect(stale.status).toBe(200);
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toMatch(/fwd=stale; fwd-status=502; detail=stale-if-error/);
  });

  it("without stale-if-error or grace, the same is a 502", async () => {
    const { host } = await newSite({ cache: { grace: 0 } });
    const path = `/${unique("no-sie-chunked")}`;
    const url = `http://${host}${path}`;
    await origin.route(path, { body: "good", headers: { "cache-control": "max-age=10" } });
    const clock = testClock();
    await send(url, undefined, { now: clock.now });
    clock.advance(20);
    await origin.route(path, { size: 50_000, chunked: 8_192, truncateAfter: 20_000, headers: CACHEABLE });
    const failed = await send(url, undefined, { now: clock.now });
    expect(failed.status).toBe(502);
  });
});
