import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import type { Site } from "../../src/sites/schema";
import { kvSiteStore } from "../../src/sites/store";
import { ADMIN_TOKEN, adminCall, origin, send, unique } from "../support/harness";

/** The admin API and what it promises: sites, config-derived keys, purges, stats, micro-cached reads. */

const TOKEN = ADMIN_TOKEN;

function admin(method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  return adminCall(method, path, { body, token });
}

async function createSite(extra: Record<string, unknown> = {}): Promise<Site> {
  const host = `${unique("adm")}.test`;
  const created = await admin("POST", "/sites", {
    hosts: [host],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
    ...extra,
  });
  expect(created.status).toBe(201);
  return created.body.site as Site;
}

/** The isolate's config lookups, as the stats answer shows them. */
function configOf(body: Record<string, unknown>) {
  return (body.isolate as { config: { kvReads: number; negativeHits: number } }).config;
}

function errorOf(body: Record<string, unknown>) {
  return (body as unknown as ErrorBody).error;
}

describe("authentication", () => {
  it("refuses a missing or wrong token with 401, and a token in the URL with 400", async () => {
    expect((await admin("GET", "/sites", undefined, null)).status).toBe(401);
    const wrong = await admin("GET", "/sites", undefined, "nope");
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toContain("Bearer");
    expect(errorOf(wrong.body).code).toBe("unauthorized");
    const inUrl = await admin("GET", `/sites?token=${TOKEN}`);
    expect(inUrl.status).toBe(400);
    expect(errorOf(inUrl.body).code).toBe("token_in_url");
    expect(wrong.headers.get("cache-control")).toBe("no-store");
  });

  it("keeps the reserved prefix out of every site's reach", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const response = await send(`http://${host}/_tiercel/anything`);
    expect(response.status).toBe(401);
    expect((await origin.hits("/_tiercel/anything")).hits).toBe(0);
  });
});

