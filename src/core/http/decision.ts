import { currentAge } from "./freshness";

/**
 * What Tiercel does with a request and what it has stored for it: the one place where "serve", "serve stale
 * and refresh", "revalidate", "fetch" and "serve stale because the origin failed" are decided. Pure: the
 * stored record, the site's policy and the time come in; a decision and its reason go out. The pipeline and
 * the fill carry the decision out (src/core/pipeline.ts, src/core/fill.ts); the tiers never decide.
 *
 * Asked twice per miss at most: once with what the tiers found (no `origin`), and, when the origin failed
 * or answered with an error, once more with what the origin did.
 */

/** The fields of a stored record that decide how it may be used (a subset of core/entry.ts's StoredEntry). */
export interface StoredUse {
  /** Freshness lifetime in seconds (RFC 9111 §4.2.1, or the site's override). */
  lifetime: number;
  /** Corrected initial age in seconds at `responseTime` (RFC 9111 §4.2.3). */
  initialAge: number;
  /** Epoch ms when the origin's response headers arrived. */
  responseTime: number;
  /** stale-while-revalidate window, seconds (RFC 5861 §3). */
  swr: number;
  /** stale-if-error window, seconds (RFC 5861 §4). */
  sie: number;
  /** Grace stored with the entry, seconds; absent in records older than grace (then none). */
  grace?: number;
  /** must-revalidate or proxy-revalidate (or s-maxage, for the site's defaults): never served stale. */
  mustRevalidate: boolean;
  /** no-cache: validated before every use. */
  noCache: boolean;
}

/** What the tiers found for the request. */
export interface StoredState {
  record: StoredUse;
  /** `soft`: the entry is stale from `softPurgedAt` on (a soft purge); `purged` entries are never used. */
  purge: "none" | "soft" | "purged";
  /** Epoch ms of the soft purge that applies, when `purge` is `soft`. */
  softPurgedAt?: number;
}

/** What the origin did when it was asked, when that was not a usable answer. */
export type OriginOutcome =
  /** It answered, with this status. */
  | { kind: "answered"; status: number }
  /** It failed; `unreachable` when it could not be reached at all (refused, reset, timed out). */
  | { kind: "failed"; unreachable: boolean };

export interface DecisionInput {
  /** `makesVariant`: a HEAD that must make the variant it describes (a resize URL), so it fetches as GET. */
  request: { method: string; makesVariant?: boolean };
  stored?: StoredState;
  /** The site's policy: its current grace bound in seconds (`cache.grace`). */
  policy: { grace: number };
  /** Epoch ms. */
  now: number;
  origin?: OriginOutcome;
}

export type Decision =
  /** Answer from storage; no origin contact. */
  | { action: "serve"; reason: "fresh" }
  /** Answer from storage at once and refresh it once in the background. */
  | { action: "serve-stale-and-refresh"; reason: "stale-while-revalidate" | "soft-purged" }
  /** Ask the origin, conditionally when the entry has validators, and use its answer. */
  | { action: "revalidate"; reason: "stale" | "no-cache" | "soft-purged" }
  /** Ask the origin for the whole object. */
  | { action: "fetch"; reason: "miss" | "purged" }
  /** Send the request to the origin as it is and store nothing (a HEAD miss). */
  | { action: "forward"; reason: "head-miss" }
  /** The origin failed: answer with the stored stale entry. */
  | { action: "serve-stale"; reason: "stale-if-error" | "origin-unreachable" }
  /** The origin failed or answered an error and nothing stored may stand in: pass its outcome on. */
  | { action: "pass-origin-outcome"; reason: "nothing-stored" | "stale-forbidden" | "outside-windows" };

/** Decides what to do; see the table of cases in test/unit/decision.test.ts, each with its RFC section. */
export function decide(input: DecisionInput): Decision {
  return input.origin === undefined ? beforeOrigin(input) : afterOrigin(input, input.origin);
}

