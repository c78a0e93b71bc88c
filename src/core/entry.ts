import { ttlOf } from "./http/decision";
import { correctedInitialAge, currentAge } from "./http/freshness";
import { endToEndHeaders } from "./http/headers";
import { REVALIDATION_KEEP, type UsePolicy } from "./policy";

/**
 * The stored-entry record: one format for every tier, so tier 2 can refill tier 1 without the origin.
 * Instants are epoch milliseconds; ages and lifetimes are seconds.
 */
export interface StoredEntry {
  /** Record format version. */
  v: 1;
  status: number;
  /** Response headers as stored: end-to-end only, without Age or Content-Length (both derived). */
  headers: [string, string][];
  /** When the origin request was sent. */
  requestTime: number;
  /** When the origin's response headers arrived. */
  responseTime: number;
  /** When the entry was written. */
  storedAt: number;
  /** Corrected initial age (RFC 9111 §4.2.3) at responseTime. */
  initialAge: number;
  /** Freshness lifetime (RFC 9111 §4.2.1, or the site's override). */
  lifetime: number;
  /** stale-while-revalidate window (RFC 5861 §3). */
  swr: number;
  /** stale-if-error window (RFC 5861 §4). */
  sie: number;
  /** must-revalidate / proxy-revalidate: never served stale. */
  mustRevalidate: boolean;
  /** no-cache: validated before every use. */
  noCache: boolean;
  /**
   * Grace in seconds (the site's `cache.grace` when it was stored, 0 when a directive forbids serving it
   * stale): how long past expiry it may answer when the origin cannot be reached. Absent in records
   * written before grace existed, which then get none.
   */
  grace?: number;
  etag?: string;
  lastModified?: string;
  /** Selecting request headers (lower case, sorted); empty when the response does not vary. */
  vary: string[];
  /** Cache tags from Cache-Tag / Surrogate-Key. */
  tags: string[];
  /** Body length in bytes, as stored (after any transfer decoding the runtime did). */
  length: number;
  /** RFC 9530 style digest of the stored body, `sha-256=:<base64>:`; "" when the body was streamed. */
  digest: string;
  /**
   * Present on a variant index: the response at this key varies, and the variant for a request is stored
   * under `variantKey(key, fields, nonce, request)`. An index has no body. A new nonce (after an
   * invalidation) orphans every variant stored under the old one.
   */
  variants?: VariantIndex;
  /**
   * Where the body is when it is not stored with the record: "r2" in a KV record whose body is in the R2
   * bucket (tiers/global.ts). Never seen above the tiers.
   */
  at?: "r2";
}

/** The variant index stored at the base key of a response that varies. */
export interface VariantIndex {
  fields: string[];
  nonce: string;
  /** Short ids of the variants stored under this nonce, for the site's `maxVariants` cap. */
  seen?: string[];
}

/** Headers never stored: Age is recomputed on every answer, Content-Length from the stored body. */
const DERIVED_HEADERS = ["age", "content-length"];

export interface EntryInput {
  status: number;
  headers: Headers;
  requestTime: number;
  responseTime: number;
  storedAt: number;
  vary: string[];
  length: number;
  digest: string;
  use: UsePolicy;
}

export function buildEntry(input: EntryInput): StoredEntry {
  const stored = endToEndHeaders(input.headers, DERIVED_HEADERS);
  const entry: StoredEntry = {
    v: 1,
    status: input.status,
    headers: headerPairs(stored),
    requestTime: input.requestTime,
    responseTime: input.responseTime,
    storedAt: input.storedAt,
    initialAge: correctedInitialAge(input),
    lifetime: input.use.lifetime,
    swr: input.use.swr,
    sie: input.use.sie,
    mustRevalidate: input.use.mustRevalidate,
    noCache: input.use.noCache,
    grace: input.use.grace,
    vary: input.vary,
    tags: parseTags(input.headers),
    length: input.length,
    digest: input.digest,
  };
  const etag = input.headers.get("etag");
  if (etag) entry.etag = etag;
  const lastModified = input.headers.get("last-modified");
  if (lastModified) entry.lastModified = lastModified;
  return entry;
}

/** Age in whole seconds at `now` (RFC 9111 §5.1 sends integers). */
export function entryAge(entry: StoredEntry, now: number): number {
  return Math.floor(currentAge(entry.initialAge, entry.responseTime, now));
}

/** Seconds of freshness left at `now`; zero or less means stale (RFC 9111 §4.2; see http/decision.ts). */
export function entryTtl(entry: StoredEntry, now: number): number {
  return ttlOf(entry, now);
}

export function hasValidators(entry: StoredEntry): boolean {
  return entry.etag !== undefined || entry.lastModified !== undefined;
}

/**
 * How long a tier should keep an entry, in seconds: its remaining freshness plus the longest time it can
 * still be useful stale — served within a stale window, or revalidated if it has validators.
 */
export function retentionOf(entry: StoredEntry, now: number): number {
  const useful = Math.max(
    entry.swr,
    entry.sie,
    entry.grace ?? 0,
    hasValidators(entry) && !entry.variants ? REVALIDATION_KEEP : 0,
  );
  return entryTtl(entry, now) + useful;
}

export function entryHeaders(entry: StoredEntry): Headers {
  const headers = new Headers();
  for (const [name, value] of entry.headers) headers.append(name, value);
  return headers;
}

function headerPairs(headers: Headers): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [name, value] of headers) {
    if (name !== "set-cookie") pairs.push([name, value]);
  }
  for (const cookie of headers.getSetCookie()) pairs.push(["set-cookie", cookie]);
  return pairs;
}

/** Tags from `Cache-Tag` (comma separated) and `Surrogate-Key` (space separated), de-duplicated. */
function parseTags(headers: Headers): string[] {
  const tags = new Set<string>();
  for (const tag of (headers.get("cache-tag") ?? "").split(",")) if (tag.trim()) tags.add(tag.trim());
  for (const tag of (headers.get("surrogate-key") ?? "").split(/\s+/)) if (tag) tags.add(tag);
  return [...tags];
}

/**
 * Checks that a value read back from a tier is a record this code can use. Tiers hold data written by
 * other versions or corrupted in transit; anything that does not check out is a miss, never a crash.
 */
export function isStoredEntry(value: unknown): value is StoredEntry {
  if (typeof value !== "object" || value === null) return false;
  const e = value as Record<string, unknown>;
  return (
    e.v === 1 &&
    Number.isInteger(e.status) &&
    Array.isArray(e.headers) &&
    e.headers.every(
      (h) => Array.isArray(h) && h.length === 2 && typeof h[0] === "string" && typeof h[1] === "string",
    ) &&
    typeof e.mustRevalidate === "boolean" &&
    typeof e.noCache === "boolean" &&
    [e.requestTime, e.responseTime, e.storedAt, e.initialAge, e.lifetime, e.swr, e.sie, e.length].every(
      (n) => typeof n === "number" && Number.isFinite(n),
    ) &&
    (e.grace === undefined || (typeof e.grace === "number" && Number.isFinite(e.grace))) &&
    Array.isArray(e.vary) &&
    Array.isArray(e.tags) &&
    typeof e.digest === "string"
  );
}
