import { admittedTiers } from "./admission";
import { answerFromEntry, rangeOf, withKnownLength } from "./answer";
import { CacheStatus } from "./cache-status";
import type { Flight, Shared } from "./collapse";
import { withDeadline } from "./deadline";
import { buildEntry, entryHeaders, entryTtl, hasValidators, retentionOf, type StoredEntry } from "./entry";
import { TiercelError, withDiagnostics } from "./errors";
import { describe, type Exchange } from "./exchange";
import { forwardedHeaders } from "./forwarding";
import { parseCacheControl } from "./http/cache-control";
import { freshenHeaders, isNotModified } from "./http/conditional";
import { passOn } from "./http/content-coding";
import { decide, type OriginOutcome } from "./http/decision";
import { endToEndHeaders } from "./http/headers";
import { evaluateRange } from "./http/range";
import { whyNotShareable, withCorsOrigin } from "./http/shareable";
import { whyNotStorable } from "./http/storable";
import { consumedTargetedFields, responseDirectives } from "./http/targeted";
import { parseVary } from "./http/vary";
import { selectingValues, variantKey } from "./keys";
import { type Found, type Lookup, lookupTiers, readChecked } from "./lookup";
import { usePolicy } from "./policy";
import { ServerTiming } from "./server-timing";
import { viaShield } from "./shield-client";
import { wireLength } from "./stats";
import { invalidate, storeBody } from "./store";
import { streamOf } from "./streams";
import type { Tier } from "./tier";
import { isStandIn, keepOptimizedHeaders, originEtag, transformResponse } from "./transform";
import { admitVariant, variantId } from "./variant-cap";

/**
 * Request fields the pipeline answers itself from whole stored objects; the origin gets unconditional,
 * whole-object requests (plus Tiercel's own validators when it revalidates).
 */
export const ANSWERED_BY_TIERCEL = [
  "range",
  "if-range",
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
];

/**
 * Goes to the origin for a GET that no tier could answer fresh: joins a fetch already in flight for the
 * same key in this isolate (collapsing), or leads one.
 */
export async function fromOrigin(ex: Exchange, look: Lookup): Promise<Response> {
  const answer = await fillOrJoin(ex, look);
  try {
    // An answer of unknown length is read whole before its head leaves (answer.ts), so one whose body
    // breaks off becomes an error answer here, or stale where stale-if-error or grace allow.
    return await withKnownLength(answer, ex.site.cache.collectUnknownLength);
  } catch (error) {
    return afterBrokenBody(ex, look, error);
  }
}

async function fillOrJoin(ex: Exchange, look: Lookup): Promise<Response> {
  // A cold object is fetched by the shield, once for every data center and isolate. Every request for it
  // asks the shield itself rather than wait on a leader in this isolate: the shield streams its fill to each
  // as the bytes arrive, where collapsing here would hand waiters a body only once it is whole.
  const shielded = await viaShield(ex, look, undefined);
  if (shielded) return shielded;
  // No shield (none bound, turned off, unreachable, hit-for-pass, sent away): from here, collapsed here.
  const { collapser } = ex.deps;
  const inFlight = collapser.waitFor(ex.baseKey);
  if (inFlight) {
    const answered = await answerFromShared(ex, await inFlight, look);
    if (answered) return answered;
    // Nothing to share (uncacheable, private, failed, streamed): this request goes on its own.
    return fetchAndStore(ex, look, undefined);
  }
  const flight = collapser.begin(ex.baseKey);
  try {
    return await fetchAndStore(ex, look, flight);
  } catch (error) {
    flight.settle({ kind: "none" });
    throw error;
  }
}

/**
 * Stale-while-revalidate (RFC 5861 §3): refreshes a stale entry in the background, once per key in this
 * isolate, re-reading its body from the tier it came from in case the origin answers 304.
 */
export async function refreshInBackground(ex: Exchange, stale: Found): Promise<void> {
  const { deps } = ex;
  if (deps.collapser.waitFor(ex.baseKey)) return;
  const flight = deps.collapser.begin(ex.baseKey);
  try {
    const tier = deps.tiers[stale.tier];
    const again = tier ? await readChecked(tier, stale.key, deps) : null;
    const look: Lookup = again
      ? {
          stale: { ...again, tier: stale.tier, key: stale.key, member: { cache: "background" }, index: stale.index },
          index: stale.index,
        }
      : { index: stale.index };
    const background: Exchange = { ...ex, status: new CacheStatus(), timing: new ServerTiming(deps.now) };
    const response = await fetchAndStore(background, look, flight);
    await response.body?.cancel();
  } catch (error) {
    flight.settle({ kind: "none" });
    deps.log("refresh.failed", { key: ex.baseKey, error: describe(error) });
  }
}

