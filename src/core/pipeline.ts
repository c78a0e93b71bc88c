import { engineFor } from "../optimize/optimize";
import { isResizeUrl, parseResizeUrl, type ResizeRequest } from "../optimize/resize-url";
import { loopCount } from "../origins/hygiene";
import { objectSegments } from "../origins/path";
import type { Site } from "../sites/schema";
import { answerFromEntry, withKnownLength } from "./answer";
import { CacheStatus } from "./cache-status";
import { entryTtl } from "./entry";
import { errorResponse, TiercelError, withDiagnostics } from "./errors";
import { type Deps, describe, type Exchange } from "./exchange";
import { answerContext, fromOrigin, refreshInBackground } from "./fill";
import { forwardedHeaders, withoutIgnoredCookies } from "./forwarding";
import { normalizeHost } from "./host";
import { passOn } from "./http/content-coding";
import { decide } from "./http/decision";
import { endToEndHeaders } from "./http/headers";
import { consumedTargetedFields } from "./http/targeted";
import { cacheKey, keyedUrl, keyPartsFor } from "./keys";
import { type Found, lookupTiers, readChecked } from "./lookup";
import { NO_PURGES, type PurgeView } from "./purge";
import { ServerTiming } from "./server-timing";
import { wireLength } from "./stats";
import { invalidate, type StoreTarget, storeBody } from "./store";
import type { Tier } from "./tier";

export type { Deps, Logger } from "./exchange";

/**
 * The request pipeline: site, method policy, key, tiers nearest first, origin, background store. It
 * touches no platform global: everything it needs arrives in `Deps`, which `worker.ts` builds from the
 * bindings and tests build from real local ones.
 */

/** Methods whose non-error responses invalidate what is stored for the URL (RFC 9111 §4.4). */
const UNSAFE_METHODS = new Set(["POST", "PUT", "DELETE", "PATCH"]);

/**
 * Entry point for every request: find the site, then hand over to `handleRequest`. Never throws. `url` is the
 * request's URL when the caller has parsed it already (it is parsed once per request).
 */
export async function respond(request: Request, deps: Deps, parsed?: URL): Promise<Response> {
  const timing = new ServerTiming(deps.now);
  let site: Site | null = null;
  try {
    const url = parsed ?? new URL(request.url);
    // On Cloudflare the URL's host is the Host header; locally and in tests the header is the truth.
    const host = normalizeHost(request.headers.get("host") ?? url.host);
    site = await timing.measure("site", async () => {
      // At most once per window, and never longer than a small bound: what changed since the last check.
      await deps.control?.beforeRequest(deps.waitUntil);
      return deps.sites.siteForHost(host, deps.waitUntil);
    });
    if (!site) throw new TiercelError("site_not_found", 404, `No site is configured for host ${host}`);
    const purges = (await deps.sites.purgesFor?.(site.id, deps.waitUntil)) ?? NO_PURGES;
    return await handleRequest(request, site, deps, timing, purges, url);
  } catch (error) {
    if (site && (!(error instanceof TiercelError) || error.status >= 500)) deps.stats.error(site.id);
    return refuse(error, deps, timing, request);
  } finally {
    // The counters reach the aggregator in batches, in the background (never a write per request).
    deps.flusher?.maybeFlush(deps.waitUntil);
  }
}