function beforeOrigin({ request, stored, policy, now }: DecisionInput): Decision {
  const headMiss = request.method === "HEAD" && !request.makesVariant;
  const toOrigin = (decision: Decision): Decision => (headMiss ? { action: "forward", reason: "head-miss" } : decision);
  if (!stored) return toOrigin({ action: "fetch", reason: "miss" });
  // Purged entries are as good as absent, not even for stale-if-error.
  if (stored.purge === "purged") return toOrigin({ action: "fetch", reason: "purged" });
  const { record, softPurgedAt } = stored;
  if (stored.purge === "soft") {
    // A soft purge makes the entry stale from the purge on: served at once (and refreshed) within its
    // stale-while-revalidate window or the site's grace, both counted from the purge; past them it is
    // revalidated like any stale entry, so it is never served longer than one that was not purged.
    if (withinStaleWhileRevalidate(record, now, softPurgedAt) || withinGrace(record, policy.grace, now, softPurgedAt)) {
      return { action: "serve-stale-and-refresh", reason: "soft-purged" };
    }
    return toOrigin({ action: "revalidate", reason: "soft-purged" });
  }
  // RFC 9111 §5.2.2.4: no-cache — never used without validation, fresh or not.
  if (record.noCache) return toOrigin({ action: "revalidate", reason: "no-cache" });
  // RFC 9111 §4.2: fresh while its age is below its lifetime.
  if (ttlOf(record, now) > 0) return { action: "serve", reason: "fresh" };
  // RFC 5861 §3 (must-revalidate forbids it, RFC 9111 §5.2.2.2).
  if (withinStaleWhileRevalidate(record, now))
    return { action: "serve-stale-and-refresh", reason: "stale-while-revalidate" };
  // RFC 9111 §4.3: a stale entry is revalidated.
  return toOrigin({ action: "revalidate", reason: "stale" });
}

function afterOrigin({ stored, policy, now }: DecisionInput, origin: OriginOutcome): Decision {
  if (!stored || stored.purge === "purged") return { action: "pass-origin-outcome", reason: "nothing-stored" };
  const { record, softPurgedAt } = stored;
  // RFC 9111 §4.2.4: must-revalidate, proxy-revalidate (s-maxage) and no-cache forbid serving stale, even
  // when the origin fails.
  if (record.mustRevalidate || record.noCache) return { action: "pass-origin-outcome", reason: "stale-forbidden" };
  // RFC 5861 §4: stale-if-error covers a failure and a 5xx answer alike.
  const failed = origin.kind === "failed" || origin.status >= 500;
  if (failed && stalenessOf(record, now, softPurgedAt) < record.sie) {
    return { action: "serve-stale", reason: "stale-if-error" };
  }
  // RFC 9111 §4.2.4: a cache disconnected from the origin may serve stale for at most the site's grace. Only
  // when the origin could not be reached: one that answers (even 5xx) is not disconnected.
  if (origin.kind === "failed" && origin.unreachable && withinGrace(record, policy.grace, now, softPurgedAt)) {
    return { action: "serve-stale", reason: "origin-unreachable" };
  }
  return { action: "pass-origin-outcome", reason: "outside-windows" };
}

/** Seconds of freshness left at `now`; zero or less means stale (RFC 9111 §4.2). */
export function ttlOf(record: StoredUse, now: number): number {
  return record.lifetime - currentAge(record.initialAge, record.responseTime, now);
}

/**
 * Seconds an entry has been stale at `now` (negative while fresh). A soft purge makes an entry stale from
 * the purge on, so its stale windows count from the purge when that came before its expiry.
 */
export function stalenessOf(record: StoredUse, now: number, softPurgedAt?: number): number {
  const expired = -ttlOf(record, now);
  return softPurgedAt === undefined ? expired : Math.max(expired, (now - softPurgedAt) / 1000);
}

/** The grace that applies to an entry under the site's current setting, in seconds. */
export function graceOf(record: StoredUse, siteGrace: number): number {
  return Math.min(record.grace ?? 0, siteGrace);
}

function withinStaleWhileRevalidate(record: StoredUse, now: number, softPurgedAt?: number): boolean {
  return !record.noCache && !record.mustRevalidate && stalenessOf(record, now, softPurgedAt) < record.swr;
}

function withinGrace(record: StoredUse, siteGrace: number, now: number, softPurgedAt?: number): boolean {
  return (
    !record.mustRevalidate && !record.noCache && stalenessOf(record, now, softPurgedAt) < graceOf(record, siteGrace)
  );
}
