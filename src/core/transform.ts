import { BUSY_RETRY_SECONDS, inputLimit, type Optimized, optimize, tooLarge, workFor } from "../optimize/optimize";
import type { StoredEntry } from "./entry";
import { TiercelError } from "./errors";
import type { Exchange } from "./exchange";
import type { CacheControl } from "./http/cache-control";
import { dropDigests } from "./http/headers";
import { isolateBudget } from "./memory-budget";
import { readAtMost, streamOf } from "./streams";

/**
 * The optimize step of a fill: between the origin's answer and the store, a response the site's options
 * apply to is buffered (within the optimizer's bounds), transformed, and its headers made to describe the
 * new bytes. Runs once per variant; hits serve the stored result.
 */
export interface Transformed {
  body: ReadableStream<Uint8Array>;
  /** The body's length when known (always, after a transform). */
  length: number | undefined;
  /** After a failed transform: the original is stored for at most this many seconds. */
  retryAfter?: number;
  /** Cache-Status detail when the original is served instead. */
  detail?: string;
  /** A format pseudo-field the stored response varies on. */
  varyField?: string;
}

/**
 * Transforms `body` in place of the origin's if the site's options (or a resize URL) apply to it;
 * undefined when they do not. `headers` are updated to match what is returned.
 */
export async function transformResponse(
  ex: Exchange,
  status: number,
  headers: Headers,
  body: ReadableStream<Uint8Array>,
  declared: number | undefined,
  cc: CacheControl,
): Promise<Transformed | undefined> {
  // Only whole, unencoded 200s: a 206 is a part, an error page is not the asset, an encoded body is opaque.
  if (status !== 200 || headers.has("content-encoding")) return undefined;
  // RFC 9111 §5.2.2.6: an intermediary must not transform a response marked no-transform.
  if (cc.noTransform) return undefined;
  const ctx = {
    site: ex.site.id,
    options: ex.site.optimize,
    accept: ex.request.headers.get("accept"),
    ...(ex.resize ? { resize: ex.resize } : {}),
    engines: ex.deps.engines,
    limits: ex.deps.optimizeLimits,
    limiter: ex.deps.transformLimiter,
  };
  const work = workFor(ctx, headers.get("content-type"));
  if (!work) return undefined;

  const limit = inputLimit(ctx, work);
  if (declared !== undefined && declared > limit) return skipTooLarge(ex, headers, body, declared);
  // The input is buffered out of the isolate's budget; with no room, the original stands in briefly (as when
  // the transforms are busy) and the transform is tried again later. Nothing waits, nothing fails.
  const grant = isolateBudget.take(declared ?? limit);
  if (!grant) {
    ex.deps.log("optimize.skipped", { reason: "memory", held: isolateBudget.held });
    headers.set("tiercel-optimize", `original, reason=memory, retry=${BUSY_RETRY_SECONDS}`);
    ex.deps.stats.optimized(ex.site.id, "failed", true);
    return { body, length: declared, detail: "optimize-memory", retryAfter: BUSY_RETRY_SECONDS };
  }
  let read: Awaited<ReturnType<typeof readAtMost>>;
  let result: Optimized;
  try {
    try {
      read = await readAtMost(body, limit);
    } catch (error) {
      throw new TiercelError("origin_bad_response", 502, "The origin's body broke off", { cause: error });
    }
    if ("over" in read) return skipTooLarge(ex, headers, read.over, declared);
    const input = read.whole;
    result = await ex.timing.measure("optimize", () =>
      optimize(ctx, work, input, headers.get("content-type") ?? "application/octet-stream"),
    );
  } finally {
    grant.release();
  }
  const whole = read.whole;
  describeResult(headers, result, whole);
  const outcome = result.retryAfter !== undefined ? "failed" : result.bytes !== whole ? "transformed" : "original";
  ex.deps.stats.optimized(ex.site.id, outcome, result.detail === "optimize-busy");
  const transformed: Transformed = { body: streamOf(result.bytes), length: result.bytes.byteLength };
  if (result.detail) transformed.detail = result.detail;
  if (result.retryAfter !== undefined) transformed.retryAfter = result.retryAfter;
  if (result.varyField) transformed.varyField = result.varyField;
  return transformed;
}

