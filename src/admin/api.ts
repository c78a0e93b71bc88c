import { errorResponse, TiercelError } from "../core/errors";
import type { Logger } from "../core/exchange";
import type { Stats } from "../core/stats";
import { invalidate } from "../core/store";
import type { Tier } from "../core/tier";
import {
  type HostRegistryApi,
  invalid,
  isObject,
  type Outcome,
  type OwnedSite,
  type SiteOwnerApi,
  unwrap,
} from "../sites/owner";
import type { SiteStore } from "../sites/store";

/**
 * The admin API (docs/admin-api.md): sites, purge, stats. Served under a reserved path prefix on every
 * host, ahead of any site, behind a bearer token compared in constant time. Every change logs one line.
 */
export const ADMIN_PREFIX = "/_tiercel/";
const API = "/_tiercel/api/v1";

/** The owners every change goes through (Durable Object stubs in the Worker). */
export interface ControlPlane {
  registry(): HostRegistryApi;
  owner(siteId: string): SiteOwnerApi;
}

export interface AdminDeps {
  control: ControlPlane;
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
  /** The longest a change takes to be visible in every data center, when the control feed bounds it. */
  propagationMs?: number;
}

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
    if (method === "POST") return siteResponse(201, await createSite(deps, await readJson(request)));
  }
  if (path === `${API}/stats` && method === "GET") return json(200, statsBody(deps));
  const site = /^\/_tiercel\/api\/v1\/sites\/([A-Za-z0-9_-]{1,64})(\/purge|\/stats)?$/.exec(path);
  if (site?.[1]) {
    const id = site[1];
    const action = site[2];
    if (action === "/purge" && method === "POST") return json(202, await purge(deps, id, await readJson(request)));
    if (action === "/stats" && method === "GET") return json(200, statsBody(deps, id));
    if (!action && method === "GET") return siteResponse(200, await getSite(deps, id));
    if (!action && method === "PUT") {
      const ifRevision = revisionOf(request.headers.get("if-match"));
      return siteResponse(200, await writeSite(deps, id, await readJson(request), ifRevision));
    }
    if (!action && method === "DELETE") return json(200, await deleteSite(deps, id));
  }
  throw new TiercelError("not_found", 404, `No admin route ${method} ${url.pathname}`);
}

async function listSites(deps: AdminDeps, cursor: string | null) {
  const page = await reach(() => deps.control.registry().list(cursor, 100));
  // A site whose stored config does not parse is reported in the log and left out, not allowed to break the
  // listing.
  const sites = await Promise.all(
    page.ids.map(async (id) => {
      try {
        return (await readSite(deps, id))?.site ?? null;
      } catch (error) {
        deps.log("admin.skipped", { siteId: id, error: String(error) });
        return null;
      }
    }),
  );
  return { sites: sites.filter((s) => s !== null), cursor: page.cursor };
}

async function getSite(deps: AdminDeps, id: string): Promise<OwnedSite> {
  const site = await readSite(deps, id);
  if (!site) throw new TiercelError("site_not_found", 404, `No site ${id}`);
  return site;
}

function readSite(deps: AdminDeps, id: string): Promise<OwnedSite | null> {
  return control(() => deps.control.owner(id).read(id));
}

async function createSite(deps: AdminDeps, body: unknown): Promise<OwnedSite> {
  if (isObject(body) && "id" in body) {
    throw invalid([{ path: "id", message: "is generated by Tiercel; use PUT /sites/<id> to write a known id" }]);
  }
  const id = crypto.randomUUID().replaceAll("-", "");
  // A new id has no revision yet: If-Match 0 makes sure of it.
  return writeSite(deps, id, body, 0);
}

