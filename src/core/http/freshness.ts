import type { CacheControl } from "./cache-control";
import { parseHttpDate } from "./dates";

/**
 * Freshness for a shared cache (RFC 9111 §4.2). All times are passed in; nothing here reads a clock.
 * Seconds for lifetimes and ages, epoch milliseconds for instants.
 */

/** Statuses that are heuristically cacheable (RFC 9110 §15.1) and that Tiercel stores at all. */
const HEURISTICALLY_CACHEABLE = new Set([200, 203, 204, 300, 301, 308, 404, 410]);

/** Heuristic lifetimes never exceed a day, the common practice that RFC 9111 §4.2.2 describes. */
const HEURISTIC_CAP_SECONDS = 86_400;

export interface FreshnessInput {
  status: number;
  headers: Headers;
  cc: CacheControl;
  /** When the response was received (epoch ms). */
  responseTime: number;
}

/**
 * The freshness lifetime in seconds (§4.2.1): s-maxage, then max-age, then Expires minus Date, then a
 * heuristic where §4.2.2 allows one. An invalid directive or date makes the response stale (0).
 */
export function freshnessLifetime({ status, headers, cc, responseTime }: FreshnessInput): number {
  // §4.2.1: "If the cache is shared and the s-maxage response directive is present, use its value".
  if (cc.sMaxAge !== undefined) return validOrStale(cc.sMaxAge);
  // §4.2.1: "If the max-age response directive is present, use its value".
  if (cc.maxAge !== undefined) return validOrStale(cc.maxAge);
  // RFC 9213 §2.2: directives from a targeted field replace Expires as well as Cache-Control.
  const expiresHeader = cc.targeted ? null : headers.get("expires");
  if (expiresHeader !== null) {
    // §5.3: "A cache recipient MUST interpret invalid date formats, especially the value "0", as
    // representing a time in the past (i.e., 'already expired')."
    const expires = parseHttpDate(expiresHeader);
    if (expires === undefined) return 0;
    const date = parseHttpDate(headers.get("date")) ?? responseTime;
    return Math.max(0, Math.floor((expires - date) / 1000));
  }
  return heuristicLifetime(status, headers, cc, responseTime);
}

/**
 * §4.2.2: heuristic freshness only for a heuristically cacheable status or a response marked `public`,
 * and only without explicit expiration. Tiercel uses the customary 10% of the time since Last-Modified.
 * Stricter: `public` allows a heuristic only below 400, so an error page is never made fresh by a guess.
 */
function heuristicLifetime(status: number, headers: Headers, cc: CacheControl, responseTime: number): number {
  if (!HEURISTICALLY_CACHEABLE.has(status) && !(cc.public && status < 400)) return 0;
  const lastModified = parseHttpDate(headers.get("last-modified"));
  if (lastModified === undefined) return 0;
  const date = parseHttpDate(headers.get("date")) ?? responseTime;
  const sinceModified = Math.max(0, (date - lastModified) / 1000);
  return Math.min(HEURISTIC_CAP_SECONDS, Math.floor(sinceModified / 10));
}

/** Explicit expiration (RFC 9111 §4.2.1): s-maxage, max-age or Expires — not Expires under a targeted field. */
export function hasExplicitExpiration(headers: Headers, cc: CacheControl): boolean {
  return cc.sMaxAge !== undefined || cc.maxAge !== undefined || (!cc.targeted && headers.has("expires"));
}

function validOrStale(seconds: number): number {
  return Number.isNaN(seconds) ? 0 : seconds;
}

export interface AgeInput {
  headers: Headers;
  /** When the request that produced the response was sent (epoch ms). */
  requestTime: number;
  /** When the response was received (epoch ms). */
  responseTime: number;
}

/**
 * The corrected initial age in seconds, §4.2.3, computed once when a response is received:
 *   apparent_age = max(0, response_time - date_value)
 *   corrected_age_value = age_value + (response_time - request_time)
 *   corrected_initial_age = max(apparent_age, corrected_age_value)
 */
export function correctedInitialAge({ headers, requestTime, responseTime }: AgeInput): number {
  const date = parseHttpDate(headers.get("date")) ?? responseTime;
  const apparentAge = Math.max(0, (responseTime - date) / 1000);
  const ageValue = parseAgeHeader(headers.get("age"));
  const responseDelay = Math.max(0, (responseTime - requestTime) / 1000);
  return Math.max(apparentAge, ageValue + responseDelay);
}

/** §4.2.3: current_age = corrected_initial_age + resident_time. */
export function currentAge(initialAge: number, responseTime: number, now: number): number {
  return initialAge + Math.max(0, (now - responseTime) / 1000);
}

/** RFC 9111 §1.2.2: the largest delta-seconds a cache needs to represent. */
const DELTA_CAP = 2 ** 31;

/**
 * §5.1: Age is one non-negative delta-seconds. Two cases the RFC leaves open are read so that the answer is
 * never fresher than it may be:
 * - several values (`Age: 7200, 0`, or several field lines, which Headers joins with ", "): the first one
 *   counts, as the value the nearest cache on the way sent;
 * - an invalid first value (negative, fractional, not a number, empty): §5.1 would have it ignored, which
 *   reads an answer of unknown age as brand new; Tiercel takes it as the largest age instead (§1.2.2's
 *   2^31), so the answer is stale on arrival and is used only after a validation.
 */
function parseAgeHeader(value: string | null): number {
  if (value === null) return 0;
  const first = value.split(",")[0]?.trim() ?? "";
  if (!/^[0-9]+$/.test(first)) return DELTA_CAP;
  return Math.min(Number(first), DELTA_CAP);
}