describe("sites", () => {
  it("creates a site with a generated id, reads, lists, updates and deletes it", async () => {
    const site = await createSite();
    expect(site.id).toMatch(/^[0-9a-f]{32}$/);
    const host = site.hosts[0] as string;
    expect((await admin("GET", `/sites/${site.id}`)).body.site).toEqual(site);

    const listed: Site[] = [];
    let cursor: string | null = null;
    do {
      const page = await admin("GET", `/sites${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
      listed.push(...(page.body.sites as Site[]));
      cursor = page.body.cursor as string | null;
    } while (cursor);
    expect(listed.map((s) => s.id)).toContain(site.id);

    const path = `/${unique("served")}`;
    expect((await send(`http://${host}${path}`)).status).toBe(200);

    const newHost = `${unique("moved")}.test`;
    const updated = await admin("PUT", `/sites/${site.id}`, { ...site, hosts: [newHost] });
    expect(updated.status).toBe(200);
    expect((await send(`http://${host}${path}`)).status).toBe(404);
    expect((await send(`http://${newHost}${path}`)).status).toBe(200);

    expect((await admin("DELETE", `/sites/${site.id}`)).body).toEqual({ deleted: site.id });
    expect((await admin("GET", `/sites/${site.id}`)).status).toBe(404);
    expect((await send(`http://${newHost}${path}`)).status).toBe(404);
  });

  it("refuses a host another site has claimed with 409", async () => {
    const first = await createSite();
    const taken = await admin("POST", "/sites", {
      hosts: [first.hosts[0]],
      origin: { kind: "http", url: origin.url, allowPrivate: true },
    });
    expect(taken.status).toBe(409);
    expect(errorOf(taken.body)).toMatchObject({ code: "host_taken", host: first.hosts[0], siteId: first.id });
  });

  it("refuses invalid config with 400 and every bad field's path, storing nothing", async () => {
    const host = `${unique("bad")}.test`;
    const response = await admin("POST", "/sites", {
      hosts: [host],
      origin: { kind: "http", url: "ftp://x" },
      cache: { edgeTtl: -1 },
      surprise: true,
    });
    expect(response.status).toBe(400);
    const issues = (errorOf(response.body).issues as { path: string }[]).map((issue) => issue.path);
    expect(issues).toEqual(expect.arrayContaining(["origin.url", "cache.edgeTtl"]));
    expect(await env.SITES.get(`host:${host}`)).toBeNull();
  });

  it("refuses a private or metadata origin when the site is written", async () => {
    const response = await admin("POST", "/sites", {
      hosts: [`${unique("ssrf")}.test`],
      origin: { kind: "http", url: "http://169.254.169.254/" },
    });
    expect(response.status).toBe(400);
    expect(errorOf(response.body).issues).toEqual([expect.objectContaining({ path: "origin.url" })]);
  });
});

describe("hosts and origin fields", () => {
  it("reports a refused connect target under origin.connectTo, not origin.url", async () => {
    const response = await admin("POST", "/sites", {
      hosts: [`${unique("ct")}.test`],
      origin: { kind: "http", url: "https://backend.tiercel-docs.com", connectTo: "203.0.113.10:8080" },
    });
    expect(response.status).toBe(400);
    expect(errorOf(response.body).issues).toEqual([
      expect.objectContaining({ path: "origin.connectTo", message: expect.stringContaining("reserved") }),
    ]);
  });

  it("stores an upper-case or repeated host once, in lower case, and serves it", async () => {
    const host = `${unique("case")}.test`;
    const created = await admin("POST", "/sites", {
      hosts: [host.toUpperCase(), host],
      origin: { kind: "http", url: origin.url, allowPrivate: true },
    });
    expect(created.status).toBe(201);
    expect((created.body.site as Site).hosts).toEqual([host]);
    expect(await env.SITES.get(`host:${host}`)).not.toBeNull();
    expect(await env.SITES.get(`host:${host.toUpperCase()}`)).toBeNull();
  });
});

describe("config-derived keys", () => {
  it("serves a fresh variant after an option that changes the bytes changes, and keeps hits after a TTL change", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("variant")}.png`;
    await send(`http://${host}${path}`);
    await admin("PUT", `/sites/${site.id}`, { ...site, cache: { ...site.cache, browserTtl: 120 } });
    const afterTtl = await send(`http://${host}${path}`);
    expect(afterTtl.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(afterTtl.headers.get("cache-control")).toBe("public, max-age=120");

    await admin("PUT", `/sites/${site.id}`, { ...site, optimize: { ...site.optimize, polish: "lossless" } });
    const afterPolish = await send(`http://${host}${path}`);
    expect(afterPolish.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
  });
});

describe("purge", () => {
  it("by URL: the entry is gone from both tiers at once", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("purge-url")}`;
    await send(`http://${host}${path}`);
    const purged = await admin("POST", `/sites/${site.id}/purge`, { urls: [`https://${host}${path}`] });
    expect(purged.status).toBe(202);
    const after = await send(`http://${host}${path}`);
    expect(after.headers.get("cache-status")).toContain("fwd=miss");
    expect(await after.text()).toBe(`GET ${path} #2`);
  });

  it("by tag: entries carrying the tag are purged, others kept", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const tagged = `/${unique("tagged")}`;
    const other = `/${unique("untagged")}`;
    await origin.route(tagged, {
      body: "t{hit}",
      headers: { "cache-control": "max-age=300", "cache-tag": "product-1, shelf" },
    });
    await origin.route(other, { body: "o{hit}", headers: { "cache-control": "max-age=300", "cache-tag": "shelf-2" } });
    await send(`http://${host}${tagged}`);
    await send(`http://${host}${other}`);
    await admin("POST", `/sites/${site.id}/purge`, { tags: ["product-1"] });
    expect(await (await send(`http://${host}${tagged}`)).text()).toBe("t2");
    expect(await (await send(`http://${host}${other}`)).text()).toBe("o1");
  });

  it("everything: a generation bump makes every entry unreachable", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const paths = [`/${unique("all-a")}`, `/${unique("all-b")}`];
    for (const path of paths) await send(`http://${host}${path}`);
    const purged = await admin("POST", `/sites/${site.id}/purge`, { all: true });
    expect((purged.body.purged as { generation: number }).generation).toBe(1);
    for (const path of paths)
      expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toContain("fwd=miss");
  });

  it("soft: entries are served stale while they revalidate", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("soft")}`;
    await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=300", "cache-tag": "soft-tag" } });
    await send(`http://${host}${path}`);
    await admin("POST", `/sites/${site.id}/purge`, { tags: ["soft-tag"], soft: true });
    const stale = await send(`http://${host}${path}`);
    expect(await stale.text()).toBe("v1");
    expect(stale.headers.get("cache-status")).toContain("detail=soft-purged");
    const refreshed = await send(`http://${host}${path}`);
    expect(await refreshed.text()).toBe("v2");
    expect(refreshed.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });

  it("a fill that started before a purge does not survive it", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("race")}`;
    await origin.route(path, {
      body: "v{hit}",
      delayMs: 300,
      headers: { "cache-control": "max-age=300", "cache-tag": "race" },
    });
    const fill = send(`http://${host}${path}`);
    // The purge lands while the origin is still answering the fill.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await admin("POST", `/sites/${site.id}/purge`, { tags: ["race"] });
    expect(await (await fill).text()).toBe("v1");
    const after = await send(`http://${host}${path}`);
    expect(await after.text()).toBe("v2");
  });
});

