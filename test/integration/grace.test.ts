import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { httpOrigin } from "../../src/origins/http";
import type { HttpOriginConfig, SiteInput } from "../../src/sites/schema";
import { newSite, origin, putSite, send, testClock, unique } from "../support/harness";
import type { RouteSpec } from "../support/origin-server";

/**
 * Grace (RFC 9111 §4.2.4): a stored response may answer after its expiry when the origin cannot be
 * reached, for at most the site's `cache.grace`, unless its directives forbid serving it stale. Whole
 * requests in workerd against the loopback origin, with the clock moved by the test.
 */

const UNREACHABLE = "fwd=stale; fwd-status=502; detail=origin-unreachable";

/** A site on the loopback origin, a path filled at the test clock's start, and a way to ask again. */
async function filled(headers: Record<string, string>, cache?: SiteInput["cache"]) {
  const { host, id } = await newSite(cache ? { cache } : {});
  const path = `/${unique("grace")}`;
  await origin.route(path, { body: "good", headers });
  const clock = testClock();
  const get = (overrides: Parameters<typeof send>[2] = {}) =>
    send(`http://${host}${path}`, undefined, { now: clock.now, ...overrides });
  const first = await get();
  expect(first.headers.get("cache-status")).toContain("detail=storing");
  return { host, id, path, clock, get };
}

async function errorCode(response: Response): Promise<string> {
  return ((await response.json()) as ErrorBody).error.code;
}

describe("grace: stale when the origin cannot be reached (RFC 9111 §4.2.4)", () => {
  it.each<[string, RouteSpec]>([
    ["closes the connection without answering", { hangUp: true }],
    ["resets the connection", { reset: true }],
  ])("serves the stale entry when the origin %s, within the default grace of a day", async (_, failure) => {
    const { path, clock, get } = await filled({ "cache-control": "max-age=10" });
    clock.advance(3600);
    await origin.route(path, failure);
    const stale = await get();
    expect(stale.status).toBe(200);
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toContain(UNREACHABLE);
    expect(Number(stale.headers.get("age"))).toBeGreaterThanOrEqual(3600);

    clock.advance(86_400);
    const tooLate = await get();
    expect(tooLate.status).toBe(502);
    expect(await errorCode(tooLate)).toBe("origin_unreachable");
  });

  it("serves the stale entry when the origin does not answer within its timeout (504)", async () => {
    const { path, clock, get } = await filled({ "cache-control": "max-age=10" });
    clock.advance(60);
    await origin.route(path, { delayMs: 1000, body: "late" });
    const originFor = (site: { origin: unknown }) =>
      httpOrigin({ config: site.origin as HttpOriginConfig, headersTimeoutMs: 150, bodyIdleMs: 1000 });
    const stale = await get({ originFor });
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toContain("fwd=stale; fwd-status=504; detail=origin-unreachable");
  });

  it("bounds grace by the site's setting, and grace 0 turns it off", async () => {
    const short = await filled({ "cache-control": "max-age=10" }, { grace: 60 });
    short.clock.advance(50);
    await origin.route(short.path, { hangUp: true });
    expect(await (await short.get()).text()).toBe("good");
    short.clock.advance(30);
    expect((await short.get()).status).toBe(502);

    const none = await filled({ "cache-control": "max-age=10" }, { grace: 0 });
    none.clock.advance(11);
    await origin.route(none.path, { hangUp: true });
    expect((await none.get()).status).toBe(502);
  });

  it("applies the lower grace when the site's setting drops after the entry was stored", async () => {
    const { host, id, path, clock, get } = await filled({ "cache-control": "max-age=10" });
    await putSite(host, {
      id,
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache: { grace: 30 },
    });
    clock.advance(60);
    await origin.route(path, { hangUp: true });
    expect((await get()).status).toBe(502);
  });

  it("keeps today's rule for an origin that answers: a 5xx past stale-if-error passes through", async () => {
    const { path, clock, get } = await filled({ "cache-control": "max-age=10" });
    clock.advance(60);
    await origin.route(path, { status: 503, body: "busy" });
    const answered = await get();
    expect(answered.status).toBe(503);
    expect(await answered.text()).toBe("busy");
  });

  it("prefers an explicit stale-if-error window, and says so", async () => {
    const { path, clock, get } = await filled({ "cache-control": "max-age=10, stale-if-error=100" });
    clock.advance(60);
    await origin.route(path, { hangUp: true });
    const stale = await get();
    expect(await stale.text()).toBe("good");
    expect(stale.headers.get("cache-status")).toContain("detail=stale-if-error");
  });

  it.each([
    ["must-revalidate", { "cache-control": "max-age=10, must-revalidate" }],
    ["proxy-revalidate", { "cache-control": "max-age=10, proxy-revalidate" }],
    ["s-maxage", { "cache-control": "s-maxage=10" }],
    ["no-cache", { "cache-control": "max-age=10, no-cache", etag: '"v1"' }],
  ])("never serves stale in grace when the response says %s", async (_, headers) => {
    const { path, clock, get } = await filled(headers);
    clock.advance(60);
    await origin.route(path, { hangUp: true });
    const response = await get();
    expect(response.status).toBe(502);
    expect(response.headers.get("cache-status")).toContain("detail=origin_unreachable");
  });

  it("serves grace to many concurrent readers while the origin is down", async () => {
    const { path, clock, get } = await filled({ "cache-control": "max-age=10" });
    clock.advance(120);
    await origin.route(path, { hangUp: true });
    const answers = await Promise.all(Array.from({ length: 12 }, () => get()));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(await answer.text()).toBe("good");
    }
  });
});

