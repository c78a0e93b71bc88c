import type { Site } from "../sites/schema";
import type { SiteStore } from "../sites/store";
import { CacheStatus, type CacheStatusMember } from "./cache-status";
import { withDeadline } from "./deadline";
import { buildEntry, entryAge, entryHeaders, entryTtl, isFresh, type StoredEntry } from "./entry";
import { errorResponse, TiercelError } from "./errors";
import { normalizeHost } from "./host";
import { parseCacheControl } from "./http/cache-control";
import { endToEndHeaders } from "./http/headers";
import { whyNotStorable } from "./http/storable";
import { parseVary } from "./http/vary";
import { cacheKey, keyPartsFor } from "./keys";
import type { Origin } from "./origin";
import { ServerTiming } from "./server-timing";
import { BodyTooLargeError, readAll, sha256Digest } from "./streams";
import type { CachedObject, Tier } from "./tier";

/**
 * The request pipeline: site, method policy, key, tiers nearest first, origin, background store. It
 * touches no platform global: everything it needs arrives in `Deps`, which `worker.ts` builds from the
 * bindings and tests build from real local ones.
 */
export interface Deps {
  sites: SiteStore;
  /** Cache tiers, nearest the client first (edge, then global). */
  tiers: Tier[];
  originFor(site: Site): Origin;
  now(): number;
  waitUntil(work: Promise<unknown>): void;
  log: Logger;
  /** How long one tier operation may take before the tier is skipped. */
  tierTimeoutMs: number;
  /** The largest body the store path will buffer and write. */
  maxStoreBytes: number;
}

export type Logger = (event: string, fields: Record<string, unknown>) => void;

/** Display names of the tiers in Cache-Status. */
const CACHE_NAMES: Record<string, string> = { edge: "Tiercel-Edge", kv: "Tiercel-KV", memory: "Tiercel-Memory" };

/** Statuses whose responses never have a body (RFC 9110 §6.4.1). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** Entry point for every request: find the site, then hand over to `handleRequest`. Never throws. */
export async function respond(request: Request, deps: Deps): Promise<Response> {
  const timing = new ServerTiming(deps.now);
  try {
    const url = new URL(request.url);
    // On Cloudflare the URL's host is the Host header; locally and in tests the header is the truth.
    const host = normalizeHost(request.headers.get("host") ?? url.host);
    const site = await timing.measure("site", () => deps.sites.siteForHost(host));
    if (!site) throw new TiercelError("site_not_found", 404, `No site is configured for host ${host}`);
    return await handleRequest(request, site, deps, timing);
  } catch (error) {
    return refuse(error, deps, timing, request);
  }
}

/** Serves one request for a known site. */
export async function handleRequest(
  request: Request,
  site: Site,
  deps: Deps,
  timing = new ServerTiming(deps.now),
): Promise<Response> {
  const url = new URL(request.url);
  const method = request.method;

  // TRACE reflects the request, credentials included, and CONNECT tunnels: neither belongs on a cache.
  if (method === "TRACE" || method === "CONNECT") {
    throw new TiercelError("method_not_allowed", 405, `${method} is not supported`);
  }
  if (method !== "GET" && method !== "HEAD") return passThrough(request, url, site, deps, timing);

  const key = await cacheKey(keyPartsFor(site.id, url));
  const status = new CacheStatus();

  for (const [index, tier] of deps.tiers.entries()) {
    const member = status.add({ cache: cacheName(tier) });
    const found = await lookup(tier, key, member, deps, timing);
    if (!found) continue;
    const now = deps.now();
    if (!isFresh(found.entry, now)) {
      // Revalidation of stale entries arrives with the RFC 9111 work; until then stale is a miss.
      await found.body.cancel();
      member.fwd = "stale";
      continue;
    }
    member.hit = true;
    member.ttl = entryTtl(found.entry, now);
    let body = found.body;
    const nearer = deps.tiers.slice(0, index);
    if (nearer.length > 0 && method === "GET") {
      const [toClient, toStore] = body.tee();
      body = toClient;
      deps.waitUntil(refill(nearer, key, found.entry, toStore, deps));
      status.forwarded(found.entry.status, true);
    }
    return answerFromEntry(found.entry, body, method, deps.now(), status, timing);
  }

  return fetchFromOrigin(request, url, site, key, status, deps, timing);
}

