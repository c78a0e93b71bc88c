import { parseCacheControl } from "./http/cache-control";
import { correctedInitialAge, currentAge, freshnessLifetime } from "./http/freshness";
import { endToEndHeaders } from "./http/headers";

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
  /** Freshness lifetime (RFC 9111 §4.2.1). */
  lifetime: number;
  etag?: string;
  lastModified?: string;
  /** Selecting request headers (lower case, sorted); empty when the response does not vary. */
  vary: string[];
  /** Cache tags from Cache-Tag / Surrogate-Key. */
  tags: string[];
  /** Body length in bytes, as stored (after any transfer decoding the runtime did). */
  length: number;
  /** RFC 9530 style digest of the stored body: `sha-256=:<base64>:`. */
  digest: string;
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
}

export function buildEntry(input: EntryInput): StoredEntry {
  const cc = parseCacheControl(input.headers.get("cache-control"));
  const stored = endToEndHeaders(input.headers, DERIVED_HEADERS);
  const entry: StoredEntry = {
    v: 1,
    status: input.status,
    headers: headerPairs(stored),
    requestTime: input.requestTime,
    responseTime: input.responseTime,
    storedAt: input.storedAt,
    initialAge: correctedInitialAge(input),
    lifetime: freshnessLifetime({ status: input.status, headers: input.headers, cc, responseTime: input.responseTime }),
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

/** Seconds of freshness left at `now`; zero or less means stale (RFC 9111 §4.2). */
export function entryTtl(entry: StoredEntry, now: number): number {
  return entry.lifetime - currentAge(entry.initialAge, entry.responseTime, now);
}

export function isFresh(entry: StoredEntry, now: number): boolean {
  return entryTtl(entry, now) > 0;
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
    [e.requestTime, e.responseTime, e.storedAt, e.initialAge, e.lifetime, e.length].every(
      (n) => typeof n === "number" && Number.isFinite(n),
    ) &&
    Array.isArray(e.vary) &&
    Array.isArray(e.tags) &&
    typeof e.digest === "string"
  );
}
