import type { CachePolicy } from "../sites/schema";
import type { CacheControl } from "./http/cache-control";
import { freshnessLifetime, hasExplicitExpiration } from "./http/freshness";

/**
 * How long Tiercel may use a stored response, resolved once when it is stored: the origin's freshness
 * (RFC 9111 §4.2.1) or the site's overrides, and the stale windows of RFC 5861.
 */
export interface UsePolicy {
  /** Freshness lifetime in seconds. */
  lifetime: number;
  /** stale-while-revalidate window in seconds (RFC 5861 §3). */
  swr: number;
  /** stale-if-error window in seconds (RFC 5861 §4). */
  sie: number;
  /**
   * must-revalidate / proxy-revalidate: never served stale, not even on error (RFC 9111 §5.2.2.2,
   * §5.2.2.8; §4.2.4 "A cache MUST NOT generate a stale response if ... must-revalidate").
   */
  mustRevalidate: boolean;
  /** no-cache: every use needs a successful validation first (RFC 9111 §5.2.2.4). */
  noCache: boolean;
  /**
   * Grace in seconds: how long past expiry the response may answer when the origin cannot be reached
   * (RFC 9111 §4.2.4); 0 when a directive forbids serving it stale.
   */
  grace: number;
}

/** Statuses stored for `negativeTtl` (negative caching). */
const NEGATIVE_STATUSES = new Set([404, 410]);

/** Seconds a stale entry with validators is kept for conditional revalidation beyond its stale windows. */
export const REVALIDATION_KEEP = 86_400;

export function usePolicy(
  input: { status: number; headers: Headers; cc: CacheControl; responseTime: number },
  site: CachePolicy,
): UsePolicy {
  const { cc } = input;
  let lifetime: number;
  if (NEGATIVE_STATUSES.has(input.status)) {
    // Negative caching: 404/410 live for the site's negativeTtl at most, whatever the origin says.
    const explicit = hasExplicitExpiration(input.headers, cc);
    lifetime = explicit ? Math.min(freshnessLifetime(input), site.negativeTtl) : site.negativeTtl;
  } else if (input.status >= 400) {
    // Other errors are stored only with explicit freshness (RFC 9111 §3), for exactly that long: the site's
    // edgeTtl is meant for content, and must not turn an origin's `max-age=5` on a 503 into an hour.
    lifetime = freshnessLifetime(input);
  } else {
    lifetime = site.edgeTtl ?? freshnessLifetime(input);
  }
  // A stored error other than 404/410 is used only while fresh — never served stale while it is refreshed or
  // when the origin fails — so it cannot hide an origin that works again for longer than its freshness.
  const errorOnlyFresh = input.status >= 400 && !NEGATIVE_STATUSES.has(input.status);
  const mustRevalidate = cc.mustRevalidate || cc.proxyRevalidate;
  // RFC 9111 §5.2.2.10: s-maxage "incorporates the semantics of the proxy-revalidate directive", so the
  // site's default stale windows do not apply to it; stale directives the origin sends beside it still do.
  const defaults = cc.sMaxAge === undefined;
  return {
    lifetime,
    swr:
      mustRevalidate || errorOnlyFresh
        ? 0
        : windowOf(cc.staleWhileRevalidate, defaults ? site.staleWhileRevalidate : 0),
    sie: mustRevalidate || errorOnlyFresh ? 0 : windowOf(cc.staleIfError, defaults ? site.staleIfError : 0),
    mustRevalidate,
    noCache: cc.noCache !== false,
    // RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an explicit
    // in-protocol directive (e.g., by a no-cache response directive, a must-revalidate response directive,
    // or an applicable s-maxage or proxy-revalidate response directive)".
    grace: mustRevalidate || cc.noCache !== false || cc.sMaxAge !== undefined ? 0 : site.grace,
  };
}

function windowOf(directive: number | undefined, siteDefault: number): number {
  if (directive === undefined) return siteDefault;
  return Number.isNaN(directive) ? 0 : directive;
}
