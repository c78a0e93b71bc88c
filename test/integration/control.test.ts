import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import type { SiteOwnerApi } from "../../src/sites/owner";
import type { Site } from "../../src/sites/schema";
import { type PublishedPurges, purgesKey, siteKey } from "../../src/sites/store";
import { platformFor } from "../../src/worker";
import { adminCall, origin, send, unique } from "../support/harness";

/**
 * The control plane's owners (src/objects/): every admin write goes through the host registry and the
 * site's owner, serialized and versioned, and published to KV at most once per host per second.
 */

function admin(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return adminCall(method, path, { body, headers });
}

const siteBody = (hosts: string[]) => ({ hosts, origin: { kind: "http", url: origin.url, allowPrivate: true } });

async function createSite(): Promise<{ site: Site; revision: number }> {
  const created = await admin("POST", "/sites", siteBody([`${unique("ctl")}.test`]));
  expect(created.status).toBe(201);
  return created.body as unknown as { site: Site; revision: number };
}

function ownerOf(id: string) {
  return env.SITE_OWNER.get(env.SITE_OWNER.idFromName(id));
}

/** How many times the site's owner has published to KV. */
async function publishes(id: string): Promise<number> {
  return runInDurableObject(ownerOf(id), async (_instance, state) => {
    return ((await state.storage.get<{ count: number }>("published"))?.count ?? 0) as number;
  });
}

async function kvSite(host: string): Promise<Site> {
  return JSON.parse((await env.SITES.get(siteKey(host))) as string) as Site;
}

/** The host's config in KV once it has reached `revision` (an alarm may be publishing right now). */
async function publishedAt(host: string, revision: number): Promise<Site> {
  for (let tries = 0; tries < 40; tries++) {
    const { value, metadata } = await env.SITES.getWithMetadata<{ revision: number }>(siteKey(host));
    if (value !== null && (metadata?.revision ?? 0) >= revision) return JSON.parse(value) as Site;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${host} never reached revision ${revision} in KV`);
}

/** The site's purge state in KV once it has reached `version`. */
async function publishedPurges(id: string, version: number): Promise<PublishedPurges> {
  for (let tries = 0; tries < 40; tries++) {
    const { value, metadata } = await env.SITES.getWithMetadata<{ version: number }>(purgesKey(id));
    if (value !== null && (metadata?.version ?? 0) >= version) return JSON.parse(value) as PublishedPurges;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the purges of ${id} never reached version ${version} in KV`);
}