async function fetchAndStore(ex: Exchange, look: Lookup, flight: Flight | undefined): Promise<Response> {
  const { request, deps, site, status, timing } = ex;
  const settle = (outcome: Shared) => flight?.settle(outcome);
  const stale = look.stale;

  // Only the site's allow-list, the known selecting fields and credentials reach the origin (forwarding.ts);
  // a variant stored from the answer is keyed by what was sent.
  const selecting = [...(look.index?.fields ?? []), ...(stale?.entry.vary ?? [])];
  const { keying, upstream: headers } = forwardedHeaders(request.headers, site.cache.requestHeaders, selecting);
  for (const name of ANSWERED_BY_TIERCEL) headers.delete(name);
  // RFC 9111 §4.3.1: revalidate a stored response with its validators (not a failed transform's stand-in).
  const revalidating = stale && !isStandIn(stale.entry) ? stale : undefined;
  if (revalidating?.entry.etag) headers.set("if-none-match", originEtag(revalidating.entry.etag));
  if (revalidating?.entry.lastModified) headers.set("if-modified-since", revalidating.entry.lastModified);
  const conditional = revalidating !== undefined && hasValidators(revalidating.entry);

  const requestTime = deps.now();
  deps.stats.originFetch(site.id);
  let response: Response;
  try {
    response = await timing.measure("origin", () =>
      deps.originFor(site).fetch({ method: "GET", url: ex.url, headers, body: null }),
    );
  } catch (error) {
    settle({ kind: "none" });
    const failed = error instanceof TiercelError ? error.status : 502;
    // An unreachable origin (refused, reset, timed out) may be covered by grace as well as stale-if-error; a
    // refused config (auth, forbidden address) is not an outage (http/decision.ts).
    const decision = afterOrigin(ex, stale, { kind: "failed", unreachable: cannotReach(error) });
    if (stale && decision.action === "serve-stale") return serveStaleOnError(ex, stale, failed, decision.reason);
    await stale?.body.cancel();
    const code = error instanceof TiercelError ? error.code : "origin_error";
    status.add({ cache: "Tiercel", fwd: "miss", detail: code });
    throw withDiagnostics(error, ex.status, ex.timing);
  }
  const responseTime = deps.now();
  deps.stats.originBytes(site.id, wireLength(response));

  // RFC 5861 §4: a 5xx from the origin may be answered with a stale response within stale-if-error.
  if (response.status >= 500 && stale) {
    const decision = afterOrigin(ex, stale, { kind: "answered", status: response.status });
    if (decision.action === "serve-stale") {
      await response.body?.cancel();
      settle({ kind: "none" });
      return serveStaleOnError(ex, stale, response.status, decision.reason);
    }
  }

  if (response.status === 304) {
    if (!conditional || !stale) {
      // A 304 to a request that carried no validator cannot be used (RFC 9110 §15.4.5).
      await response.body?.cancel();
      await stale?.body.cancel();
      settle({ kind: "none" });
      throw withDiagnostics(
        new TiercelError("origin_bad_response", 502, "The origin answered 304 to a request without validators"),
        ex.status,
        ex.timing,
      );
    }
    await response.body?.cancel();
    return refreshFromNotModified(ex, look, stale, response.headers, keying, requestTime, responseTime, flight);
  }

  await stale?.body.cancel();
  return storeAndAnswer(ex, look, response, keying, requestTime, responseTime, flight);
}

