import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, putSite, send, unique } from "../support/harness";

/**
 * Issue 11 §2, §5, §6: one client's answer never reaches another, and no stored answer loops a client.
 * Every test runs the real Worker against the loopback origin, which forces https, reflects request
 * headers into its answers, or sends fields that are wrong on a stored 200, and counts what reaches it.
 */

async function evictEdge(id: string, path: string): Promise<void> {
  await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));
}

const CACHEABLE = { "cache-control": "max-age=300" };

describe("scheme (issue 11 §2)", () => {
  it("tells the backend https by default: a backend that forces https answers both schemes with one stored 200", async () => {
    const { host } = await newSite();
    const path = `/${unique("force-https")}`;
    await origin.route(path, { forceHttps: host, body: "page {hit}", headers: CACHEABLE });
    for (const scheme of ["http", "https", "http", "https"]) {
      const response = await send(`${scheme}://${host}${path}`);
      expect(response.status, scheme).toBe(200);
      expect(await response.text()).toBe("page 1");
    }
    const { hits, last } = await origin.hits(path);
    expect(hits).toBe(1);
    expect(last?.headers["x-forwarded-proto"]).toBe("https");
  });

  it("forwardedProto client: the upgrade reaches http clients unstored, and no https client is ever sent it", async () => {
    const { host } = await newSite({ forwardedProto: "client" });
    const path = `/${unique("force-https-client")}`;
    await origin.route(path, { forceHttps: host, body: "page {hit}", headers: CACHEABLE });
    for (const n of [1, 2]) {
      const upgrade = await send(`http://${host}${path}`);
      expect(upgrade.status).toBe(301);
      expect(upgrade.headers.get("location")).toBe(`https://${host}${path}`);
      expect(upgrade.headers.get("cache-status")).toContain("detail=not-stored-redirect-loop");
      expect((await origin.hits(path)).hits).toBe(n);
    }
    for (const _ of [1, 2]) {
      const secure = await send(`https://${host}${path}`);
      expect(secure.status).toBe(200);
      expect(await secure.text()).toBe("page 3");
    }
    expect((await origin.hits(path)).hits).toBe(3);
    expect((await origin.hits(path)).last?.headers["x-forwarded-proto"]).toBe("https");
  });

  it("forwardedProto http tells the backend http", async () => {
    const { host } = await newSite({ forwardedProto: "http" });
    const path = `/${unique("proto-http")}`;
    await send(`https://${host}${path}`);
    expect((await origin.hits(path)).last?.headers["x-forwarded-proto"]).toBe("http");
  });

  it.each([
    ["absolute, other scheme", (host: string, path: string) => `https://${host}${path}`],
    ["absolute, other scheme and port", (host: string, path: string) => `https://${host}:8443${path}`],
    ["relative", (_: string, path: string) => path],
  ])("never stores a redirect to the URL itself (%s), whatever scheme is forwarded", async (_, location) => {
    const { host } = await newSite();
    const path = `/${unique("self-redirect")}`;
    await origin.route(path, { status: 301, headers: { ...CACHEABLE, location: location(host, path) } });
    for (const n of [1, 2]) {
      const response = await send(`https://${host}${path}`);
      expect(response.status).toBe(301);
      expect(response.headers.get("cache-status")).toContain("fwd=miss");
      expect(response.headers.get("cache-status")).toContain("not-stored-redirect-loop");
      expect((await origin.hits(path)).hits).toBe(n);
    }
  });

  it("still stores a redirect to another URL", async () => {
    const { host } = await newSite();
    const path = `/${unique("moved")}`;
    await origin.route(path, { status: 301, headers: { ...CACHEABLE, location: `https://${host}${path}/` } });
    await send(`http://${host}${path}`);
    const again = await send(`https://${host}${path}`);
    expect(again.status).toBe(301);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("never serves a stored redirect that has come to point at the URL itself (the site gained its host)", async () => {
    const id = unique("id");
    const [apex, www] = [`${unique("apex")}.test`, `${unique("www")}.test`];
    const site = (hosts: string[]) => ({ id, hosts, origin: { kind: "http", url: origin.url, allowPrivate: true } });
    await putSite(apex, site([apex]));
    const path = `/${unique("canonical")}`;
    await origin.route(path, { status: 301, headers: { ...CACHEABLE, location: `https://${www}${path}` } });
    expect((await send(`https://${apex}${path}`)).status).toBe(301);

    // The site now answers for www too, and the backend serves the page there: the stored 301 would loop.
    await putSite(apex, site([apex, www]));
    await putSite(www, site([apex, www]));
    await origin.route(path, { body: "the page", headers: CACHEABLE });
    const response = await send(`https://${www}${path}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-status")).toContain("detail=redirect-loop");
    expect(await response.text()).toBe("the page");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("response fields that must not pass (issue 11 §5)", () => {
  it("never sends a 200's Content-Range: not on the miss, an edge hit, a KV hit or a pass-through", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("content-range")}`;
    await origin.route(path, {
      body: "whole body",
      headers: { ...CACHEABLE, "content-range": "bytes 0-3/100", "alt-svc": 'h3=":8443"' },
    });
    const miss = await send(`http://${host}${path}`);
    const hit = await send(`http://${host}${path}`);
    await evictEdge(id, path);
    const kvHit = await send(`http://${host}${path}`);
    // A range is still answered from the stored whole object, with Tiercel's own Content-Range.
    const part = await send(`http://${host}${path}`, { headers: { range: "bytes=0-4" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 0-4/10");
    expect((await origin.hits(path)).hits).toBe(1);
    const post = await send(`http://${host}${path}`, { method: "POST", body: "x" });
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(kvHit.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
    for (const [name, response] of Object.entries({ miss, hit, kvHit, post })) {
      expect(response.status, name).toBe(200);
      expect(response.headers.get("content-range"), name).toBeNull();
      expect(response.headers.get("alt-svc"), name).toBeNull();
      expect(await response.text(), name).toBe("whole body");
    }
  });

  it("never stores an answer that carries Clear-Site-Data", async () => {
    const { host } = await newSite();
    const path = `/${unique("logout")}`;
    await origin.route(path, { body: "bye", headers: { ...CACHEABLE, "clear-site-data": '"cookies"' } });
    const first = await send(`http://${host}${path}`);
    expect(first.headers.get("cache-status")).toContain("detail=not-stored-clear-site-data");
    await send(`http://${host}${path}`);
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("request headers on cacheable requests (issue 11 §5)", () => {
  const REFLECTING = "[{header:x-custom}|{header:x-forwarded-host}|{header:x-original-url}|{header:user-agent}]";

  it("an origin that reflects unkeyed headers without Vary cannot poison the URL for the next client", async () => {
    const { host } = await newSite();
    const path = `/${unique("reflect")}`;
    await origin.route(path, { body: REFLECTING, headers: CACHEABLE });
    const attacker = await send(`http://${host}${path}`, {
      headers: {
        "x-custom": "<script>evil()</script>",
        "x-forwarded-host": "evil.example",
        "x-original-url": "/admin",
        "user-agent": "evil-agent",
      },
    });
    expect(await attacker.text()).toBe("[|||Tiercel]");
    const victim = await send(`http://${host}${path}`);
    expect(await victim.text()).toBe("[|||Tiercel]");
    const seen = (await origin.hits(path)).last?.headers ?? {};
    expect(seen["x-custom"]).toBeUndefined();
    expect(seen["user-agent"]).toBe("Tiercel");
  });

  it("passes the site's allow-list, and the default negotiation headers", async () => {
    const { host } = await newSite({ cache: { requestHeaders: ["X-Custom", "user-agent"] } });
    const path = `/${unique("allowed")}`;
    await origin.route(path, { body: REFLECTING, headers: CACHEABLE });
    const response = await send(`http://${host}${path}`, {
      headers: { "x-custom": "mine", "user-agent": "agent/1", "accept-language": "fr", "x-other": "no" },
    });
    expect(await response.text()).toBe("[mine|||agent/1]");
    const seen = (await origin.hits(path)).last?.headers ?? {};
    expect(seen["accept-language"]).toBeUndefined();
    expect(seen["x-other"]).toBeUndefined();

    const defaults = await newSite();
    await send(`http://${defaults.host}${path}`, {
      headers: { accept: "text/html", "accept-language": "fr", origin: "https://app.test" },
    });
    const seenByDefault = (await origin.hits(path)).last?.headers ?? {};
    expect(seenByDefault.accept).toBe("text/html");
    expect(seenByDefault["accept-language"]).toBe("fr");
    expect(seenByDefault.origin).toBe("https://app.test");
  });

  it("passes a header the stored answer names in Vary, and keys each variant by what the origin saw", async () => {
    const { host } = await newSite();
    const path = `/${unique("learned-vary")}`;
    await origin.route(path, { body: "v[{header:x-custom}] #{hit}", headers: { ...CACHEABLE, vary: "X-Custom" } });
    const a = { headers: { "x-custom": "a" } };
    // Nothing is known about the URL yet: X-Custom is not sent, and the answer is stored as the one without it.
    expect(await (await send(`http://${host}${path}`, a)).text()).toBe("v[] #1");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v[] #1");
    // Now the URL is known to vary on X-Custom: it is sent, and keyed.
    expect(await (await send(`http://${host}${path}`, a)).text()).toBe("v[a] #2");
    expect(await (await send(`http://${host}${path}`, a)).text()).toBe("v[a] #2");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("v[] #1");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("forwards every header on uncacheable requests: other methods and bypassed paths", async () => {
    const { host } = await newSite({ bypass: { paths: ["/admin/"] } });
    const post = `/${unique("post")}`;
    await send(`http://${host}${post}`, { method: "POST", body: "x", headers: { "x-custom": "p" } });
    expect((await origin.hits(post)).last?.headers["x-custom"]).toBe("p");
    const admin = `/admin/${unique("bypassed")}`;
    await send(`http://${host}${admin}`, { headers: { "x-custom": "b", "user-agent": "agent/2" } });
    const seen = (await origin.hits(admin)).last?.headers ?? {};
    expect(seen["x-custom"]).toBe("b");
    expect(seen["user-agent"]).toBe("agent/2");
  });

  it("sends a HEAD miss with the same headers a GET fill would", async () => {
    const { host } = await newSite();
    const path = `/${unique("head")}`;
    await send(`http://${host}${path}`, { method: "HEAD", headers: { "x-custom": "h", accept: "text/plain" } });
    const seen = (await origin.hits(path)).last;
    expect(seen?.method).toBe("HEAD");
    expect(seen?.headers["x-custom"]).toBeUndefined();
    expect(seen?.headers.accept).toBe("text/plain");
  });
});

describe("requests that carry credentials (issue 11 §6)", () => {
  const PERSONAL = { body: "page for [{header:cookie}] #{hit}", headers: CACHEABLE };

  it("does not share the answer to a Cookie request that is neither public, s-maxage nor Vary: Cookie", async () => {
    const { host } = await newSite();
    const path = `/${unique("cookie")}`;
    await origin.route(path, PERSONAL);
    const alice = await send(`http://${host}${path}`, { headers: { cookie: "session=alice" } });
    expect(await alice.text()).toBe("page for [session=alice] #1");
    expect(alice.headers.get("cache-status")).toContain("detail=not-stored-cookie");
    // A client without cookies gets its own answer, which is stored as before and shared.
    const anonymous = await send(`http://${host}${path}`);
    expect(await anonymous.text()).toBe("page for [] #2");
    expect(anonymous.headers.get("cache-status")).toContain("detail=storing");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("page for [] #2");
    // A client with cookies is served the shared answer like anyone else.
    const bob = await send(`http://${host}${path}`, { headers: { cookie: "session=bob" } });
    expect(await bob.text()).toBe("page for [] #2");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it.each([
    ["public", { "cache-control": "public, max-age=300" }],
    ["s-maxage", { "cache-control": "s-maxage=300" }],
  ])("shares the answer to a Cookie request that is %s", async (_, headers) => {
    const { host } = await newSite();
    const path = `/${unique("cookie-public")}`;
    await origin.route(path, { body: "same for all #{hit}", headers });
    await send(`http://${host}${path}`, { headers: { cookie: "session=alice" } });
    expect(await (await send(`http://${host}${path}`)).text()).toBe("same for all #1");
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("stores the answer to a Cookie request that varies on Cookie, for that cookie only", async () => {
    const { host } = await newSite();
    const path = `/${unique("vary-cookie")}`;
    await origin.route(path, { ...PERSONAL, headers: { ...CACHEABLE, vary: "Cookie" } });
    const alice = { headers: { cookie: "session=alice" } };
    expect(await (await send(`http://${host}${path}`, alice)).text()).toBe("page for [session=alice] #1");
    expect(await (await send(`http://${host}${path}`)).text()).toBe("page for [] #2");
    expect(await (await send(`http://${host}${path}`, alice)).text()).toBe("page for [session=alice] #1");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it('cache.cookies "ignore" stores answers to Cookie requests by the RFC rules alone (the old behaviour)', async () => {
    const { host } = await newSite({ cache: { cookies: "ignore" } });
    const path = `/${unique("cookie-ignore")}`;
    await origin.route(path, PERSONAL);
    await send(`http://${host}${path}`, { headers: { cookie: "theme=dark" } });
    expect(await (await send(`http://${host}${path}`)).text()).toBe("page for [theme=dark] #1");
  });

  it("cache.ignoreCookies: listed cookies never reach the origin, and a request left without any is cached", async () => {
    const { host } = await newSite({ cache: { ignoreCookies: ["_ga", "_gid"] } });
    const path = `/${unique("ignored-cookies")}`;
    await origin.route(path, PERSONAL);
    const tracked = await send(`http://${host}${path}`, { headers: { cookie: "_ga=GA1.1; _gid=x" } });
    expect(await tracked.text()).toBe("page for [] #1");
    expect(tracked.headers.get("cache-status")).toContain("detail=storing");
    const again = await send(`http://${host}${path}`, { headers: { cookie: "_ga=GA1.2" } });
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    // A cookie the site does not ignore still counts, and still reaches the origin (without the ignored ones).
    const path2 = `/${unique("kept-cookie")}`;
    await origin.route(path2, PERSONAL);
    const session = await send(`http://${host}${path2}`, { headers: { cookie: "_ga=GA1.3; session=alice" } });
    expect(await session.text()).toBe("page for [session=alice] #1");
    expect(session.headers.get("cache-status")).toContain("not-stored-cookie");
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("keeps bypass.cookies working: such a request skips the cache with all its cookies", async () => {
    const { host } = await newSite({ bypass: { cookies: ["logged_in"] }, cache: { ignoreCookies: ["_ga"] } });
    const path = `/${unique("bypass-cookie")}`;
    await origin.route(path, PERSONAL);
    const response = await send(`http://${host}${path}`, { headers: { cookie: "_ga=1; logged_in=yes" } });
    expect(response.headers.get("cache-status")).toContain("fwd=bypass");
    expect(await response.text()).toBe("page for [_ga=1; logged_in=yes] #1");
  });

  it("never hands a cookie client's page to a cookie-less one, with many concurrent requests", async () => {
    const { host } = await newSite();
    const path = `/${unique("cookie-race")}`;
    await origin.route(path, { ...PERSONAL, delayMs: 50 });
    const requests = Array.from({ length: 12 }, (_, i) => {
      const cookie = i % 2 === 0 ? `session=user${i}` : undefined;
      return send(`http://${host}${path}`, cookie ? { headers: { cookie } } : undefined).then(async (response) => ({
        cookie,
        body: await response.text(),
      }));
    });
    for (const { cookie, body } of await Promise.all(requests)) {
      if (cookie) expect(body).toMatch(new RegExp(`^page for \\[(${cookie})?\\] #\\d+$`));
      else expect(body).toMatch(/^page for \[\] #\d+$/);
    }
    expect(await (await send(`http://${host}${path}`)).text()).toMatch(/^page for \[\] #\d+$/);
  });

  it("keys an answer that reflects Origin in Access-Control-Allow-Origin without Vary: Origin by the Origin", async () => {
    const { host } = await newSite();
    const path = `/${unique("cors")}`;
    await origin.route(path, {
      body: "font #{hit}",
      headers: { ...CACHEABLE, "access-control-allow-origin": "{header:origin}" },
    });
    const fromA = { headers: { origin: "https://a.test" } };
    const fromB = { headers: { origin: "https://b.test" } };
    const a = await send(`http://${host}${path}`, fromA);
    expect(a.headers.get("access-control-allow-origin")).toBe("https://a.test");
    expect(a.headers.get("vary")).toBe("Origin");
    const b = await send(`http://${host}${path}`, fromB);
    expect(b.headers.get("access-control-allow-origin")).toBe("https://b.test");
    expect(await b.text()).toBe("font #2");
    const aAgain = await send(`http://${host}${path}`, fromA);
    expect(aAgain.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(aAgain.headers.get("access-control-allow-origin")).toBe("https://a.test");
    const none = await send(`http://${host}${path}`);
    expect(none.headers.get("access-control-allow-origin")).toBeNull();
    expect((await origin.hits(path)).hits).toBe(3);
  });
});