describe("owners with atomic writes", () => {
  it("loses none of 50 concurrent purges and edits, and coalesces their KV publishes", async () => {
    const { site, revision } = await createSite();
    const host = site.hosts[0] as string;
    expect(await publishes(site.id)).toBe(1);
    const tags = Array.from({ length: 25 }, (_, i) => `tag-${i}`);
    const ttls = Array.from({ length: 25 }, (_, i) => 100 + i);
    const started = Date.now();
    const answers = await Promise.all([
      ...tags.map((tag) => admin("POST", `/sites/${site.id}/purge`, { tags: [tag] })),
      ...ttls.map((ttl) => admin("PUT", `/sites/${site.id}`, { ...siteBody([host]), cache: { browserTtl: ttl } })),
    ]);
    expect(answers.map((answer) => answer.status).sort()).toEqual([
      ...Array<number>(25).fill(200),
      ...Array<number>(25).fill(202),
    ]);
    // Every write got its own revision: none was applied over a state another had replaced.
    const revisions = answers.map((answer) => answer.body.revision as number).sort((a, b) => a - b);
    expect(revisions).toEqual(Array.from({ length: 50 }, (_, i) => revision + 1 + i));

    const final = (await admin("GET", `/sites/${site.id}`)).body as unknown as { site: Site; revision: number };
    expect(final.revision).toBe(revision + 50);
    expect(ttls).toContain(final.site.cache.browserTtl);

    // At most one publish per second of the burst (KV allows one write per second per key), plus the alarm's
    // one with the latest state: not one per write.
    await runDurableObjectAlarm(ownerOf(site.id));
    const seconds = Math.ceil((Date.now() - started) / 1000);
    expect(await publishes(site.id)).toBeLessThanOrEqual(2 + seconds);
    expect(seconds).toBeLessThan(10);
    // The settings last changed with the last edit (a purge leaves them alone).
    const lastEdit = Math.max(...answers.filter((a) => a.status === 200).map((a) => a.body.revision as number));
    const published = await publishedAt(host, lastEdit);
    expect(published.cache.browserTtl).toBe(final.site.cache.browserTtl);
    // The purges are published apart from the settings, every tag there.
    const purges = await publishedPurges(site.id, 25);
    expect(purges.tags.map(([tag]) => tag).sort()).toEqual([...tags].sort());
    expect(published).not.toHaveProperty("purges");
  });

  it("gives exactly one of 10 concurrent claims of one host, the others 409 host_taken", async () => {
    const host = `${unique("contested")}.test`;
    const answers = await Promise.all(Array.from({ length: 10 }, () => admin("POST", "/sites", siteBody([host]))));
    const winners = answers.filter((answer) => answer.status === 201);
    expect(winners).toHaveLength(1);
    const winner = (winners[0]?.body.site as Site | undefined)?.id;
    for (const loser of answers.filter((answer) => answer.status !== 201)) {
      expect(loser.status).toBe(409);
      expect((loser.body as unknown as ErrorBody).error).toMatchObject({ code: "host_taken", host, siteId: winner });
    }
    expect((await kvSite(host)).id).toBe(winner);
    expect((await send(`http://${host}/${unique("claimed")}`)).status).toBe(200);
  });

  it("refuses an edit made against an old revision with 412, once another edit has landed", async () => {
    const { site, revision } = await createSite();
    const host = site.hosts[0] as string;
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        admin(
          "PUT",
          `/sites/${site.id}`,
          { ...siteBody([host]), cache: { browserTtl: i } },
          { "if-match": `"${revision}"` },
        ),
      ),
    );
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
    const refused = answers.filter((answer) => answer.status !== 200);
    expect(refused).toHaveLength(9);
    for (const answer of refused) {
      expect(answer.status).toBe(412);
      expect((answer.body as unknown as ErrorBody).error).toMatchObject({
        code: "revision_conflict",
        revision: revision + 1,
      });
    }
    const read = await admin("GET", `/sites/${site.id}`);
    expect(read.headers.get("etag")).toBe(`"${revision + 1}"`);
    expect((await admin("PUT", `/sites/${site.id}`, siteBody([host]), { "if-match": "3" })).status).toBe(400);
  });

  it("never rolls a generation back from a stale copy in KV", async () => {
    const { site } = await createSite();
    const host = site.hosts[0] as string;
    await admin("POST", `/sites/${site.id}/purge`, { all: true });
    await admin("POST", `/sites/${site.id}/purge`, { all: true });
    // A stale read path: KV still shows generation 0 (as an old publish or a lagging replica would).
    await env.SITES.put(siteKey(host), JSON.stringify(site));
    await env.SITES.put(`site:${site.id}`, JSON.stringify(site));
    const edited = await admin("PUT", `/sites/${site.id}`, { ...site, cache: { browserTtl: 5 } });
    expect((edited.body.site as Site).generation).toBe(2);
    const purged = await admin("POST", `/sites/${site.id}/purge`, { all: true });
    expect((purged.body.purged as { generation: number }).generation).toBe(3);
  });
});

