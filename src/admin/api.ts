import { withDeadline } from "../core/deadline";
import { errorResponse, TiercelError } from "../core/errors";
import type { Logger } from "../core/exchange";
import { normalizeHost } from "../core/host";
import type { Stats, StatsFlusher } from "../core/stats";
import { isWindow, SITE_ID, type StatsAggregatorApi, type WindowName } from "../core/stats-buckets";
import { invalidate } from "../core/store";
import type { Tier } from "../core/tier";
import { parseAuditQuery } from "../sites/audit";
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
import {
  actorOf,
  checkSiteInScope,
  MIN_ADMIN_TOKEN_LENGTH,
  matchesHash,
  newScopedToken,
  type Principal,
  parseTokenRequest,
  requireAdmin,
  scopedTokenId,
  sha256Hex,
} from "../sites/tokens";

/**
 * The admin API (docs/admin-api.md): sites, purge, stats, scoped tokens, the audit log. Served under a
 * reserved path prefix, ahead of any site (on every host, or only on ADMIN_HOST when it is set), behind a
 * bearer token compared in constant time: the global ADMIN_TOKEN, or a token scoped to some sites. Every
 * change logs one line and is recorded in the audit log by the owner that makes it.
 */
export const ADMIN_PREFIX = "/_tiercel/";
const API = "/_tiercel/api/v1";

/**
 * Where a request goes, given ADMIN_HOST (undefined: unset). Unset: the reserved prefix is the admin API on
 * every host. Set: on the admin host, the prefix is the admin API and nothing else is served (it is no
 * site's host); on any other host the prefix answers 404 `admin_host_only`, and is never passed to the
 * site: a CLI pointed at a site's host sends the admin token, which must not reach a tenant's origin.
 * Resize URLs (`/_tiercel/image/`) belong to the site on every host but the admin host.
 */
export type AdminRoute = "admin" | "site" | "admin_host_only" | "not_admin_path" | "admin_host_invalid";

export function adminRouteOf(
  host: string | null,
  pathname: string,
  isResize: boolean,
  adminHost: string | undefined,
): AdminRoute {
  const reserved = pathname.startsWith(ADMIN_PREFIX);
  if (adminHost === undefined) return reserved && !isResize ? "admin" : "site";
  const wanted = adminHostOf(adminHost);
  if (wanted === null) return reserved && !isResize ? "admin_host_invalid" : "site";
  let given: string | null;
  try {
    given = normalizeHost(host);
  } catch {
    given = null;
  }
  if (given === wanted) return reserved ? "admin" : "not_admin_path";
  return reserved && !isResize ? "admin_host_only" : "site";
}

/** ADMIN_HOST normalized as request hosts are, or null when it is not a host name. */
export function adminHostOf(value: string): string | null {
  try {
    return normalizeHost(value);
  } catch {
    return null;
  }
}

/** The answer for a request the admin routing refuses (see `adminRouteOf`). */
export function adminRouteError(route: "admin_host_only" | "not_admin_path" | "admin_host_invalid"): TiercelError {
  if (route === "admin_host_only") {
    return new TiercelError("admin_host_only", 404, "The admin API is not served on this host");
  }
  if (route === "not_admin_path") {
    return new TiercelError(
      "not_found",
      404,
      "This is the admin host: it serves only the admin API, under /_tiercel/api/v1/",
    );
  }
  return new TiercelError("admin_disabled", 503, "The admin API is disabled: ADMIN_HOST is not a valid host name");
}

/** The owners every change goes through (Durable Object stubs in the Worker). */
export interface ControlPlane {
  registry(): HostRegistryApi;
  owner(siteId: string): SiteOwnerApi;
  /** The stats aggregator (one instance). */
  stats(): StatsAggregatorApi;
}

export interface AdminDeps {
  control: ControlPlane;
  /** The ADMIN_TOKEN secret; undefined disables the API, and so does one shorter than 32 characters. */
  token: string | undefined;
  /** The normalized ADMIN_HOST, if set: no site may claim it. */
  adminHost?: string | undefined;
  sites: SiteStore;
  tiers: Tier[];
  stats: Stats;
  /** This isolate's flusher: the stats routes flush it first, so the answer includes this isolate's latest. */
  flusher?: StatsFlusher;
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
    const principal = await authenticate(request, url, deps);
    return await route(request, url, deps, principal);
  } catch (error) {
    if (!(error instanceof TiercelError)) deps.log("admin.failed", { error: String(error) });
    return errorResponse(error);
  }
}

/**
 * Who a token is, by the same checks as every API request: the admin, a scoped token, or a TiercelError
 * (`401 unauthorized`, `503 admin_disabled`…). The console (src/console/) signs in with it.
 */
