import { errorResponse, TiercelError } from "../core/errors";
import type { Logger } from "../core/exchange";
import { cacheKey, keyPartsFor } from "../core/keys";
import type { Stats } from "../core/stats";
import { invalidate } from "../core/store";
import type { Tier } from "../core/tier";
import { isResizeUrl, parseResizeUrl } from "../optimize/resize-url";
import { checkConnectTarget, checkOriginUrl } from "../origins/address";
import { parseSite, type Site, siteSchema } from "../sites/schema";
import { type SiteStore, siteKey } from "../sites/store";

/**
 * The admin API (docs/admin-api.md): sites, purge, stats. Served under a reserved path prefix on every
 * host, ahead of any site, behind a bearer token compared in constant time. Every change logs one line.
 */
export const ADMIN_PREFIX = "/_tiercel/";
const API = "/_tiercel/api/v1";

export interface AdminDeps {
  /** The SITES namespace. */
  kv: KVNamespace;
  /** The ADMIN_TOKEN secret; undefined disables the API. */
  token: string | undefined;
  sites: SiteStore;
  tiers: Tier[];
  stats: Stats;
  now(): number;
  log: Logger;
  tierTimeoutMs: number;
  /** The isolate's record of invalidated keys (see Deps.invalidated). */
  invalidated: Map<string, number>;
}

/** Purge records older than this are dropped (no entry can be retained longer). */
const RECORD_KEEP_MS = 400 * 86_400_000;
/** More purge records than this and the site's generation is bumped instead (a purge of everything). */
const MAX_RECORDS = 10_000;

export async function handleAdmin(request: Request, deps: AdminDeps): Promise<Response> {
  try {
    const url = new URL(request.url);
    await authenticate(request, url, deps);
    return await route(request, url, deps);
  } catch (error) {
    if (!(error instanceof TiercelError)) deps.log("admin.failed", { error: String(error) });
    return errorResponse(error);
  }
}

async function authenticate(request: Request, url: URL, deps: AdminDeps): Promise<void> {
  for (const name of ["token", "access_token", "auth", "key"]) {
    if (url.searchParams.has(name)) {
      throw new TiercelError("token_in_url", 400, "Send the token in the Authorization header, never in the URL");
    }
  }
  if (!deps.token)
    throw new TiercelError("admin_disabled", 503, "The admin API is disabled: set the ADMIN_TOKEN secret");
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1] || !(await sameSecret(match[1], deps.token))) {
    throw new TiercelError("unauthorized", 401, "A valid bearer token is required", {
      headers: { "www-authenticate": 'Bearer realm="tiercel"' },
    });
  }
}