describe("sites stored before owners", () => {
  it("lists, reads, purges and deletes a site added by hand as one host: key, and then frees its host", async () => {
    const host = `${unique("byhand")}.test`;
    const id = unique("hand").replaceAll(".", "");
    // README "Adding a site by hand": no hosts field, no site: key.
    await env.SITES.put(siteKey(host), JSON.stringify({ version: 1, id, origin: siteBody([]).origin }));

    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await admin("GET", `/sites${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
      ids.push(...(page.body.sites as Site[]).map((site) => site.id));
      cursor = page.body.cursor as string | null;
    } while (cursor);
    expect(ids).toContain(id);

    const read = await admin("GET", `/sites/${id}`);
    expect(read.status).toBe(200);
    expect((read.body.site as Site).hosts).toEqual([host]);
    expect((await admin("POST", `/sites/${id}/purge`, { urls: [`https://${host}/a`] })).status).toBe(202);

    const taken = await admin("POST", "/sites", siteBody([host]));
    expect(taken.status).toBe(409);
    expect((taken.body as unknown as ErrorBody).error).toMatchObject({ code: "host_taken", siteId: id });

    expect((await admin("DELETE", `/sites/${id}`)).body).toEqual({ deleted: id });
    expect(await env.SITES.get(siteKey(host))).toBeNull();
    expect((await admin("GET", `/sites/${id}`)).status).toBe(404);
    expect((await admin("POST", "/sites", siteBody([host]))).status).toBe(201);
  });

  it("takes over a site the admin API stored under site: and host: keys, keeping its generation and tombstone", async () => {
    const host = `${unique("legacy")}.test`;
    const id = unique("legacy").replaceAll(".", "");
    const legacy = { id, hosts: [host], origin: siteBody([]).origin, generation: 4 };
    await env.SITES.put(`site:${id}`, JSON.stringify(legacy));
    await env.SITES.put(siteKey(host), JSON.stringify(legacy));
    // A host claimed only in KV is not free.
    expect((await admin("POST", "/sites", siteBody([host]))).status).toBe(409);
    const purged = await admin("POST", `/sites/${id}/purge`, { all: true });
    expect((purged.body.purged as { generation: number }).generation).toBe(5);

    const gone = unique("gone").replaceAll(".", "");
    await env.SITES.put(`tombstone:${gone}`, "7");
    const again = await admin("PUT", `/sites/${gone}`, siteBody([`${unique("reborn")}.test`]));
    expect((again.body.site as Site).generation).toBe(8);
  });
});

describe("purges as data", () => {
  it("keeps 100,000 URL purges bounded and apart from the settings; purged URLs miss, the others hit", {
    timeout: 180_000,
  }, async () => {
    const { site, revision } = await createSite();
    const host = site.hosts[0] as string;
    const base = `/${unique("many")}`;
    const purged = Array.from({ length: 10 }, (_, i) => `${base}/purged-${i}`);
    const kept = Array.from({ length: 10 }, (_, i) => `${base}/kept-${i}`);
    for (const path of [...purged, ...kept]) {
      await origin.route(path, { body: "v{hit}", headers: { "cache-control": "max-age=3600" } });
      expect(await (await send(`http://${host}${path}`)).text()).toBe("v1");
    }
    // 100,000 URL purges through the owner (as the admin API calls it), 1,000 per call; the ten filled
    // URLs are spread among them.
    const urls = Array.from({ length: 100_000 }, (_, i) => `http://${host}${base}/other-${i}`);
    for (const [i, path] of purged.entries()) urls[i * 9_973] = `http://${host}${path}`;
    const owner = ownerOf(site.id) as unknown as SiteOwnerApi;
    for (let batch = 0; batch < 100; batch++) {
      const outcome = await owner.purge(
        site.id,
        { urls: urls.slice(batch * 1000, (batch + 1) * 1000) },
        {
          kind: "admin",
        },
      );
      expect(outcome.ok).toBe(true);
    }
    const whole = await owner.purges(site.id);
    expect(whole.version).toBe(100);
    expect(whole.urls).toHaveLength(100_000);
    const bytes = JSON.stringify(whole).length;
    // Bounded: one 16-hex-digit key and a time per URL (about 33 bytes), never the settings' business.
    expect(bytes).toBeLessThan(100_000 * 40);
    console.log(JSON.stringify({ event: "test.purge-state", urls: whole.urls.length, bytes }));
    const settings = (await admin("GET", `/sites/${site.id}`)).body as unknown as { site: Site; revision: number };
    expect(settings.site.purges).toEqual({ urls: {}, tags: {}, softTags: {} });
    expect(settings.revision).toBe(revision + 100);
    expect(await publishedAt(host, revision)).not.toHaveProperty("purges");
    expect((await publishedPurges(site.id, 100)).urls).toHaveLength(100_000);

    // This isolate takes the new state (as the admin API's isolate, or the control feed, makes it do).
    await platformFor(env).sites.primePurges?.(site.id, whole);
    for (const path of purged) {
      const answer = await send(`http://${host}${path}`);
      expect(await answer.text()).toBe("v2");
      expect(answer.headers.get("cache-status")).toContain("detail=purged");
    }
    for (const path of kept) {
      const answer = await send(`http://${host}${path}`);
      expect(await answer.text()).toBe("v1");
      expect(answer.headers.get("cache-status")).toContain("hit");
    }
  });

  it("moves purge records out of a config stored with them, keeping them in force", async () => {
    const host = `${unique("carried")}.test`;
    const id = unique("carried").replaceAll(".", "");
    const path = `/${unique("tagged")}`;
    await origin.route(path, { body: "t{hit}", headers: { "cache-control": "max-age=3600", "cache-tag": "old-tag" } });
    await env.SITES.put(siteKey(host), JSON.stringify({ id, hosts: [host], origin: siteBody([]).origin }));
    await platformFor(env).sites.forget([host]);
    expect(await (await send(`http://${host}${path}`)).text()).toBe("t1");
    // A config as a purge wrote it before purges were data.
    const carried = {
      id,
      hosts: [host],
      origin: siteBody([]).origin,
      purges: { urls: {}, tags: { "old-tag": Date.now() }, softTags: {} },
    };
    await env.SITES.put(siteKey(host), JSON.stringify(carried));
    await platformFor(env).sites.forget([host]);
    // Read as it is, the record counts at once.
    expect(await (await send(`http://${host}${path}`)).text()).toBe("t2");
    // The owner moves it out on first read (the listing's first page adopts the host), and publishes both.
    expect((await admin("GET", "/sites")).status).toBe(200);
    const read = await admin("GET", `/sites/${id}`);
    expect((read.body.site as Site).purges.tags).toEqual({});
    const purges = await publishedPurges(id, 1);
    expect(purges.tags.map(([tag]) => tag)).toEqual(["old-tag"]);
    await runDurableObjectAlarm(ownerOf(id));
    const settings = await publishedAt(host, 2);
    expect(settings).not.toHaveProperty("purges");
  });
});