/** Reads one tier, skipping it (and saying so) if it throws or is too slow. */
async function lookup(
  tier: Tier,
  key: string,
  member: CacheStatusMember,
  deps: Deps,
  timing: ServerTiming,
): Promise<CachedObject | null> {
  try {
    const found = await timing.measure(tier.name, () =>
      withDeadline(tier.get(key), deps.tierTimeoutMs, `${tier.name} get`),
    );
    if (!found) member.fwd = "miss";
    return found;
  } catch (error) {
    member.fwd = "miss";
    member.detail = error instanceof Error && error.name === "DeadlineError" ? "tier-timeout" : "tier-error";
    deps.log("tier.skipped", { tier: tier.name, op: "get", error: describe(error) });
    return null;
  }
}

function answerFromEntry(
  entry: StoredEntry,
  body: ReadableStream<Uint8Array>,
  method: string,
  now: number,
  status: CacheStatus,
  timing: ServerTiming,
): Response {
  const headers = entryHeaders(entry);
  // RFC 9111 §5.1: a cache that answers from storage sends Age.
  headers.set("age", String(entryAge(entry, now)));
  if (!headers.has("content-encoding") && !NULL_BODY_STATUSES.has(entry.status)) {
    headers.set("content-length", String(entry.length));
  }
  headers.set("cache-status", status.toString());
  headers.set("server-timing", timing.toString());
  const withoutBody = method === "HEAD" || NULL_BODY_STATUSES.has(entry.status);
  if (withoutBody) void body.cancel();
  return new Response(withoutBody ? null : body, { status: entry.status, headers });
}

