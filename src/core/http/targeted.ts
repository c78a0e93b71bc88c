import { type CacheControl, parseCacheControl } from "./cache-control";
import { type BareItem, type Member, parseDictionary } from "./structured-fields";

/**
 * Targeted cache control (RFC 9213). A site lists the field names aimed at Tiercel, most specific first
 * (default `Tiercel-Cache-Control`, then `CDN-Cache-Control`). The first one with a valid, non-empty value
 * replaces `Cache-Control` and `Expires` for Tiercel's own decisions; clients still get the origin's
 * `Cache-Control`.
 */

/** The site list's default (RFC 9213 §2.2: a target list, most applicable first). */
export const DEFAULT_TARGETED_FIELDS = ["Tiercel-Cache-Control", "CDN-Cache-Control"];

/**
 * The fields aimed at every CDN, passed on downstream (a CDN in front of Tiercel is their audience too);
 * every other field on the site's list is aimed at Tiercel alone and is consumed: never sent to clients.
 */
const PASSED_ON = new Set(["cdn-cache-control"]);

const DELTA_CAP = 2 ** 31;

/**
 * The directives Tiercel acts on for a response: from the first targeted field on the list with a valid,
 * non-empty value (RFC 9213 §2.2 "MUST select the first (in target list order) field with a valid,
 * non-empty value ... and MUST ignore the Cache-Control and Expires header fields"), else from Cache-Control.
 * The result says which field it came from in `targeted`, so freshness ignores Expires.
 */
export function responseDirectives(headers: Headers, targets: readonly string[]): CacheControl {
  for (const name of targets) {
    const value = headers.get(name);
    // §2.1: "If a targeted field in a given response is empty, or a parsing error is encountered, that
    // field SHOULD be ignored by the cache".
    if (value === null || value.trim() === "") continue;
    const dict = parseDictionary(value);
    if (!dict || dict.size === 0) continue;
    return { ...fromDictionary(dict), targeted: name.toLowerCase() };
  }
  return parseCacheControl(headers.get("cache-control"));
}

/**
 * Field names on the site's list that are consumed by Tiercel and not passed downstream. A site's list is parsed
 * once and reused, so the answer is remembered per list (every answer asks); callers do not modify it.
 */
export function consumedTargetedFields(targets: readonly string[]): string[] {
  let consumed = consumedOf.get(targets);
  if (!consumed) {
    consumed = targets.map((name) => name.toLowerCase()).filter((name) => !PASSED_ON.has(name));
    consumedOf.set(targets, consumed);
  }
  return consumed;
}

const consumedOf = new WeakMap<readonly string[], string[]>();

/**
 * Maps the Dictionary's members to directives (§2.1: no value → Boolean, delta-seconds → Integer, a
 * field-name list → String). A value of the wrong type is not consumed as another type (§2.1 "SHOULD NOT
 * consume values that violate these inferred constraints"): a non-Integer lifetime counts as invalid (stale,
 * as an invalid max-age in Cache-Control does, RFC 9111 §4.2.1); a restricting directive (no-store,
 * no-cache, private, must-revalidate, proxy-revalidate) still restricts whatever its value, unless it is
 * the Boolean false; a permitting one (public, immutable) counts only as true. Parameters are ignored.
 */
function fromDictionary(dict: Map<string, Member>): CacheControl {
  const cc = parseCacheControl(null);
  const item = (name: string): BareItem | "inner" | undefined => {
    const member = dict.get(name);
    if (!member) return undefined;
    return "item" in member ? member.item : "inner";
  };
  const restricts = (name: string) => {
    const value = item(name);
    return value !== undefined && !(value !== "inner" && value.type === "boolean" && !value.value);
  };
  const permits = (name: string) => {
    const value = item(name);
    return value !== undefined && value !== "inner" && value.type === "boolean" && value.value;
  };
  const delta = (name: string): number | undefined => {
    const value = item(name);
    if (value === undefined) return undefined;
    if (value === "inner" || value.type !== "integer" || value.value < 0) return Number.NaN;
    return Math.min(value.value, DELTA_CAP);
  };
  const fieldList = (name: string): boolean | string[] => {
    if (!restricts(name)) return false;
    const value = item(name);
    if (value === "inner" || value?.type !== "string") return true;
    const names = value.value
      .split(",")
      .map((field) => field.trim().toLowerCase())
      .filter(Boolean);
    return names.length > 0 ? names : true;
  };

  const maxAge = delta("max-age");
  if (maxAge !== undefined) cc.maxAge = maxAge;
  const sMaxAge = delta("s-maxage");
  if (sMaxAge !== undefined) cc.sMaxAge = sMaxAge;
  const swr = delta("stale-while-revalidate");
  if (swr !== undefined) cc.staleWhileRevalidate = swr;
  const sie = delta("stale-if-error");
  if (sie !== undefined) cc.staleIfError = sie;
  cc.noStore = restricts("no-store");
  cc.noCache = fieldList("no-cache");
  cc.private = fieldList("private");
  cc.mustRevalidate = restricts("must-revalidate");
  cc.proxyRevalidate = restricts("proxy-revalidate");
  cc.public = permits("public");
  cc.immutable = permits("immutable");
  cc.noTransform = restricts("no-transform");
  return cc;
}