/** A full response from the origin: stored if it may be, and answered while it streams. */
async function storeAndAnswer(
  ex: Exchange,
  look: Lookup,
  response: Response,
  keying: Headers,
  requestTime: number,
  responseTime: number,
  flight: Flight | undefined,
): Promise<Response> {
  const { request, deps, site, status, timing } = ex;
  const headers = endToEndHeaders(response.headers);
  // The site may opt in to storing responses that set cookies, without the cookie (for every client).
  if (site.cache.stripSetCookie) headers.delete("set-cookie");
  // Tiercel's own directives: a targeted field's (RFC 9213) or Cache-Control's; no-transform is read from
  // Cache-Control too, since clients get that field and transforming against it would break it for them.
  const responseCc = responseDirectives(headers, site.cache.targetedFields);
  const clientCc = parseCacheControl(headers.get("cache-control"));
  const vary = parseVary(headers.get("vary"));
  // An answer that allows one origin by name is keyed by the request's Origin, as if it said Vary: Origin.
  let fields = vary === "*" ? [] : withCorsOrigin(vary, headers);
  if (vary !== "*" && fields.length > vary.length) headers.append("vary", "Origin");
  const reason =
    whyNotStorable({
      method: "GET",
      requestHeaders: request.headers,
      requestCc: parseCacheControl(request.headers.get("cache-control")),
      status: response.status,
      responseHeaders: headers,
      responseCc,
      vary,
    }) ??
    whyNotShareable({
      requestHeaders: keying,
      url: ex.url,
      siteHosts: site.hosts,
      status: response.status,
      responseHeaders: headers,
      responseCc,
      vary: fields,
      cookies: site.cache.cookies,
    });
  let use = usePolicy({ status: response.status, headers, cc: responseCc, responseTime }, site.cache);
  const entryFor = (fields: string[], length: number | undefined) =>
    buildEntry({
      status: response.status,
      headers,
      requestTime,
      responseTime,
      storedAt: responseTime,
      vary: fields,
      length: length ?? -1,
      digest: "",
      use,
    });
  let declared = declaredLength(headers);
  let entry = entryFor(fields, declared);

  // Worth storing: allowed, and useful for some time — fresh, within a stale window, or revalidatable.
  const useless = use.noCache && !hasValidators(entry);
  // The origins decode gzip and deflate; a body still labelled with a coding is one Tiercel cannot decode
  // (br, compress, zstd, several codings): the tiers hold identity bodies only, so it passes unstored.
  const coded = headers.has("content-encoding") ? "content-coding" : undefined;
  // Grace alone does not make a response worth storing: one already stale on arrival (max-age=0) would
  // cost a tier write on every request for an answer used only in an outage.
  const stale = retentionOf({ ...entry, grace: 0 }, responseTime) <= 0;
  const notStored = reason ?? coded ?? (useless ? "no-cache" : stale ? "stale" : undefined);
  if (notStored) {
    flight?.settle({ kind: "none" });
    status.forwarded(response.status, "none", `not-stored-${notStored}`);
    for (const name of consumedTargetedFields(site.cache.targetedFields)) headers.delete(name);
    headers.set("cache-status", status.toString());
    headers.set("server-timing", timing.toString());
    return passOn(response.body, { status: response.status, statusText: response.statusText, headers });
  }

  // The site's optimizations (or a resize URL) replace the body, once, before it is stored.
  // A null body (204, 205, or an origin that sent none) is stored as an empty one, in every tier.
  let body = response.body ?? streamOf(new Uint8Array(0));
  let optimizeDetail: string | undefined;
  const transformed = await transformResponse(ex, response.status, headers, body, declared, {
    ...clientCc,
    noTransform: clientCc.noTransform || responseCc.noTransform,
  });
  if (transformed) {
    body = transformed.body;
    declared = transformed.length;
    optimizeDetail = transformed.detail;
    if (transformed.varyField) fields = [...fields, transformed.varyField].sort();
    if (transformed.retryAfter !== undefined) {
      // The transform failed: the original stands in for the variant briefly, then it is tried again.
      use = { ...use, lifetime: Math.min(use.lifetime, transformed.retryAfter), swr: 0, sie: 0, grace: 0 };
    }
    entry = entryFor(fields, declared);
  }

  const sameIndex = look.index && sameFields(look.index.fields, fields) ? look.index : undefined;
  let index = fields.length > 0 ? (sameIndex ?? { fields, nonce: crypto.randomUUID() }) : undefined;
  const key = index ? await variantKey(ex.baseKey, fields, index.nonce, keying) : ex.baseKey;
  const values = JSON.stringify(selectingValues(fields, keying));
  if (index) {
    // One URL holds at most the site's maxVariants variants; past it, new ones pass through unstored.
    const id = await variantId(values);
    const admitted = admitVariant(ex.baseKey, index, id, site.cache.maxVariants);
    if (!admitted) {
      flight?.settle({ kind: "none" });
      status.forwarded(response.status, "none", "not-stored-variants");
      return answerFromEntry(entry, body, answerContext(ex));
    }
    index = admitted;
  }
  // The site's admission policy for the global tier (admission.ts). In a data center the edge tier always
  // takes the fill; in the shield, whose tiers are global only, a fill not admitted is stored nowhere.
  const tiers = admittedTiers(ex, deps.tiers, declared);
  const { client, outcome, settled, storing, skipped } = storeBody(
    ex,
    { key, entry, declaredLength: declared, verify: false, tiers, index, values },
    body,
  );
  void settled.then((shared) => flight?.settle(shared));
  deps.waitUntil(outcome);
  const stored = storing && tiers.length > 0;
  ex.onShareable?.({ target: { key, entry, declaredLength: declared, index, values }, outcome, storing: stored });
  const unstored = tiers.length === 0 ? "not-admitted" : `not-stored-${skipped ?? "too-large"}`;
  status.forwarded(response.status, stored ? "storing" : "none", stored ? optimizeDetail : unstored);
  return answerFromEntry(entry, client, answerContext(ex));
}