/** Serves one request for a known site. */
export async function handleRequest(
  request: Request,
  site: Site,
  deps: Deps,
  timing = new ServerTiming(deps.now),
  purges: PurgeView = NO_PURGES,
  parsed?: URL,
): Promise<Response> {
  const url = parsed ?? new URL(request.url);
  const method = request.method;

  // RFC 8586: a request that already went through Tiercel means a site's origin points back at it.
  if (loopCount(request.headers.get("cdn-loop")) > 0) {
    throw new TiercelError(
      "loop_detected",
      508,
      "This request already passed through Tiercel: the site's origin loops",
    );
  }
  // TRACE reflects the request, credentials included, and CONNECT tunnels: neither belongs on a cache.
  if (method === "TRACE" || method === "CONNECT") {
    throw new TiercelError("method_not_allowed", 405, `${method} is not supported`);
  }
  // A bucket is read-only: nothing but GET and HEAD reaches it.
  if (site.origin.kind === "s3" && method !== "GET" && method !== "HEAD") {
    throw new TiercelError("method_not_allowed", 405, `${method} is not allowed on this site`, {
      headers: { allow: "GET, HEAD" },
    });
  }
  if (isResizeUrl(url) && method !== "GET" && method !== "HEAD") {
    throw new TiercelError("method_not_allowed", 405, `${method} is not allowed on a resize URL`, {
      headers: { allow: "GET, HEAD" },
    });
  }
  const target = await targetOf(url, site, deps);
  if (method !== "GET" && method !== "HEAD") {
    return passThrough(request, target.url, site, target.baseKey, deps, timing);
  }

  if (bypasses(request, target.url, site)) {
    deps.stats.record(site.id, "bypass");
    const status = new CacheStatus();
    status.add({ cache: "Tiercel", fwd: "bypass", detail: "site-rule" });
    return forward(request, target.url, site, deps, timing, status);
  }

  const ex = await exchangeOf(request, site, deps, timing, purges, target);
  const look = await lookupTiers(ex);

  if (look.fresh) {
    const found = look.fresh;
    const read = found.range ? found.range.end - found.range.start + 1 : found.entry.length;
    deps.stats.record(site.id, { hit: deps.tiers[found.tier]?.name ?? "tier" }, read);
    found.member.hit = true;
    found.member.ttl = entryTtl(found.entry, deps.now());
    let body = found.body;
    const nearer = deps.tiers.slice(0, found.tier);
    if (nearer.length > 0 && method === "GET" && found.range) {
      // Only the range was read: the nearer tiers are refilled from a whole read in the background, once per
      // key in this isolate, while the range is answered at once.
      deps.waitUntil(refillWhole(ex, found, nearer));
      ex.status.forwarded(found.entry.status, "storing");
    } else if (nearer.length > 0 && method === "GET") {
      // A hit in a farther tier refills the nearer ones in the background, checked against its record.
      const refill = storeBody(ex, refillTarget(found, nearer), body);
      body = refill.client;
      deps.waitUntil(refill.outcome);
      ex.status.forwarded(found.entry.status, "storing");
    }
    return answerFromEntry(found.entry, body, answerContext(ex), found.range);
  }

  // What the tiers found decides the rest (http/decision.ts): serve stale and refresh, forward, or fill.
  const decision =
    look.stale?.decision ??
    decide({ request: { method, makesVariant: ex.resize !== undefined }, policy: site.cache, now: deps.now() });
  if (look.stale && decision.action === "serve-stale-and-refresh") {
    // RFC 5861 §3: serve stale at once, refresh once in the background (a soft purge does the same).
    const stale = look.stale;
    deps.stats.record(site.id, "stale", stale.entry.length);
    stale.member.fwd = undefined;
    stale.member.hit = true;
    stale.member.ttl = entryTtl(stale.entry, deps.now());
    stale.member.detail = decision.reason;
    deps.waitUntil(refreshInBackground(ex, stale));
    return answerFromEntry(stale.entry, stale.body, answerContext(ex));
  }

  deps.stats.record(site.id, "miss");
  // A resize URL's HEAD miss makes the variant (a GET to the source, transformed and stored), so its
  // headers describe the resized image, not the source.
  if (decision.action === "forward") {
    deps.stats.originFetch(site.id);
    // A HEAD miss asks the origin for HEAD and stores nothing, so it never leaves an empty body for GET.
    await look.stale?.body.cancel();
    // It gets the same headers a GET's fill would, so it describes what a GET is answered with.
    const selecting = [...(look.index?.fields ?? []), ...(look.stale?.entry.vary ?? [])];
    const { upstream } = forwardedHeaders(ex.request.headers, site.cache.requestHeaders, selecting);
    return forward(ex.request, ex.url, site, deps, timing, ex.status, "not-stored-method", upstream);
  }
  return fromOrigin(ex, look);
}