/** Constant-time comparison: both sides are hashed first, so lengths do not leak either. */
async function sameSecret(given: string, expected: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

async function route(request: Request, url: URL, deps: AdminDeps): Promise<Response> {
  const path = url.pathname.replace(/\/+$/, "");
  const method = request.method;
  if (path === `${API}/sites`) {
    if (method === "GET") return json(200, await listSites(deps, url.searchParams.get("cursor")));
    if (method === "POST") return json(201, { site: await createSite(deps, await readJson(request)) });
  }
  if (path === `${API}/stats` && method === "GET") return json(200, statsBody(deps));
  const site = /^\/_tiercel\/api\/v1\/sites\/([A-Za-z0-9_-]{1,64})(\/purge|\/stats)?$/.exec(path);
  if (site?.[1]) {
    const id = site[1];
    const action = site[2];
    if (action === "/purge" && method === "POST") return json(202, await purge(deps, id, await readJson(request)));
    if (action === "/stats" && method === "GET") return json(200, statsBody(deps, id));
    if (!action && method === "GET") return json(200, { site: await getSite(deps, id) });
    if (!action && method === "PUT") return json(200, { site: await putSite(deps, id, await readJson(request)) });
    if (!action && method === "DELETE") return json(200, await deleteSite(deps, id));
  }
  throw new TiercelError("not_found", 404, `No admin route ${method} ${url.pathname}`);
}

async function listSites(deps: AdminDeps, cursor: string | null) {
  const page = await deps.kv.list({ prefix: "site:", limit: 100, ...(cursor ? { cursor } : {}) });
  // A record that does not parse is reported in the log and left out, not allowed to break the listing.
  const sites = await Promise.all(
    page.keys.map((key) =>
      readSite(deps, key.name.slice("site:".length)).catch((error: unknown) => {
        deps.log("admin.skipped", { key: key.name, error: String(error) });
        return null;
      }),
    ),
  );
  return { sites: sites.filter((s) => s !== null), cursor: page.list_complete ? null : page.cursor };
}

async function getSite(deps: AdminDeps, id: string): Promise<Site> {
  const site = await readSite(deps, id);
  if (!site) throw new TiercelError("site_not_found", 404, `No site ${id}`);
  return site;
}

async function readSite(deps: AdminDeps, id: string): Promise<Site | null> {
  const raw = await deps.kv.get(`site:${id}`, "text");
  if (raw === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (cause) {
    throw new TiercelError("site_config_invalid", 502, `The stored config of site ${id} is not valid JSON`, { cause });
  }
  return parseSite(json, `site ${id}`);
}

async function createSite(deps: AdminDeps, body: unknown): Promise<Site> {
  if (isObject(body) && "id" in body) {
    throw invalid([{ path: "id", message: "is generated by Tiercel; use PUT /sites/<id> to write a known id" }]);
  }
  const id = crypto.randomUUID().replaceAll("-", "");
  return writeSite(deps, id, body, null, "create");
}

async function putSite(deps: AdminDeps, id: string, body: unknown): Promise<Site> {
  if (isObject(body) && "id" in body && body.id !== id) {
    throw invalid([{ path: "id", message: `must be ${id}, the id in the URL` }]);
  }
  const existing = await readSite(deps, id);
  return writeSite(deps, id, body, existing, existing ? "update" : "create");
}

/** Validates, claims the hosts, writes `site:<id>` and every `host:<host>` copy, releases dropped hosts. */
async function writeSite(
  deps: AdminDeps,
  id: string,
  body: unknown,
  existing: Site | null,
  action: string,
): Promise<Site> {
  if (!isObject(body)) throw invalid([{ path: "(root)", message: "must be a JSON object" }]);
  // Generation and purge records are managed by purges; what a body says about them is not taken.
  const { generation: _g, purges: _p, ...rest } = body;
  const candidate = {
    ...rest,
    id,
    ...(existing
      ? { generation: existing.generation, purges: existing.purges }
      : { generation: await generationAfterTombstone(deps, id) }),
  };
  const parsed = siteSchema.safeParse(candidate);
  if (!parsed.success) {
    throw invalid(
      parsed.error.issues.map((issue) => ({ path: issue.path.join(".") || "(root)", message: issue.message })),
    );
  }
  const site = parsed.data;
  if (site.hosts.length === 0) throw invalid([{ path: "hosts", message: "must name at least one host" }]);
  checkOrigin(site);

  for (const host of site.hosts) {
    const claimed = await deps.kv.get(siteKey(host), "text");
    const owner = claimed === null ? null : ownerOf(claimed);
    if (owner !== null && owner !== id) {
      throw new TiercelError("host_taken", 409, `The host ${host} belongs to another site`, {
        details: { host, siteId: owner },
      });
    }
  }
  await saveSite(deps, site, site.hosts);
  const dropped = (existing?.hosts ?? []).filter((host) => !site.hosts.includes(host));
  await Promise.all(dropped.map((host) => releaseHost(deps, host, id)));
  await deps.sites.forget([...site.hosts, ...dropped]);
  deps.log("admin.change", { action, siteId: id, hosts: site.hosts });
  return site;
}

async function deleteSite(deps: AdminDeps, id: string) {
  const site = await getSite(deps, id);
  await Promise.all(site.hosts.map((host) => releaseHost(deps, host, id)));
  // The id is never reused with an old generation: entries stored under it must stay unreachable.
  await deps.kv.put(`tombstone:${id}`, String(site.generation));
  await deps.kv.delete(`site:${id}`);
  await deps.sites.forget(site.hosts);
  deps.log("admin.change", { action: "delete", siteId: id, hosts: site.hosts });
  return { deleted: id };
}

/** The storage layout: the site under `site:<id>`, and a full copy under `host:<host>` for each of `hosts`. */
async function saveSite(deps: AdminDeps, site: Site, hosts: string[]): Promise<void> {
  const value = JSON.stringify(site);
  await deps.kv.put(`site:${site.id}`, value);
  await Promise.all(hosts.map((host) => deps.kv.put(siteKey(host), value)));
}

/** A deleted site's id comes back with a generation past everything it stored before. */
async function generationAfterTombstone(deps: AdminDeps, id: string): Promise<number> {
  const raw = await deps.kv.get(`tombstone:${id}`, "text");
  const last = raw === null ? Number.NaN : Number(raw);
  return Number.isInteger(last) && last >= 0 ? last + 1 : 0;
}

/** Removes a host's config only if it still belongs to this site. */
async function releaseHost(deps: AdminDeps, host: string, id: string): Promise<void> {
  const claimed = await deps.kv.get(siteKey(host), "text");
  if (claimed !== null && ownerOf(claimed) === id) await deps.kv.delete(siteKey(host));
}

async function purge(deps: AdminDeps, id: string, body: unknown) {
  if (!isObject(body)) throw invalid([{ path: "(root)", message: "must be a JSON object" }]);
  const urls = stringList(body.urls, "urls");
  const tags = stringList(body.tags, "tags");
  const all = body.all === true;
  const soft = body.soft === true;
  if (urls.length === 0 && tags.length === 0 && !all) {
    throw invalid([{ path: "(root)", message: "name urls, tags, or all: true" }]);
  }
  const site = await getSite(deps, id);
  const now = deps.now();
  const purges = structuredClone(site.purges);
  let generation = site.generation;

  const keys: string[] = [];
  for (const raw of urls) {
    const target = URL.canParse(raw) ? new URL(raw) : null;
    if (!target || !site.hosts.includes(target.hostname.toLowerCase())) {
      throw invalid([{ path: "urls", message: `${raw} is not an absolute URL on one of the site's hosts` }]);
    }
    // The same key function as requests (current generation and options), so the purge finds the entry;
    // a resize URL is keyed as the pipeline keys it: its source path plus its options.
    const resized = isResizeUrl(target) ? resizedKeyParts(target, site) : undefined;
    const key = await cacheKey(resized ?? keyPartsFor(site, target));
    purges.urls[key] = now;
    keys.push(key);
  }
  for (const tag of tags) {
    if (soft) purges.softTags[tag] = now;
    else purges.tags[tag] = now;
  }
  if (all && soft) purges.softAll = now;
  if (all && !soft) {
    generation += 1;
    purges.urls = {};
    purges.tags = {};
    purges.softTags = {};
    delete purges.softAll;
  }
  if (prune(purges, now) > MAX_RECORDS) {
    // Too many records to check on every read: purge everything instead, which needs none.
    generation += 1;
    purges.urls = {};
    purges.tags = {};
    purges.softTags = {};
    delete purges.softAll;
  }

  // Only the hosts that still belong to this site get the new config (another write may have moved one).
  const owned = await Promise.all(
    site.hosts.map(async (host) => {
      const claimed = await deps.kv.get(siteKey(host), "text");
      return claimed === null || ownerOf(claimed) === id ? host : null;
    }),
  );
  await saveSite(
    deps,
    { ...site, generation, purges },
    owned.filter((host) => host !== null),
  );
  await deps.sites.forget(site.hosts);
  // URL purges also remove the entries now: KV everywhere, the Cache API in this data center.
  if (keys.length > 0) await invalidate({ deps }, keys);
  deps.log("admin.change", { action: "purge", siteId: id, urls: urls.length, tags, all, soft });
  return {
    purged: { urls, tags, all, soft, generation },
    propagation:
      "KV and this data center at once; every data center within the config micro-cache TTL plus KV propagation (about 90 s)",
  };
}

/** Drops purge records no entry can be older than; returns how many remain. */
function prune(purges: Site["purges"], now: number): number {
  let count = 0;
  for (const records of [purges.urls, purges.tags, purges.softTags]) {
    for (const [name, time] of Object.entries(records)) {
      if (now - time > RECORD_KEEP_MS) delete records[name];
      else count += 1;
    }
  }
  return count;
}

function statsBody(deps: AdminDeps, siteId?: string) {
  return {
    scope: "isolate",
    since: new Date(deps.stats.since).toISOString(),
    sites: deps.stats.snapshot(siteId),
    config: { ...deps.sites.counters },
  };
}

/** Origin addresses are checked when a site is written, not only when it is used; each under its own field. */
function checkOrigin(site: Site): void {
  const check = (field: string, run: () => unknown) => {
    try {
      run();
    } catch (error) {
      throw invalid([{ path: field, message: error instanceof Error ? error.message : String(error) }]);
    }
  };
  const origin = site.origin;
  if (origin.kind === "s3") check("origin.endpoint", () => checkOriginUrl(origin.endpoint, origin));
  else {
    check("origin.url", () => checkOriginUrl(origin.url, origin));
    const connectTo = origin.connectTo;
    if (connectTo) check("origin.connectTo", () => checkConnectTarget(connectTo, origin));
  }
}

function ownerOf(raw: string): string | null {
  try {
    const value: unknown = JSON.parse(raw);
    return isObject(value) && typeof value.id === "string" ? value.id : null;
  } catch {
    return null;
  }
}

function stringList(value: unknown, path: string): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) ||
    !value.every((item) => typeof item === "string" && item.length > 0 && item.length <= 1024)
  ) {
    throw invalid([{ path, message: "must be a list of non-empty strings" }]);
  }
  if (value.length > 1000) throw invalid([{ path, message: "at most 1000 at a time" }]);
  return value;
}

function invalid(issues: { path: string; message: string }[]): TiercelError {
  const message = issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ");
  return new TiercelError("invalid_config", 400, message, { details: { issues } });
}

async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  if (text.length > 1_000_000) throw new TiercelError("invalid_json", 413, "The body is larger than 1 MB");
  try {
    return JSON.parse(text);
  } catch {
    throw new TiercelError("invalid_json", 400, "The body is not valid JSON");
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/** The key parts of a resize URL, or a 400 naming the URL when its options do not parse for this site. */
function resizedKeyParts(target: URL, site: Site) {
  try {
    const { request, source } = parseResizeUrl(target, site.optimize);
    return keyPartsFor(site, source, request.canonical);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw invalid([{ path: "urls", message: `${target.href}: ${message}` }]);
  }
}
