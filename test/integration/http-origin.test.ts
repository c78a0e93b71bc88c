import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { httpOrigin } from "../../src/origins/http";
import type { HttpOriginConfig } from "../../src/sites/schema";
import { newSite, origin, putSite, send, unique } from "../support/harness";

/** An http backend gets what a reverse proxy passes, and nothing that could poison the cache. */

async function code(response: Response): Promise<string> {
  return ((await response.json()) as ErrorBody).error.code;
}

describe("requests to an http backend", () => {
  it("strips headers that would make a cached response depend on more than its key, and sets its own", async () => {
    const { host } = await newSite();
    const path = `/${unique("poison")}`;
    await send(`http://${host}${path}`, {
      headers: {
        "x-forwarded-host": "evil.example",
        "x-forwarded-for": "6.6.6.6",
        "x-forwarded-proto": "gopher",
        forwarded: "for=6.6.6.6;host=evil.example",
        "x-host": "evil.example",
        "x-original-url": "/admin",
        "x-rewrite-url": "/admin",
        "x-http-method-override": "DELETE",
        "x-real-ip": "6.6.6.6",
        cookie: "session=abc",
        "x-app": "kept",
        "cf-connecting-ip": "198.51.100.7",
      },
    });
    const seen = (await origin.hits(path)).last?.headers ?? {};
    for (const name of [
      "x-forwarded-host",
      "forwarded",
      "x-host",
      "x-original-url",
      "x-rewrite-url",
      "x-http-method-override",
      "x-real-ip",
    ]) {
      expect(seen[name], name).toBeUndefined();
    }
    // The client's address is per client and in no key: a cacheable request does not carry it.
    expect(seen["x-forwarded-for"]).toBeUndefined();
    // The key has no scheme, so the backend is told a fixed one (origin.forwardedProto, default https).
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen["cdn-loop"]).toBe("tiercel");
    expect(seen.cookie).toBe("session=abc");
    // A cacheable request passes only the site's allow-list (cache.requestHeaders), Vary'd fields and credentials.
    expect(seen["x-app"]).toBeUndefined();
    expect(seen["cf-connecting-ip"]).toBeUndefined();
  });

  it("tells the backend the client's address (X-Forwarded-For) on bypassed requests and other methods only", async () => {
    const { host } = await newSite({ bypass: { paths: ["/account/"] } });
    const client = { "cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "6.6.6.6" };
    const cached = `/${unique("xff-cached")}`;
    const bypassed = `/account/${unique("xff-bypass")}`;
    const forwardedFor = async (path: string) => (await origin.hits(path)).last?.headers["x-forwarded-for"];
    await send(`http://${host}${cached}`, { headers: client });
    expect(await forwardedFor(cached)).toBeUndefined();
    await send(`http://${host}${bypassed}`, { headers: client });
    expect(await forwardedFor(bypassed)).toBe("198.51.100.7");
    await send(`http://${host}${cached}`, { method: "POST", headers: client, body: "x" });
    expect(await forwardedFor(cached)).toBe("198.51.100.7");
  });

  it("removes hop-by-hop headers, and those named in Connection, both ways (RFC 9110 §7.6.1)", async () => {
    const { host } = await newSite();
    const path = `/${unique("hop")}`;
    await origin.route(path, {
      body: "ok",
      headers: {
        "cache-control": "max-age=60",
        connection: "x-internal-hop",
        "x-internal-hop": "secret",
        server: "Apache/2.4.1 (Unix)",
        "x-powered-by": "PHP/5.6",
      },
    });
    const response = await send(`http://${host}${path}`, {
      headers: { connection: "x-client-hop", "x-client-hop": "1", te: "trailers" },
    });
    const seen = (await origin.hits(path)).last?.headers ?? {};
    expect(seen["x-client-hop"]).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(response.headers.get("x-internal-hop")).toBeNull();
    expect(response.headers.get("server")).toBeNull();
    expect(response.headers.get("x-powered-by")).toBeNull();
  });

  it("stops a request that already went through Tiercel with 508 loop_detected (RFC 8586)", async () => {
    const { host } = await newSite();
    const path = `/${unique("loop")}`;
    const response = await send(`http://${host}${path}`, { headers: { "cdn-loop": "cloudflare, tiercel" } });
    expect(response.status).toBe(508);
    expect(await code(response)).toBe("loop_detected");
    expect((await origin.hits(path)).hits).toBe(0);
  });

  it("never follows a redirect, even to an internal address, and passes it through", async () => {
    const { host } = await newSite();
    const path = `/${unique("redirect")}`;
    await origin.route(path, { status: 302, headers: { location: "http://169.254.169.254/latest/meta-data/" } });
    const response = await send(`http://${host}${path}`);
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("http://169.254.169.254/latest/meta-data/");
    expect(response.headers.get("cache-status")).toContain("not-stored");
  });

  it("connects to connectTo and sends the site's own host as Host (direct mode)", async () => {
    const host = `${unique("ipport")}.test`;
    const port = new URL(origin.url).port;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: "http://www.customer.test", connectTo: `127.0.0.1:${port}`, allowPrivate: true },
    });
    const path = `/${unique("routed")}`;
    const response = await send(`http://${host}${path}`);
    expect(await response.text()).toBe(`GET ${path} #1`);
    const seen = (await origin.hits(path)).last?.headers ?? {};
    expect(seen.host).toBe("www.customer.test");
    expect(seen["x-forwarded-host"]).toBeUndefined();
  });

  it("retries once when the connection fails for an idempotent request", async () => {
    const { host } = await newSite();
    const path = `/${unique("retry")}`;
    await origin.route(path, { hangUpTimes: 1, body: "second time", headers: { "cache-control": "max-age=60" } });
    const response = await send(`http://${host}${path}`);
    expect(await response.text()).toBe("second time");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("errors a body that stalls past the idle limit, and stores nothing", async () => {
    const { host } = await newSite();
    const path = `/${unique("stall")}`;
    await origin.route(path, { size: 10_000, stallAfter: 100, headers: { "cache-control": "max-age=60" } });
    const overrides = {
      originFor: (site: { origin: unknown }) =>
        httpOrigin({ config: site.origin as HttpOriginConfig, headersTimeoutMs: 1000, bodyIdleMs: 200 }),
      // The short idle limit is this data center's origin; the shield (which has the Worker's own) is left out.
      shield: undefined,
    };
    const response = await send(`http://${host}${path}`, undefined, overrides);
    expect((response as Response & { bodyError?: unknown }).bodyError).toBeDefined();
    const again = await send(`http://${host}${path}`, undefined, overrides);
    expect(again.headers.get("cache-status")).toContain("fwd=miss");
  });
});

describe("paths", () => {
  it.each([["/a/..%2f..%2fsecret"], ["/a/%2e%2e%5csecret"], ["/a%00b"], ["/x/%E0%A4%A"]])(
    "refuses %s with 400 bad_path before reaching the origin",
    async (path) => {
      const { host } = await newSite({ basePath: "/base" });
      const response = await send(`http://${host}${path}`);
      expect(response.status).toBe(400);
      expect(await code(response)).toBe("bad_path");
    },
  );
});

describe("origin addresses", () => {
  it.each([
    ["http://169.254.169.254/", true],
    ["http://[::ffff:a9fe:a9fe]/", true],
    ["http://127.0.0.1:1/", false],
    ["http://2130706433:1/", false],
    ["http://0x7f000001:1/", false],
    ["http://[::1]:1/", false],
    ["http://10.0.0.1/", false],
  ])("refuses the origin %s (allowPrivate %s) with 403 origin_forbidden", async (url, allowPrivate) => {
    const host = `${unique("ssrf")}.test`;
    await putSite(host, { id: unique("id"), origin: { kind: "http", url, allowPrivate } });
    const response = await send(`http://${host}/x`);
    expect(response.status).toBe(403);
    expect(await code(response)).toBe("origin_forbidden");
  });
});