/** The body is past the optimizer's bound: served and stored as it is. */
function skipTooLarge(
  ex: Exchange,
  headers: Headers,
  body: ReadableStream<Uint8Array>,
  declared: number | undefined,
): Transformed {
  const skipped = tooLarge();
  headers.set("tiercel-optimize", skipped.note);
  ex.deps.stats.optimized(ex.site.id, "original");
  return { body, length: declared, detail: skipped.detail };
}

/** Makes the headers describe the bytes that will be served. */
function describeResult(headers: Headers, result: Optimized, original: Uint8Array): void {
  const contentTypeBefore = headers.get("content-type") ?? "";
  headers.set("tiercel-optimize", result.note);
  if (result.varyField) {
    // Downstream caches (browsers, other CDNs) must keep the formats apart too.
    const vary = headers.get("vary");
    const listed = (vary ?? "").split(",").map((name) => name.trim().toLowerCase());
    if (!listed.includes("*") && !listed.includes("accept")) headers.set("vary", vary ? `${vary}, Accept` : "Accept");
  }
  if (result.bytes === original) return;
  headers.set("content-type", result.contentType);
  headers.set("content-length", String(result.bytes.byteLength));
  dropDigests(headers);
  // Other bytes, same resource: a strong validator would claim byte-for-byte identity with the origin's
  // (RFC 9110 §8.8.1). A converted format is tagged too, so that a validator a client holds for the WebP
  // never validates the JPEG another client gets at the same URL.
  const etag = headers.get("etag");
  const converted = result.contentType !== contentTypeBefore;
  if (etag) headers.set("etag", variantEtag(etag, converted ? formatOf(result.contentType) : undefined));
}

const FORMAT_TAG = /~tc\.([a-z0-9]+)"$/;

/** The weak ETag of a transformed response: `W/"<origin's>"`, or `W/"<origin's>~tc.<format>"`. */
export function variantEtag(etag: string, format: string | undefined): string {
  const opaque = etag.replace(/^W\//, "");
  return `W/${format ? opaque.replace(/"$/, `~tc.${format}"`) : opaque}`;
}

/**
 * The validator to revalidate a stored response with at the origin: its ETag without Tiercel's format tag
 * (the origin compares If-None-Match weakly, so the weak form matches its strong tag).
 */
export function originEtag(etag: string): string {
  return etag.replace(FORMAT_TAG, '"');
}

function formatOf(contentType: string): string {
  return contentType.split(";")[0]?.trim().split("/")[1] ?? "unknown";
}

/**
 * After a 304 freshened a stored optimized response (RFC 9111 §3.2), the headers that describe the
 * transformed bytes must stay as they were: the origin's 304 speaks of the original (its Content-Type,
 * its strong ETag), not of what Tiercel stored.
 */
export function keepOptimizedHeaders(merged: Headers, stored: Headers): void {
  if (!stored.has("tiercel-optimize")) return;
  for (const name of ["content-type", "tiercel-optimize", "vary"]) {
    const value = stored.get(name);
    if (value === null) merged.delete(name);
    else merged.set(name, value);
  }
  // A 304 may bring a new origin ETag: the stored variant's validator follows it, keeping its format tag.
  const etag = merged.get("etag");
  const before = stored.get("etag");
  if (etag && before?.startsWith("W/") && etag !== before) {
    merged.set("etag", variantEtag(etag, FORMAT_TAG.exec(before)?.[1]));
  }
}

/**
 * An entry that stands in for a variant whose transform failed (`Tiercel-Optimize: …, retry=N`): when it
 * expires it is fetched again whole, never revalidated, or a 304 would make the stand-in permanent.
 */
export function isStandIn(entry: StoredEntry): boolean {
  return entry.headers.some(([name, value]) => name === "tiercel-optimize" && value.includes("retry="));
}