describe("config reads", () => {
  it("reads KV about once for many requests (micro-cache), and counts it in stats", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("counted")}`;
    const before = configOf((await admin("GET", "/stats")).body);
    for (let i = 0; i < 50; i++) await send(`http://${host}${path}`);
    const after = await admin("GET", `/sites/${site.id}/stats`);
    expect(configOf(after.body).kvReads - before.kvReads).toBeLessThanOrEqual(1);
    const counters = (after.body.sites as Record<string, { requests: number; hits: { edge: number } }>)[site.id];
    expect(counters?.requests).toBe(50);
    expect(counters?.hits.edge).toBe(49);
  });

  it("caches unknown hosts negatively, so repeated requests do not read KV", async () => {
    const host = `${unique("nobody")}.test`;
    const before = configOf((await admin("GET", "/stats")).body);
    for (let i = 0; i < 20; i++) expect((await send(`http://${host}/x`)).status).toBe(404);
    const after = configOf((await admin("GET", "/stats")).body);
    expect(after.kvReads - before.kvReads).toBe(1);
    expect(after.negativeHits - before.negativeHits).toBe(19);
  });

  it("keeps a config read back from the micro-cache in memory for memorySeconds, not one Cache API read per request", async () => {
    let now = Date.now();
    const store = kvSiteStore(env.SITES, {
      now: () => now,
      cache: caches.open(unique("held-config")),
      memorySeconds: 5,
      cacheSeconds: 30,
    });
    const site = await createSite();
    const host = site.hosts[0] as string;
    expect((await store.siteForHost(host))?.id).toBe(site.id);
    expect(store.counters).toMatchObject({ kvReads: 1, cacheHits: 0 });
    // Past memory's 5 s, within the micro-cache's 30 s: read back from the Cache API once, then from memory.
    now += 6_000;
    for (let i = 0; i < 20; i++) {
      expect((await store.siteForHost(host))?.id).toBe(site.id);
      now += 100;
    }
    expect(store.counters).toMatchObject({ kvReads: 1, cacheHits: 1, memoryHits: 19 });
    // 5 s after that read: the Cache API again; never past the micro-cache's freshness: KV again.
    now += 5_000;
    await store.siteForHost(host);
    expect(store.counters).toMatchObject({ kvReads: 1, cacheHits: 2 });
    now += 20_000;
    await store.siteForHost(host);
    expect(store.counters).toMatchObject({ kvReads: 2, cacheHits: 2 });
  });

  it("serves the last known config for a bounded time when KV fails, and never guesses", async () => {
    let failing = false;
    let now = Date.now();
    const kv = {
      getWithMetadata: (key: string, type: "text") =>
        failing ? Promise.reject(new Error("KV is down")) : env.SITES.getWithMetadata(key, type),
    } as unknown as KVNamespace;
    const store = kvSiteStore(kv, { now: () => now, memorySeconds: 5, cacheSeconds: 30, lastKnownSeconds: 300 });
    const site = await createSite();
    const host = site.hosts[0] as string;
    expect((await store.siteForHost(host))?.id).toBe(site.id);
    failing = true;
    now += 60_000;
    expect((await store.siteForHost(host))?.id).toBe(site.id);
    expect(store.counters.lastKnownServed).toBe(1);
    await expect(store.siteForHost(`${unique("never-seen")}.test`)).rejects.toMatchObject({
      code: "site_store_unavailable",
    });
    now += 300_000;
    await expect(store.siteForHost(host)).rejects.toMatchObject({ code: "site_store_unavailable", status: 503 });
  });
});

