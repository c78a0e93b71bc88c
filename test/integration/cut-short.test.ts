import { describe, expect, it } from "vitest";
import { newSite, origin, putSite, send, testClock, unique } from "../support/harness";
import type { RouteSpec } from "../support/origin-server";

/**
 * Cut-short origin bodies (issue 11 §3), in both connect modes: the client's body read fails (never a clean
 * end), a declared length is passed on, and nothing is stored (the next request goes to the origin again).
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
      expect(first.status).toBe(200);
      expect(first.headers.get("content-length")).toBe(length);
      expect(first.bodyError).toBeInstanceOf(Error);
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