/** A resize URL's options and source image URL; 400 for a format the site's engine cannot write. */
function resizeOf(url: URL, site: Site, deps: Deps): { resize: ResizeRequest; source: URL } {
  const parsed = parseResizeUrl(url, site.optimize);
  const resize = parsed.request;
  const engine = engineFor({ options: site.optimize, engines: deps.engines });
  if (resize.format !== "auto" && !engine.formats.includes(resize.format)) {
    throw new TiercelError(
      "bad_resize_options",
      400,
      `Bad resize URL: format=${resize.format} is not available here (the ${engine.name} engine writes ${engine.formats.join(", ")})`,
    );
  }
  return { resize, source: parsed.source };
}

/** What a request's URL names: the object's URL (a resize URL's source image), its key, and any resize. */
interface Target {
  url: URL;
  baseKey: string;
  resize?: ResizeRequest;
}

/**
 * The target of a request URL: a resize URL names a source image and how to transform it (refused, 4xx,
 * unless the site allows it); a path that could climb out of the origin's prefix is refused before anything
 * is looked up or fetched.
 */
async function targetOf(requested: URL, site: Site, deps: Deps): Promise<Target> {
  let url = requested;
  let resize: ResizeRequest | undefined;
  if (isResizeUrl(url)) ({ resize, source: url } = resizeOf(url, site, deps));
  objectSegments(url);
  const baseKey = await cacheKey(keyPartsFor(site, url, resize?.canonical));
  return resize ? { url, baseKey, resize } : { url, baseKey };
}

/**
 * The one way an exchange (a GET or HEAD answered through the cache) is built, in a data center and in the
 * shield. What is cached, and what the origin is asked for it, carry only the keyed query (the site's query
 * policy): the same string in both, so a response can never be stored under a query it was not made for.
 * The cookies the site ignores are gone before keys, lookups, storing rules or the origin see the request
 * (bypass rules saw them all).
 */
async function exchangeOf(
  request: Request,
  site: Site,
  deps: Deps,
  timing: ServerTiming,
  purges: PurgeView,
  target: Target,
): Promise<Exchange> {
  const ex: Exchange = {
    request: withoutIgnoredCookies(request, site.cache.ignoreCookies),
    url: keyedUrl(site, target.url),
    site,
    purges,
    deps,
    timing,
    status: new CacheStatus(),
    baseKey: target.baseKey,
  };
  if (target.resize) {
    ex.resize = target.resize;
    ex.sourceKey = await cacheKey(keyPartsFor(site, target.url));
  }
  return ex;
}

/**
 * The exchange of a GET answered through the cache, built from the request alone exactly as `handleRequest`
 * builds it: the shield (src/core/shield.ts) derives the key, keyed URL and transform itself rather than
 * taking a data center's word for them.
 */
export async function cacheExchange(request: Request, site: Site, deps: Deps, timing: ServerTiming): Promise<Exchange> {
  const target = await targetOf(new URL(request.url), site, deps);
  const purges = (await deps.sites.purgesFor?.(site.id, deps.waitUntil)) ?? NO_PURGES;
  return exchangeOf(request, site, deps, timing, purges, target);
}

/** Where a farther tier's hit is copied to: the nearer tiers, checked against the entry's own record. */
function refillTarget(found: Found, nearer: Tier[]): StoreTarget {
  return {
    key: found.key,
    entry: found.entry,
    declaredLength: found.entry.length,
    verify: found.entry.digest !== "",
    tiers: nearer,
    index: found.index,
    values: "",
  };
}

/** Keys being refilled from a whole read in this isolate (after a ranged hit in a farther tier). */
const refilling = new Set<string>();
const MAX_REFILLS = 64;