/** RFC 9111 §4.3.4: a 304 freshens the stored headers and times; the body stays, in every tier. */
async function refreshFromNotModified(
  ex: Exchange,
  look: Lookup,
  stale: Found,
  notModified: Headers,
  keying: Headers,
  requestTime: number,
  responseTime: number,
  flight: Flight | undefined,
): Promise<Response> {
  const { deps, site, status } = ex;
  const stored = entryHeaders(stale.entry);
  const headers = freshenHeaders(stored, notModified);
  keepOptimizedHeaders(headers, stored);
  if (site.cache.stripSetCookie) headers.delete("set-cookie");
  const cc = responseDirectives(headers, site.cache.targetedFields);
  const use = usePolicy({ status: stale.entry.status, headers, cc, responseTime }, site.cache);
  // The 304 may have made the response unstorable (no-store, private, Set-Cookie): then the stored entry
  // goes, and this answer is the last one it gives.
  const reason =
    whyNotStorable({
      method: "GET",
      requestHeaders: ex.request.headers,
      requestCc: parseCacheControl(ex.request.headers.get("cache-control")),
      status: stale.entry.status,
      responseHeaders: headers,
      responseCc: cc,
      vary: stale.entry.vary,
    }) ??
    whyNotShareable({
      requestHeaders: keying,
      url: ex.url,
      siteHosts: site.hosts,
      status: stale.entry.status,
      responseHeaders: headers,
      responseCc: cc,
      vary: stale.entry.vary,
      cookies: site.cache.cookies,
    });
  // The merged headers carry the 304's Date and Age, from which the refreshed age is computed (§4.2.3).
  const entry = buildEntry({
    status: stale.entry.status,
    headers,
    requestTime,
    responseTime,
    storedAt: responseTime,
    vary: stale.entry.vary,
    length: stale.entry.length,
    digest: stale.entry.digest,
    use,
  });
  if (reason) {
    flight?.settle({ kind: "none" });
    await invalidate(ex, [stale.key]);
    stale.member.fwd = "stale";
    status.forwarded(304, "none", `not-stored-${reason}`);
    return answerFromEntry(entry, stale.body, answerContext(ex));
  }
  // A tier that can rewrite a record alone (the global tier: KV's one write per second per key, chunks and
  // R2 bodies left where they are) gets the freshened record only; the others are written the body again.
  const refreshable = deps.tiers.filter((tier) => tier.refresh);
  if (refreshable.length > 0) deps.waitUntil(refreshRecords(ex, refreshable, stale.key, entry));
  const { client, outcome, settled } = storeBody(
    ex,
    {
      key: stale.key,
      entry,
      declaredLength: stale.entry.length,
      verify: entry.digest !== "",
      tiers: deps.tiers.filter((tier) => !tier.refresh),
      index: look.index,
      values: JSON.stringify(selectingValues(stale.entry.vary, keying)),
    },
    stale.body,
  );
  void settled.then((shared) => flight?.settle(shared));
  deps.waitUntil(outcome);
  stale.member.fwd = "stale";
  status.forwarded(304, "storing");
  return answerFromEntry(entry, client, answerContext(ex));
}