describe("soft purges obey grace", () => {
  /** Writes the site again with a soft purge of everything at `at` (epoch ms). */
  async function softPurge(host: string, id: string, at: number, cache: SiteInput["cache"] = {}) {
    await putSite(host, {
      id,
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache,
      purges: { urls: {}, tags: {}, softTags: {}, softAll: at },
    });
  }

  it("serves a soft-purged entry while the origin is down for at most grace after the purge", async () => {
    const { host, id, path, clock, get } = await filled({ "cache-control": "max-age=3600" }, { grace: 60 });
    clock.advance(5);
    await softPurge(host, id, clock.now(), { grace: 60 });
    await origin.route(path, { hangUp: true });
    clock.advance(30);
    const within = await get();
    expect(await within.text()).toBe("good");
    expect(within.headers.get("cache-status")).toContain("detail=soft-purged");

    // Still fresh by its own max-age, but stale since the purge: past grace, it is not served any more.
    clock.advance(60);
    const past = await get();
    expect(past.status).toBe(502);
  });

  it("revalidates a soft-purged entry whose directives forbid stale, instead of serving it", async () => {
    const { host, id, path, clock, get } = await filled({ "cache-control": "s-maxage=3600" });
    clock.advance(5);
    await softPurge(host, id, clock.now());
    await origin.route(path, { body: "new", headers: { "cache-control": "s-maxage=3600" } });
    const revalidated = await get();
    expect(await revalidated.text()).toBe("new");
    expect(revalidated.headers.get("cache-status")).toContain("fwd=stale");
  });
});

describe("an origin that has started answering is not asked again", () => {
  it("does not retry a request whose response head broke off (direct connection)", async () => {
    const host = `${unique("no-retry")}.test`;
    const port = new URL(origin.url).port;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: "http://www.customer.test", connectTo: `127.0.0.1:${port}`, allowPrivate: true },
    });
    const path = `/${unique("half-head")}`;
    await origin.route(path, { raw: "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" });
    const response = await send(`http://${host}${path}`);
    expect(response.status).toBe(502);
    expect(await errorCode(response)).toBe("origin_bad_response");
    expect((await origin.hits(path)).hits).toBe(1);
  });
});