/** Reads a farther tier's entry whole and stores it in the nearer tiers; at most one per key at a time. */
async function refillWhole(ex: Exchange, found: Found, nearer: Tier[]): Promise<void> {
  const { deps } = ex;
  const tier = deps.tiers[found.tier];
  if (!tier || refilling.has(found.key) || refilling.size >= MAX_REFILLS) return;
  refilling.add(found.key);
  try {
    const whole = await readChecked(tier, found.key, deps);
    if (!whole) return;
    const refill = storeBody(ex, refillTarget(found, nearer), whole.body);
    // No client reads this copy: its branch is let go, so the stores read at their own pace (a store never
    // falls behind a reader that is not there).
    await Promise.all([refill.client.cancel().catch(() => {}), refill.outcome]);
  } catch (error) {
    deps.log("refill.failed", { key: found.key, error: describe(error) });
  } finally {
    refilling.delete(found.key);
  }
}

/** The site's bypass rules: a path prefix, or a cookie (such as a logged-in one) by name. */
function bypasses(request: Request, url: URL, site: Site): boolean {
  if (site.bypass.paths.some((prefix) => url.pathname.startsWith(prefix))) return true;
  if (site.bypass.cookies.length === 0) return false;
  const names = (request.headers.get("cookie") ?? "").split(";").map((pair) => pair.split("=")[0]?.trim());
  return site.bypass.cookies.some((name) => names.includes(name));
}

/** Methods other than GET and HEAD go to the origin uncached, and may invalidate what is stored. */
async function passThrough(
  request: Request,
  url: URL,
  site: Site,
  baseKey: string,
  deps: Deps,
  timing: ServerTiming,
): Promise<Response> {
  const status = new CacheStatus();
  status.add({ cache: "Tiercel", fwd: "method" });
  const response = await forward(request, url, site, deps, timing, status);
  // RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI, and the URIs in
  // Location and Content-Location when they are on the same site.
  if (UNSAFE_METHODS.has(request.method) && response.status < 400) {
    const keys = [baseKey];
    for (const name of ["location", "content-location"]) {
      const value = response.headers.get(name);
      if (!value) continue;
      const target = URL.canParse(value, url.href) ? new URL(value, url) : undefined;
      if (target && target.host === url.host) keys.push(await cacheKey(keyPartsFor(site, target)));
    }
    await invalidate({ deps }, keys);
  }
  return response;
}

/** Sends the request to the origin as it is and passes the answer back unstored. */
async function forward(
  request: Request,
  url: URL,
  site: Site,
  deps: Deps,
  timing: ServerTiming,
  status: CacheStatus,
  detail?: string,
  upstream = request.headers,
): Promise<Response> {
  let response: Response;
  try {
    response = await timing.measure("origin", () =>
      deps.originFor(site).fetch({ method: request.method, url, headers: upstream, body: request.body }),
    );
  } catch (error) {
    if (error instanceof TiercelError) status.add({ cache: "Tiercel", fwd: "miss", detail: error.code });
    throw withDiagnostics(error, status, timing);
  }
  deps.stats.originBytes(site.id, wireLength(response));
  status.forwarded(response.status, "none", detail);
  const headers = endToEndHeaders(response.headers, consumedTargetedFields(site.cache.targetedFields));
  headers.set("cache-status", status.toString());
  headers.set("server-timing", timing.toString());
  const body = request.method === "HEAD" ? null : response.body;
  const answer = passOn(body, { status: response.status, statusText: response.statusText, headers });
  try {
    // As on a fill (fill.ts): an answer of unknown length goes out with its length, or as an error.
    return await withKnownLength(answer, site.cache.collectUnknownLength);
  } catch (error) {
    status.failed(error instanceof TiercelError ? error.code : "origin_bad_response");
    throw withDiagnostics(error, status, timing);
  }
}

function refuse(error: unknown, deps: Deps, timing: ServerTiming, request: Request): Response {
  if (!(error instanceof TiercelError) || error.status >= 500) {
    deps.log("request.failed", { url: request.url, method: request.method, error: describe(error) });
  }
  const headers: Record<string, string> = {};
  if (timing.toString()) headers["server-timing"] = timing.toString();
  if (error instanceof TiercelError && !error.headers["cache-status"]) {
    headers["cache-status"] = `Tiercel; fwd=bypass; detail=${error.code}`;
  }
  return errorResponse(error, headers);
}