/** Rewrites the record of `key` in each tier (after a 304); a tier without that entry is left as it is. */
async function refreshRecords(ex: Exchange, tiers: Tier[], key: string, entry: StoredEntry): Promise<void> {
  const { deps } = ex;
  const retention = retentionOf(entry, deps.now());
  if (retention <= 0) return;
  await Promise.all(
    tiers.map(async (tier) => {
      try {
        const done = await withDeadline(
          tier.refresh?.(key, entry, retention) ?? Promise.resolve(false),
          deps.tierTimeoutMs,
          `${tier.name} refresh`,
        );
        if (!done) deps.log("tier.skipped", { tier: tier.name, op: "refresh", key, reason: "no-such-entry" });
      } catch (error) {
        deps.log("tier.skipped", { tier: tier.name, op: "refresh", key, error: describe(error) });
      }
    }),
  );
}

/**
 * The origin failed; a stale response is served instead: within stale-if-error (RFC 5861 §4), or within
 * grace when the origin could not be reached (RFC 9111 §4.2.4). `detail` says which.
 */
function serveStaleOnError(
  ex: Exchange,
  stale: Found,
  failedStatus: number,
  detail: "stale-if-error" | "origin-unreachable",
): Response | Promise<Response> {
  stale.member.fwd = "stale";
  ex.status.forwarded(failedStatus, "none", detail);
  return answerFromEntry(stale.entry, stale.body, answerContext(ex));
}

/**
 * The origin's body broke off before the head was sent (nothing of it reached the client, nothing was
 * stored): the stale entry answers if stale-if-error or grace allow (re-read from its tier: the fill's
 * store failed, so it is still there), else the failure is the answer.
 */
async function afterBrokenBody(ex: Exchange, look: Lookup, error: unknown): Promise<Response> {
  const known = error instanceof TiercelError ? error : undefined;
  const stale = look.stale;
  if (stale) {
    const decision = afterOrigin(ex, stale, { kind: "failed", unreachable: cannotReach(error) });
    const tier = ex.deps.tiers[stale.tier];
    // A tier that does not answer in time is skipped, as on any lookup: the failure is the answer then.
    const again =
      decision.action === "serve-stale" && tier
        ? await withDeadline(readChecked(tier, stale.key, ex.deps), ex.deps.tierTimeoutMs, `${tier.name} get`).catch(
            () => null,
          )
        : null;
    if (again && decision.action === "serve-stale") {
      ex.status.failed(decision.reason);
      return serveStaleOnError(ex, { ...stale, ...again }, known?.status ?? 502, decision.reason);
    }
  }
  ex.status.failed(known?.code ?? "origin_bad_response");
  throw withDiagnostics(error, ex.status, ex.timing);
}

/** Failures that mean the origin could not be reached: refused or reset connections, no answer in time. */
const UNREACHABLE = new Set(["origin_unreachable", "origin_timeout", "origin_bad_response"]);

/** What the decision function makes of an origin that failed or answered an error, given the stale entry. */
function afterOrigin(ex: Exchange, stale: Found | undefined, origin: OriginOutcome) {
  if (!stale) return decide({ request: ex.request, policy: ex.site.cache, now: ex.deps.now(), origin });
  const purge = stale.softPurgedAt === undefined ? "none" : "soft";
  const stored = { record: stale.entry, purge, softPurgedAt: stale.softPurgedAt } as const;
  return decide({ request: ex.request, stored, policy: ex.site.cache, now: ex.deps.now(), origin });
}

function cannotReach(error: unknown): boolean {
  return error instanceof TiercelError && UNREACHABLE.has(error.code);
}

/** What a collapsed waiter does with the leader's outcome; null when it must go to the origin itself. */
async function answerFromShared(ex: Exchange, shared: Shared, look: Lookup): Promise<Response | null> {
  if (shared.kind === "streaming") return joinFill(ex, shared, look);
  if (shared.kind === "entry") {
    const values = JSON.stringify(selectingValues(shared.entry.vary, ex.request.headers));
    if (values !== shared.values) return null;
    await look.stale?.body.cancel();
    collapsed(ex, shared.entry.status);
    return answerFromEntry(shared.entry, streamOf(shared.bytes), answerContext(ex));
  }
  return null;
}

/** The most bytes a request joining a large fill takes from it as they arrive (out of the isolate budget). */
export const JOIN_MAX_BYTES = 8 * 1024 * 1024;
/** The longest a request that joined a large fill waits for it to be stored before it goes itself. */
export const JOIN_WAIT_MS = 60_000;