async function fetchFromOrigin(
  request: Request,
  url: URL,
  site: Site,
  key: string,
  status: CacheStatus,
  deps: Deps,
  timing: ServerTiming,
): Promise<Response> {
  const origin = deps.originFor(site);
  const requestTime = deps.now();
  let response: Response;
  try {
    // A HEAD miss asks the origin for HEAD and stores nothing, so it can never leave an empty body for GET.
    response = await timing.measure("origin", () =>
      origin.fetch({ method: request.method, url, headers: request.headers, body: null }),
    );
  } catch (error) {
    if (error instanceof TiercelError) status.add({ cache: "Tiercel", fwd: "miss", detail: error.code });
    throw withHeaders(error, status, timing);
  }
  const responseTime = deps.now();

  const headers = endToEndHeaders(response.headers);
  const requestCc = parseCacheControl(request.headers.get("cache-control"));
  const responseCc = parseCacheControl(headers.get("cache-control"));
  const vary = parseVary(headers.get("vary"));
  const reason = whyNotStorable({
    method: request.method,
    requestHeaders: request.headers,
    requestCc,
    status: response.status,
    responseHeaders: headers,
    responseCc,
    vary,
  });

  const meta = { status: response.status, headers, requestTime, responseTime, vary: vary === "*" ? [] : vary };
  // Only what is fresh on arrival is worth storing until revalidation exists; no-cache needs revalidation.
  const probe = buildEntry({ ...meta, storedAt: responseTime, length: 0, digest: "" });
  const worthStoring =
    reason === null && responseCc.noCache === false && entryTtl(probe, responseTime) > 0 && response.body !== null;

  let body = response.body;
  if (worthStoring && body) {
    const [toClient, toStore] = body.tee();
    body = toClient;
    deps.waitUntil(storeFromOrigin(key, meta, toStore, deps));
  }
  const notStored = worthStoring ? undefined : (reason ?? (responseCc.noCache !== false ? "no-cache" : "stale"));
  status.forwarded(response.status, worthStoring, notStored && `not-stored-${notStored}`);

  headers.set("cache-status", status.toString());
  headers.set("server-timing", timing.toString());
  return new Response(request.method === "HEAD" ? null : body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

/** Buffers the store branch of a miss, checks it arrived whole, and writes it to every tier. */
async function storeFromOrigin(
  key: string,
  meta: { status: number; headers: Headers; requestTime: number; responseTime: number; vary: string[] },
  body: ReadableStream<Uint8Array>,
  deps: Deps,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await readAll(body, deps.maxStoreBytes);
  } catch (error) {
    // A body that broke off, or one too large to buffer, is never stored.
    const reason = error instanceof BodyTooLargeError ? "too-large" : "body-error";
    deps.log("store.skipped", { key, reason, error: describe(error) });
    return;
  }
  // A body that ended short of its declared length is incomplete (RFC 9112 §8). With a content coding
  // the runtime has already decoded the body, so the declared (encoded) length cannot be compared.
  const declared = meta.headers.get("content-length");
  if (declared !== null && !meta.headers.has("content-encoding") && Number(declared) !== bytes.byteLength) {
    deps.log("store.skipped", { key, reason: "short-body", declared, received: bytes.byteLength });
    return;
  }
  const entry = buildEntry({
    ...meta,
    storedAt: deps.now(),
    length: bytes.byteLength,
    digest: await sha256Digest(bytes),
  });
  await putEverywhere(deps.tiers, key, entry, bytes, deps);
}

/** Copies an entry found in a farther tier into the nearer ones. */
async function refill(
  tiers: Tier[],
  key: string,
  entry: StoredEntry,
  body: ReadableStream<Uint8Array>,
  deps: Deps,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await readAll(body, deps.maxStoreBytes);
  } catch (error) {
    deps.log("refill.skipped", { key, error: describe(error) });
    return;
  }
  if (bytes.byteLength !== entry.length || (await sha256Digest(bytes)) !== entry.digest) {
    deps.log("refill.skipped", { key, reason: "digest-mismatch" });
    return;
  }
  await putEverywhere(tiers, key, entry, bytes, deps);
}

async function putEverywhere(
  tiers: Tier[],
  key: string,
  entry: StoredEntry,
  bytes: Uint8Array,
  deps: Deps,
): Promise<void> {
  const retention = entryTtl(entry, deps.now());
  if (retention <= 0) return;
  await Promise.all(
    tiers.map(async (tier) => {
      try {
        await withDeadline(tier.put(key, entry, bytes, retention), deps.tierTimeoutMs, `${tier.name} put`);
      } catch (error) {
        deps.log("tier.skipped", { tier: tier.name, op: "put", key, error: describe(error) });
      }
    }),
  );
}

/** Methods other than GET and HEAD go to the origin uncached. */
async function passThrough(
  request: Request,
  url: URL,
  site: Site,
  deps: Deps,
  timing: ServerTiming,
): Promise<Response> {
  const status = new CacheStatus();
  status.add({ cache: "Tiercel", fwd: "method" });
  let response: Response;
  try {
    response = await timing.measure("origin", () =>
      deps.originFor(site).fetch({ method: request.method, url, headers: request.headers, body: request.body }),
    );
  } catch (error) {
    throw withHeaders(error, status, timing);
  }
  status.forwarded(response.status, false);
  const headers = endToEndHeaders(response.headers);
  headers.set("cache-status", status.toString());
  headers.set("server-timing", timing.toString());
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

function withHeaders(error: unknown, status: CacheStatus, timing: ServerTiming): unknown {
  if (error instanceof TiercelError) {
    error.headers["cache-status"] = status.toString();
    error.headers["server-timing"] = timing.toString();
  }
  return error;
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

function cacheName(tier: Tier): string {
  return CACHE_NAMES[tier.name] ?? `Tiercel-${tier.name}`;
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