/** Writes through the site's owner, which claims the hosts (all or none) and publishes to KV. */
async function writeSite(deps: AdminDeps, id: string, body: unknown, ifRevision?: number): Promise<OwnedSite> {
  const written = await control(() => deps.control.owner(id).write(id, body, ifRevision));
  // This data center serves the change at once; the others once the owner's publish reaches them.
  await deps.sites.prime(written.site, written.revision);
  await deps.sites.forget(written.dropped);
  deps.log("admin.change", { action: "write", siteId: id, revision: written.revision, hosts: written.site.hosts });
  return { site: written.site, revision: written.revision };
}

async function deleteSite(deps: AdminDeps, id: string) {
  const { hosts } = await control(() => deps.control.owner(id).remove(id));
  await deps.sites.forget(hosts);
  deps.log("admin.change", { action: "delete", siteId: id, hosts });
  return { deleted: id };
}

async function purge(deps: AdminDeps, id: string, body: unknown) {
  const owner = deps.control.owner(id);
  const done = await control(() => owner.purge(id, body));
  // This isolate and data center apply the purge at once: the delta onto what they know, or the whole state.
  if (!(await deps.sites.applyPurges?.(id, done.delta))) {
    const whole = await reach(() => owner.purges(id));
    await deps.sites.primePurges?.(id, whole);
  }
  // A purge of everything is a new generation: new settings.
  if (done.request.all && !done.request.soft) await deps.sites.prime(done.site, done.revision);
  // URL purges also remove the entries now: KV everywhere, the Cache API in this data center.
  if (done.keys.length > 0) await invalidate({ deps }, done.keys);
  const { urls, tags, all, soft } = done.request;
  deps.log("admin.change", {
    action: "purge",
    siteId: id,
    revision: done.revision,
    urls: urls.length,
    tags,
    all,
    soft,
    evictedTags: done.evictedTags,
  });
  return {
    purged: { urls, tags, all, soft, generation: done.site.generation },
    revision: done.revision,
    purgeVersion: done.delta.version,
    ...(done.evictedTags > 0
      ? { evictedTags: done.evictedTags, tagFloor: new Date(done.delta.tagFloor).toISOString() }
      : {}),
    propagation: propagationOf(deps),
  };
}

/** When a change is visible everywhere, as the purge answer says it. */
function propagationOf(deps: AdminDeps): { here: string; everywhereWithinMs: number; how: string } {
  return {
    here: "at once (this data center)",
    everywhereWithinMs: deps.propagationMs ?? 91_000,
    how:
      deps.propagationMs === undefined
        ? "owner publishes to KV within 1 s; others within the config micro-cache TTL plus KV propagation"
        : "through the control feed, without waiting for KV",
  };
}

/**
 * Calls an owner. Its refusals come back as Outcomes and are thrown again with their code; an owner that
 * cannot be reached is `503 owner_unavailable` (nothing was changed that the caller cannot retry).
 */
async function control<T>(call: () => Promise<Outcome<T>>): Promise<T> {
  return unwrap(await reach(call));
}

async function reach<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (cause) {
    throw new TiercelError("owner_unavailable", 503, "The site's owner could not be reached; retry", {
      cause,
      headers: { "retry-after": "1" },
    });
  }
}

/** A site answer: `{site, revision}`, the revision also as a strong ETag for If-Match. */
function siteResponse(status: number, owned: OwnedSite): Response {
  const response = json(status, owned);
  response.headers.set("etag", `"${owned.revision}"`);
  return response;
}

/** The revision an `If-Match` names (RFC 9110 §13.1.1: one strong entity tag), or undefined when absent. */
function revisionOf(header: string | null): number | undefined {
  if (header === null) return undefined;
  const match = /^"(\d{1,15})"$/.exec(header.trim());
  if (!match?.[1]) {
    throw new TiercelError("invalid_precondition", 400, 'If-Match must be one revision as an entity tag, e.g. "3"');
  }
  return Number(match[1]);
}

function statsBody(deps: AdminDeps, siteId?: string) {
  return {
    scope: "isolate",
    since: new Date(deps.stats.since).toISOString(),
    sites: deps.stats.snapshot(siteId),
    config: { ...deps.sites.counters },
  };
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

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}