export function principalOf(token: string, deps: AdminDeps): Promise<Principal> {
  const request = new Request("https://tiercel.invalid/", { headers: { authorization: `Bearer ${token}` } });
  return authenticate(request, new URL(request.url), deps);
}

async function authenticate(request: Request, url: URL, deps: AdminDeps): Promise<Principal> {
  for (const name of ["token", "access_token", "auth", "key"]) {
    if (url.searchParams.has(name)) {
      throw new TiercelError("token_in_url", 400, "Send the token in the Authorization header, never in the URL");
    }
  }
  if (!deps.token)
    throw new TiercelError("admin_disabled", 503, "The admin API is disabled: set the ADMIN_TOKEN secret");
  if (deps.token.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new TiercelError(
      "admin_token_too_short",
      503,
      `The admin API is disabled: ADMIN_TOKEN must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -base64 32\`)`,
    );
  }
  const header = request.headers.get("authorization") ?? "";
  const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
  if (bearer && (await sameSecret(bearer, deps.token))) return { kind: "admin" };
  const id = bearer ? scopedTokenId(bearer) : null;
  if (bearer && id) {
    const stored = await reach(() => deps.control.registry().token(id));
    // A revoked (deleted) token is unknown from the next request on: every request asks the registry.
    if (stored && (await matchesHash(bearer, stored.hash))) {
      return { kind: "token", id: stored.id, name: stored.name, sites: stored.sites };
    }
  }
  throw new TiercelError("unauthorized", 401, "A valid bearer token is required", {
    headers: { "www-authenticate": 'Bearer realm="tiercel"' },
  });
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

async function route(request: Request, url: URL, deps: AdminDeps, who: Principal): Promise<Response> {
  const path = url.pathname.replace(/\/+$/, "");
  const method = request.method;
  if (path === `${API}/sites`) {
    if (method === "GET") return json(200, await listSites(deps, url.searchParams.get("cursor"), who));
    if (method === "POST") {
      requireAdmin(who, "create a site");
      return siteResponse(201, await createSite(deps, await readJson(request)));
    }
  }
  if (path === `${API}/stats` && method === "GET") {
    requireAdmin(who, "read every site's stats (a scoped token reads /sites/<id>/stats)");
    return json(200, await statsBody(deps, url));
  }
  if (path === `${API}/tokens`) {
    if (method === "GET") {
      requireAdmin(who, "list tokens");
      return json(200, { tokens: await reach(() => deps.control.registry().listTokens()) });
    }
    if (method === "POST") {
      requireAdmin(who, "create tokens");
      return json(201, await createToken(deps, await readJson(request)));
    }
  }
  const token = /^\/_tiercel\/api\/v1\/tokens\/([0-9a-f]{16})$/.exec(path);
  if (token?.[1] && method === "DELETE") {
    requireAdmin(who, "revoke tokens");
    return json(200, await revokeToken(deps, token[1]));
  }
  if (path === `${API}/audit` && method === "GET") {
    const query = parseAuditQuery(url.searchParams);
    if (query.site !== null) checkSiteInScope(who, query.site);
    const sites = who.kind === "token" ? who.sites : null;
    return json(200, await reach(() => deps.control.registry().audit(query, sites)));
  }
  const site = /^\/_tiercel\/api\/v1\/sites\/([A-Za-z0-9_-]{1,64})(\/purge|\/stats)?$/.exec(path);
  if (site?.[1]) {
    const id = site[1];
    const action = site[2];
    checkSiteInScope(who, id);
    if (action === "/purge" && method === "POST") return json(202, await purge(deps, id, await readJson(request), who));
    if (action === "/stats" && method === "GET") return json(200, await statsBody(deps, url, id));
    if (!action && method === "GET") return siteResponse(200, await getSite(deps, id));
    if (!action && method === "PUT") {
      const ifRevision = revisionOf(request.headers.get("if-match"));
      return siteResponse(200, await writeSite(deps, id, await readJson(request), who, ifRevision));
    }
    if (!action && method === "DELETE") {
      requireAdmin(who, "delete a site (it releases the site's hosts)");
      return json(200, await deleteSite(deps, id, who));
    }
  }
  throw new TiercelError("not_found", 404, `No admin route ${method} ${url.pathname}`);
}

/** Creates a scoped token: the secret is in this answer only; the registry keeps its SHA-256. */
async function createToken(deps: AdminDeps, body: unknown) {
  const { name, sites } = parseTokenRequest(body);
  const { id, secret } = newScopedToken();
  const stored = { id, name, sites, hash: await sha256Hex(secret), createdAt: deps.now() };
  const token = await control(() => deps.control.registry().createToken(stored, { kind: "admin" }));
  deps.log("admin.change", { action: "token.create", actor: "admin", token: id, name, sites });
  return { token, secret };
}

async function revokeToken(deps: AdminDeps, id: string) {
  const token = await control(() => deps.control.registry().revokeToken(id, { kind: "admin" }, deps.now()));
  deps.log("admin.change", { action: "token.revoke", actor: "admin", token: id, name: token.name });
  return { revoked: id };
}

/** The log's name for who made a change. */
function actorName(who: Principal): string {
  return who.kind === "admin" ? "admin" : `token:${who.id} (${who.name})`;
}

async function listSites(deps: AdminDeps, cursor: string | null, who: Principal) {
  // A scoped token lists its own sites, in one page; it never learns which other sites exist.
  const page =
    who.kind === "token"
      ? { ids: who.sites, cursor: null }
      : await reach(() => deps.control.registry().list(cursor, 100));
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
  return writeSite(deps, id, body, { kind: "admin" }, 0);
}

/** Writes through the site's owner, which claims the hosts (all or none) and publishes to KV. */
async function writeSite(
  deps: AdminDeps,
  id: string,
  body: unknown,
  who: Principal,
  ifRevision?: number,
): Promise<OwnedSite> {
  refuseAdminHost(deps, body);
  const written = await control(() => deps.control.owner(id).write(id, body, ifRevision, actorOf(who)));
  // This data center serves the change at once; the others once the owner's publish reaches them.
  await deps.sites.prime(written.site, written.revision);
  await deps.sites.forget(written.dropped);
  deps.log("admin.change", {
    action: "write",
    actor: actorName(who),
    siteId: id,
    revision: written.revision,
    hosts: written.site.hosts,
  });
  return { site: written.site, revision: written.revision };
}

/** The admin host is no site's: a site listing it would never be served there. */
function refuseAdminHost(deps: AdminDeps, body: unknown): void {
  if (!deps.adminHost || !isObject(body) || !Array.isArray(body.hosts)) return;
  const index = body.hosts.findIndex((host) => typeof host === "string" && adminHostOf(host) === deps.adminHost);
  if (index >= 0) {
    throw invalid([{ path: `hosts.${index}`, message: "is the admin host (ADMIN_HOST), which serves no site" }]);
  }
}

async function deleteSite(deps: AdminDeps, id: string, who: Principal) {
  const { hosts } = await control(() => deps.control.owner(id).remove(id, actorOf(who)));
  await deps.sites.forget(hosts);
  deps.log("admin.change", { action: "delete", actor: actorName(who), siteId: id, hosts });
  return { deleted: id };
}

async function purge(deps: AdminDeps, id: string, body: unknown, who: Principal) {
  const owner = deps.control.owner(id);
  const done = await control(() => owner.purge(id, body, actorOf(who)));
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
    actor: actorName(who),
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

/**
 * Stats summed across every isolate (the aggregator's buckets) for a window, with this isolate's own
 * counters under `isolate`. `?window=5m|1h|24h|7d` (1h by default), `?site=<id>` (or the site's path).
 */
async function statsBody(deps: AdminDeps, url: URL, pathSite?: string) {
  const window = url.searchParams.get("window") ?? "1h";
  if (!isWindow(window)) {
    throw new TiercelError("invalid_window", 400, "window must be one of 5m, 1h, 24h, 7d");
  }
  const site = pathSite ?? url.searchParams.get("site");
  if (site !== null && !SITE_ID.test(site)) {
    throw new TiercelError("invalid_site", 400, "site must be a site id (letters, digits, - and _; at most 64)");
  }
  // This isolate's latest counts go in first; a failed flush keeps them for the next one.
  await deps.flusher?.flush();
  const global = await queryStats(deps, window, site);
  return {
    scope: "global",
    site,
    ...global,
    isolate: {
      since: new Date(deps.stats.since).toISOString(),
      sites: deps.stats.snapshot(site ?? undefined),
      config: { ...deps.sites.counters },
      flush: deps.flusher
        ? { ...deps.flusher.status, pending: deps.stats.pendingEvents, dropped: deps.stats.dropped }
        : null,
    },
  };
}

/** How long a stats query may take (a 7-day window of many sites reads many rows). */
const QUERY_TIMEOUT_MS = 10_000;

async function queryStats(deps: AdminDeps, window: WindowName, site: string | null) {
  try {
    return await withDeadline(deps.control.stats().query(window, site), QUERY_TIMEOUT_MS, "stats query");
  } catch (cause) {
    throw new TiercelError("stats_unavailable", 503, "The stats aggregator could not be reached; retry", {
      cause,
      headers: { "retry-after": "1" },
    });
  }
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
