/**
 * Cache keys. A key is the SHA-256 of a fixed-order tuple serialized as JSON, so no choice of site id,
 * path or query can make two different requests share a key (no delimiters to smuggle), and nothing a
 * client sends besides the URL takes part. The tuple starts with a format tag, so a change of key format
 * can never read entries written by an older one.
 */
export interface CacheKeyParts {
  /** The site's unique id (never its host: a site may have several hosts, and hosts move). */
  siteId: string;
  /** The site's purge generation: bumping it makes every earlier entry unreachable. */
  generation?: number;
  /** Digest of the site options that change the bytes served ("" when none is on). */
  variant?: string;
  /** The request path as the runtime parsed it (percent-encoding kept as received). */
  path: string;
  /**
   * The query string after the site's query policy (`keyedQuery`), `?` included, or "" when none is left.
   * The kept parameters keep their order (unless the policy sorts) and their encoding.
   */
  query: string;
  /** For a resize URL: its options in canonical form (the path is then the source image's). */
  transform?: string;
}

import { formatFieldValue, isFormatField } from "../optimize/negotiate";
import { OPTIMIZER_VERSION } from "../optimize/types";
import type { OptimizeOptions, QueryPolicy } from "../sites/schema";

const KEY_FORMAT = "tiercel/key/2";

export async function cacheKey(parts: CacheKeyParts): Promise<string> {
  const tuple = [KEY_FORMAT, parts.siteId, parts.generation ?? 0, parts.variant ?? "", parts.path, parts.query];
  // Only resize URLs carry a transform, so adding it left every other key as it was.
  if (parts.transform !== undefined) tuple.push(parts.transform);
  const serialized = JSON.stringify(tuple);
  // Hot objects are asked for again and again: each tuple is hashed once per isolate (bounded memory).
  const known = recentKeys.get(serialized);
  if (known !== undefined) return known;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(serialized));
  const key = toHex(new Uint8Array(digest));
  if (serialized.length <= MAX_REMEMBERED_TUPLE) {
    if (recentKeys.size >= MAX_RECENT_KEYS) recentKeys.clear();
    recentKeys.set(serialized, key);
  }
  return key;
}

/**
 * Keys computed lately, by their serialized tuple; emptied when full (a hash is cheap to redo). Only tuples up to
 * 512 characters are kept, so the map holds at most ~2.4 MB whatever URLs clients send.
 */
const recentKeys = new Map<string, string>();
const MAX_RECENT_KEYS = 4096;
const MAX_REMEMBERED_TUPLE = 512;

/** What `keyPartsFor` reads of a site. */
export interface KeyedSite {
  id: string;
  generation: number;
  optimize: OptimizeOptions;
  origin: { kind: "http" | "s3" };
  cache: { query?: QueryPolicy | undefined };
}

export function keyPartsFor(site: KeyedSite, url: URL, transform?: string): CacheKeyParts {
  const parts: CacheKeyParts = {
    siteId: site.id,
    generation: site.generation,
    variant: variantOf(site.optimize),
    path: url.pathname,
    query: keyedQuery(url.search, queryPolicyOf(site)),
  };
  if (transform !== undefined) parts.transform = transform;
  return parts;
}

/**
 * The site's query policy: its `cache.query`, else `none` for a bucket (which never receives a query, so
 * `?r=<random>` cannot make new keys) and `all` for an http backend (whose answer may depend on any of it).
 */
export function queryPolicyOf(site: Pick<KeyedSite, "origin" | "cache">): QueryPolicy {
  return site.cache.query ?? (site.origin.kind === "s3" ? "none" : "all");
}

/**
 * The query that takes part in the key, and the one the origin receives (the same string, so the two can
 * never disagree): all of it as received, none, or the allow-listed parameters. Names are compared after
 * decoding (`+` as space, as forms encode it), exactly and case-sensitively; each kept parameter keeps its
 * original encoding and, unless the policy sorts, its place. Sorting is by decoded name and stable, so
 * repeated names keep their relative order (which can matter to the origin).
 */
export function keyedQuery(search: string, policy: QueryPolicy): string {
  if (policy === "all") return search;
  if (policy === "none") return "";
  const allowed = new Set(policy.allow);
  const kept = search
    .replace(/^\?/, "")
    .split("&")
    .filter((pair) => pair !== "")
    .map((pair) => ({ pair, name: decodeName(pair.split("=")[0] ?? "") }))
    .filter(({ name }) => allowed.has(name));
  if (policy.sort) kept.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return kept.length > 0 ? `?${kept.map(({ pair }) => pair).join("&")}` : "";
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    return raw;
  }
}

/**
 * The URL with its query reduced to the keyed one: what the origin is asked for. The same URL when the query is
 * kept as it is (no copy on the hot path); callers never modify it.
 */
export function keyedUrl(site: Pick<KeyedSite, "origin" | "cache">, url: URL): URL {
  const search = keyedQuery(url.search, queryPolicyOf(site));
  if (search === url.search) return url;
  const keyed = new URL(url);
  keyed.search = search;
  return keyed;
}

/** Site configs are parsed once and reused, so the variant is computed once per config, not per request. */
const variants = new WeakMap<OptimizeOptions, string>();

function variantOf(options: OptimizeOptions): string {
  let variant = variants.get(options);
  if (variant === undefined) {
    variant = optionsVariant(options);
    variants.set(options, variant);
  }
  return variant;
}

/**
 * The part of the key that stands for the options that change the bytes of every response: "" when they
 * are all off (so turning nothing on changes no key), else their normalized JSON. Changing such an option
 * moves every object of the site to a new key (a fresh variant, no purge needed); options that do not
 * change the bytes (TTLs, bypass rules, the resize allow-lists, which only gate resize URLs whose own
 * options are in their keys) are not in it, so changing them keeps every hit.
 */
export function optionsVariant(options: OptimizeOptions): string {
  const images = options.polish !== "off" || options.formats.length > 0;
  const minify = options.minify.html || options.minify.css || options.minify.js;
  if (!images && !minify) return "";
  return JSON.stringify({
    optimizer: OPTIMIZER_VERSION,
    polish: options.polish,
    quality: options.quality,
    formats: [...options.formats].sort(),
    minify: { html: options.minify.html, css: options.minify.css, js: options.minify.js },
    engine: options.engine,
  });
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

const VARIANT_FORMAT = "tiercel/variant/1";

/**
 * The key of one variant of a response that varies (RFC 9111 §4.1): the base key, the index's nonce,
 * and each selecting field with the request's normalized value (absent stays distinct from empty).
 */
export async function variantKey(baseKey: string, fields: string[], nonce: string, request: Headers): Promise<string> {
  const tuple = [VARIANT_FORMAT, baseKey, nonce, selectingValues(fields, request)];
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(tuple)));
  return toHex(new Uint8Array(digest));
}

/**
 * The normalized values of the selecting fields (RFC 9111 §4.1: "normalizing both header values in a way
 * that is known to have identical semantics"): whitespace around list members and runs of whitespace do not
 * matter; case and order do (they can matter to the origin).
 */
export function selectingValues(fields: string[], request: Headers): [string, string | null][] {
  return fields.map((field) => {
    // An image format negotiated by Tiercel: the value is the format chosen, never the raw Accept.
    if (isFormatField(field)) return [field, formatFieldValue(field, request.get("accept"))];
    const value = request.get(field);
    if (value === null) return [field, null];
    const normalized = value
      .split(",")
      .map((member) => member.trim().replace(/\s+/g, " "))
      .join(",");
    return [field, normalized];
  });
}
