import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import type { Tier } from "../../src/core/tier";
import { httpOrigin } from "../../src/origins/http";
import type { HttpOriginConfig } from "../../src/sites/schema";
import { kvTier } from "../../src/tiers/kv";
import { newSite, origin, putSite, send, unique } from "../support/harness";

async function errorCode(response: Response): Promise<string> {
  return ((await response.json()) as ErrorBody).error.code;
}

describe("hosts", () => {
  it("refuses an unknown host with 404 site_not_found, no-store, and stores nothing", async () => {
    const host = `${unique("nobody")}.test`;
    const response = await send(`http://${host}/index.html`);
    expect(response.status).toBe(404);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await errorCode(response)).toBe("site_not_found");
    // Configuring the host later must not find anything stored for it meanwhile.
    await putSite(host, { id: unique("id"), origin: { kind: "http", url: origin.url, allowPrivate: true } });
    const later = await send(`http://${host}/index.html`);
    expect(later.headers.get("cache-status")).toContain("fwd=miss");
  });

  it.each([["bad..host"], ["-leading-hyphen.test"], ["spaces in.test"], ["a.test:99999"], [`${"x".repeat(64)}.test`]])(
    "refuses the malformed host %j with 400 bad_host and never reaches the origin",
    async (host) => {
      const path = `/${unique("malformed")}`;
      const response = await send(`http://placeholder.test${path}`, { headers: { host } });
      expect(response.status).toBe(400);
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(await errorCode(response)).toBe("bad_host");
      expect((await origin.hits(path)).hits).toBe(0);
    },
  );

  it("finds the same site for upper case, a port and a trailing dot, and shares its objects", async () => {
    const { host } = await newSite();
    const path = `/${unique("norm")}`;
    await send(`http://${host}${path}`);
    for (const variant of [host.toUpperCase(), `${host}:8787`, `${host}.`]) {
      const response = await send(`http://${host}${path}`, { headers: { host: variant } });
      expect(response.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    }
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("answers 502 site_config_invalid naming the bad field when the stored config is wrong", async () => {
    const host = `${unique("broken")}.test`;
    await putSite(host, { id: "short", origin: { kind: "ftp", url: "ftp://x" }, extra: 1 });
    const response = await send(`http://${host}/`);
    expect(response.status).toBe(502);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.code).toBe("site_config_invalid");
    expect(body.error.message).toContain("id:");
    expect(body.error.message).toContain("origin.kind");
    expect(body.error.message).toContain("extra");
  });
});

describe("methods", () => {
  it("passes POST with its body to the origin, uncached", async () => {
    const { host } = await newSite();
    const path = `/${unique("form")}`;
    for (const n of [1, 2]) {
      const response = await send(`http://${host}${path}`, { method: "POST", body: `n=${n}` });
      expect(await response.text()).toBe(`POST ${path} #${n}`);
      expect(response.headers.get("cache-status")).toBe("Tiercel; fwd=method; fwd-status=200");
    }
    const { hits, last } = await origin.hits(path);
    expect(hits).toBe(2);
    expect(last?.body).toBe("n=2");
  });

  it("refuses TRACE with 405 and never reaches the origin", async () => {
    const { host } = await newSite();
    const path = `/${unique("trace")}`;
    const response = await send(`http://${host}${path}`, { method: "TRACE" });
    expect(response.status).toBe(405);
    expect(await errorCode(response)).toBe("method_not_allowed");
    expect((await origin.hits(path)).hits).toBe(0);
  });

  it("sends a HEAD miss to the origin as HEAD and stores nothing for GET", async () => {
    const { host } = await newSite();
    const path = `/${unique("head")}`;
    const head = await send(`http://${host}${path}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("cache-status")).toContain("not-stored-method");
    expect((await origin.hits(path)).last?.method).toBe("HEAD");

    const get = await send(`http://${host}${path}`);
    expect(get.headers.get("cache-status")).toContain("fwd=miss");
    expect(await get.text()).toBe(`GET ${path} #2`);
  });

  it("answers HEAD from a stored GET without a body and with its length", async () => {
    const { host } = await newSite();
    const path = `/${unique("head-hit")}`;
    const get = await send(`http://${host}${path}`);
    const length = (await get.text()).length;
    const head = await send(`http://${host}${path}`, { method: "HEAD" });
    expect(head.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(head.headers.get("content-length")).toBe(String(length));
    expect(await head.text()).toBe("");
    expect((await origin.hits(path)).hits).toBe(1);
  });
});

describe("what is not stored", () => {
  it.each([
    ["no-store", { "cache-control": "no-store" }],
    ["private", { "cache-control": "private, max-age=60" }],
    ["set-cookie", { "cache-control": "max-age=60", "set-cookie": "session=abc" }],
    ["vary", { "cache-control": "max-age=60", vary: "*" }],
    ["no-cache", { "cache-control": "no-cache, max-age=60" }],
    ["stale", { "cache-control": "max-age=0" }],
  ])("a response with %s goes through unstored", async (reason, headers) => {
    const { host } = await newSite();
    const path = `/${unique(reason)}`;
    await origin.route(path, { body: "body #{hit}", headers });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("cache-status")).toContain(`detail=not-stored-${reason}`);
    const second = await send(`http://${host}${path}`);
    expect(await second.text()).toBe("body #2");
  });

  it("a 500 without explicit freshness passes through unstored (one with it is stored: issue 12 §2)", async () => {
    const { host } = await newSite();
    const path = `/${unique("error")}`;
    await origin.route(path, { status: 500, body: "oops" });
    const first = await send(`http://${host}${path}`);
    expect(first.status).toBe(500);
    expect(first.headers.get("cache-status")).toContain("fwd-status=500");
    await send(`http://${host}${path}`);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("a body that breaks off before its Content-Length is never stored", async () => {
    const { host } = await newSite();
    const path = `/${unique("short")}`;
    await origin.route(path, { size: 50_000, truncateAfter: 1000, headers: { "cache-control": "max-age=60" } });
    await send(`http://${host}${path}`);
    const again = await send(`http://${host}${path}`);
    expect(again.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("origin failures", () => {
  it("answers 502 origin_unreachable when nothing listens, and stores nothing", async () => {
    const host = `${unique("down")}.test`;
    await putSite(host, { id: unique("id"), origin: { kind: "http", url: "http://127.0.0.1:9", allowPrivate: true } });
    const response = await send(`http://${host}/x`);
    expect(response.status).toBe(502);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await errorCode(response)).toBe("origin_unreachable");
    expect(response.headers.get("cache-status")).toContain("detail=origin_unreachable");
  });

  it("answers 504 origin_timeout when the headers do not come in time", async () => {
    const { host } = await newSite();
    const path = `/${unique("slow")}`;
    await origin.route(path, { delayMs: 1_000, body: "late" });
    const response = await send(`http://${host}${path}`, undefined, {
      originFor: (site) =>
        httpOrigin({ config: site.origin as HttpOriginConfig, headersTimeoutMs: 100, bodyIdleMs: 1000 }),
      // The short deadline is this data center's origin; the shield (which has the Worker's own) is left out.
      shield: undefined,
    });
    expect(response.status).toBe(504);
    expect(await errorCode(response)).toBe("origin_timeout");
  });
});

describe("a failing tier", () => {
  const throwing: Tier = {
    name: "edge",
    get: () => Promise.reject(new Error("cache unavailable")),
    put: () => Promise.reject(new Error("cache unavailable")),
    delete: () => Promise.reject(new Error("cache unavailable")),
  };
  const hanging: Tier = {
    name: "edge",
    get: () => new Promise(() => {}),
    put: () => new Promise(() => {}),
    delete: () => new Promise(() => {}),
  };

  it.each([
    ["throws", throwing, "tier-error"],
    ["hangs", hanging, "tier-timeout"],
  ])(
    "is skipped when it %s: the request succeeds and the other tier still stores and serves",
    async (_, broken, detail) => {
      const { host } = await newSite();
      const path = `/${unique("degraded")}`;
      const logged: string[] = [];
      const overrides = {
        tiers: [broken, kvTier(env.CACHE_KV)],
        tierTimeoutMs: 50,
        log: (event: string) => void logged.push(event),
      };

      const first = await send(`http://${host}${path}`, undefined, overrides);
      expect(first.status).toBe(200);
      expect(first.headers.get("cache-status")).toContain(`Tiercel-Edge; fwd=miss; fwd-status=200; detail=${detail}`);

      const second = await send(`http://${host}${path}`, undefined, overrides);
      expect(second.status).toBe(200);
      expect(second.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      expect(await second.text()).toBe(`GET ${path} #1`);
      expect(logged).toContain("tier.skipped");
      expect((await origin.hits(path)).hits).toBe(1);
    },
  );
});