/**
 * A request for an object whose large body is streaming to the tiers in this isolate (a cold object a
 * video player asks for range after range): it causes no download of its own.
 *
 * - What it needs lies ahead of what has arrived (and is at most `JOIN_MAX_BYTES`, within the budget): it is
 *   answered from the fill as those bytes arrive.
 * - Otherwise (its bytes went by already, or it wants more than that): it waits for the store, then reads
 *   the tiers as any hit does (a ranged read for a range). A store that fails, or takes longer than
 *   `JOIN_WAIT_MS`, sends it to the origin itself.
 */
async function joinFill(
  ex: Exchange,
  shared: Extract<Shared, { kind: "streaming" }>,
  look: Lookup,
): Promise<Response | null> {
  const { entry, tap } = shared;
  const values = JSON.stringify(selectingValues(entry.vary, ex.request.headers));
  if (values !== shared.values) return null;
  const wanted = bytesWanted(entry, ex.request.headers);
  const body =
    wanted === undefined
      ? streamOf(new Uint8Array(0))
      : wanted.end - wanted.start + 1 <= JOIN_MAX_BYTES
        ? tap.subscribe(wanted.start, wanted.end)
        : undefined;
  if (body) {
    await look.stale?.body.cancel();
    // The fill's store is under way, not done: said as `storing`, never `stored`.
    ex.status.forwarded(entry.status, "storing");
    ex.status.add({ cache: "Tiercel", fwd: "miss", fwdStatus: entry.status, collapsed: true, detail: "joined-fill" });
    const range = wanted?.ranged ? { start: wanted.start, end: wanted.end } : undefined;
    return answerFromEntry(entry, body, answerContext(ex), range);
  }
  const stored = await ex.timing
    .measure("join", () => withDeadline(shared.stored, JOIN_WAIT_MS, "joined fill"))
    .catch(() => false);
  if (!stored) return null;
  // Read again, as a hit: the statuses of the first lookup (misses) give way to this one's.
  ex.status = new CacheStatus();
  const again = await lookupTiers(ex);
  const found = again.fresh;
  if (!found) {
    await again.stale?.body.cancel();
    return null;
  }
  await look.stale?.body.cancel();
  found.member.hit = true;
  found.member.ttl = entryTtl(found.entry, ex.deps.now());
  found.member.detail = "joined-fill";
  const read = found.range ? found.range.end - found.range.start + 1 : found.entry.length;
  ex.deps.stats.record(ex.site.id, { hit: ex.deps.tiers[found.tier]?.name ?? "tier" }, read);
  return answerFromEntry(found.entry, found.body, answerContext(ex), found.range);
}

/**
 * The bytes of a stored body an answer from `entry` sends: its range (`ranged`), or all of it; undefined
 * when it sends none (304, 416).
 */
function bytesWanted(
  entry: StoredEntry,
  headers: Headers,
): { start: number; end: number; ranged: boolean } | undefined {
  const validators = { etag: entry.etag, lastModified: entry.lastModified };
  if (entry.status >= 200 && entry.status < 300 && isNotModified(headers, validators)) return undefined;
  const range = rangeOf(entry, headers);
  if (range) return { ...range, ranged: true };
  const rangeable = rangeOf(entry, new Headers({ range: "bytes=0-" })) !== undefined;
  const decision = rangeable ? evaluateRange(headers, entry.length, validators) : { kind: "full" };
  if (decision.kind === "unsatisfiable" || entry.length <= 0) return undefined;
  return { start: 0, end: entry.length - 1, ranged: false };
}

function collapsed(ex: Exchange, status: number): void {
  // The leader's entry is in a tier already: this store did happen.
  ex.status.forwarded(status, "stored");
  ex.status.add({ cache: "Tiercel", fwd: "miss", fwdStatus: status, collapsed: true });
}

export function answerContext(ex: Exchange) {
  return {
    method: ex.request.method,
    requestHeaders: ex.request.headers,
    now: ex.deps.now(),
    status: ex.status,
    timing: ex.timing,
    policy: ex.site.cache,
    ...(ex.answerReadHere ? { readHere: true } : {}),
  };
}

/** The body length a response declared, when the stored bytes will have it (no content coding). */
function declaredLength(headers: Headers): number | undefined {
  const value = headers.get("content-length");
  if (value === null || headers.has("content-encoding") || !/^[0-9]{1,15}$/.test(value.trim())) return undefined;
  return Number(value);
}

function sameFields(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((field, i) => field === b[i]);
}