describe("bypass rules", () => {
  it("sends requests under a bypassed path prefix, or with a bypass cookie, to the origin uncached", async () => {
    const site = await createSite({ bypass: { paths: ["/account/"], cookies: ["logged_in"] } });
    const host = site.hosts[0] as string;
    const account = `/account/${unique("page")}`;
    for (const n of [1, 2]) {
      const response = await send(`http://${host}${account}`);
      expect(await response.text()).toBe(`GET ${account} #${n}`);
      expect(response.headers.get("cache-status")).toContain("fwd=bypass");
    }
    const page = `/${unique("page")}`;
    await send(`http://${host}${page}`);
    const anonymous = await send(`http://${host}${page}`, { headers: { cookie: "theme=dark" } });
    expect(anonymous.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    const loggedIn = await send(`http://${host}${page}`, { headers: { cookie: "theme=dark; logged_in=1" } });
    expect(loggedIn.headers.get("cache-status")).toContain("fwd=bypass");
    expect(await loggedIn.text()).toBe(`GET ${page} #2`);
  });
});

describe("site isolation", () => {
  it("keeps two sites with the same path and query apart, one site's id a prefix of the other's", async () => {
    const prefix = unique("samesite").replaceAll(".", "");
    const a = (
      await admin("PUT", `/sites/${prefix}`, {
        hosts: [`${prefix}-a.test`],
        origin: { kind: "http", url: origin.url, allowPrivate: true },
      })
    ).body.site as Site;
    const b = (
      await admin("PUT", `/sites/${prefix}-a`, {
        hosts: [`${prefix}-b.test`],
        origin: { kind: "http", url: origin.url, allowPrivate: true },
      })
    ).body.site as Site;
    await admin("PUT", `/sites/${a.id}`, { ...a, origin: { ...a.origin, url: `${origin.url}/site-a` } });
    await admin("PUT", `/sites/${b.id}`, { ...b, origin: { ...b.origin, url: `${origin.url}/site-b` } });
    const path = `/${unique("same")}/x`;
    expect(await (await send(`http://${a.hosts[0]}${path}?q=1`)).text()).toBe(`GET /site-a${path}?q=1 #1`);
    expect(await (await send(`http://${b.hosts[0]}${path}?q=1`)).text()).toBe(`GET /site-b${path}?q=1 #1`);
    expect(await (await send(`http://${a.hosts[0]}${path}?q=1`)).text()).toBe(`GET /site-a${path}?q=1 #1`);
  });
});

describe("admin review follow-ups", () => {
  it("gives a deleted site's id, written again, a generation past its old entries", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("tomb")}`;
    await send(`http://${host}${path}`);
    await admin("DELETE", `/sites/${site.id}`);
    const again = await admin("PUT", `/sites/${site.id}`, { hosts: [host], origin: site.origin });
    expect((again.body.site as Site).generation).toBe(site.generation + 1);
    expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toContain("fwd=miss");
  });

  it("never writes a purge into a host that has moved to another site", async () => {
    const a = await createSite();
    const moving = `${unique("moving")}.test`;
    await admin("PUT", `/sites/${a.id}`, { ...a, hosts: [...a.hosts, moving] });
    const stale = { ...a, hosts: [...a.hosts, moving] };
    // The host moves to B; A's purge then runs with a config that still lists it.
    await admin("PUT", `/sites/${a.id}`, { ...stale, hosts: a.hosts });
    const b = await admin("POST", "/sites", { hosts: [moving], origin: a.origin });
    expect(b.status).toBe(201);
    await env.SITES.put(`site:${a.id}`, JSON.stringify(stale));
    await admin("POST", `/sites/${a.id}/purge`, { all: true });
    const owner = JSON.parse((await env.SITES.get(`host:${moving}`)) as string) as Site;
    expect(owner.id).toBe((b.body.site as Site).id);
  });
});
