/**
 * Request counters per site, kept in the isolate. On `wrangler dev` that is the whole picture; on
 * Cloudflare each isolate counts for itself (the admin API says `"scope": "isolate"`).
 */
/** How a request was answered: from a tier (by its name), stale, from the origin, or around the cache. */
export type Outcome = { hit: string } | "stale" | "miss" | "bypass";

export interface SiteCounters {
  /** GET and HEAD requests answered, by how. */
  requests: number;
  hits: Record<string, number>;
  stale: number;
  misses: number;
  bypass: number;
  /** Requests that reached the origin (a collapsed miss makes one; a background refresh makes one). */
  originFetches: number;
  /** Reads of each tier for this site's objects, by tier name (a KV or R2 read is a billed operation). */
  reads: Record<string, number>;
  /** Body bytes answered from the tiers. */
  bytes: number;
  /** Fills the optimizer looked at: transformed, left as they were, or failed (original served, unstored). */
  optimize: { transformed: number; original: number; failed: number };
}

export class Stats {
  readonly since: number;
  private readonly sites = new Map<string, SiteCounters>();

  constructor(
    now: number,
    private readonly maxSites = 10_000,
  ) {
    this.since = now;
  }

  record(siteId: string, outcome: Outcome, bytes = 0): void {
    const counters = this.countersOf(siteId);
    if (!counters) return;
    counters.requests += 1;
    counters.bytes += Math.max(0, bytes);
    if (typeof outcome === "object") counters.hits[outcome.hit] = (counters.hits[outcome.hit] ?? 0) + 1;
    else if (outcome === "stale") counters.stale += 1;
    else if (outcome === "miss") counters.misses += 1;
    else counters.bypass += 1;
  }

  originFetch(siteId: string): void {
    const counters = this.countersOf(siteId);
    if (counters) counters.originFetches += 1;
  }

  optimized(siteId: string, outcome: "transformed" | "original" | "failed"): void {
    const counters = this.countersOf(siteId);
    if (counters) counters.optimize[outcome] += 1;
  }

  tierRead(siteId: string, tier: string): void {
    const counters = this.countersOf(siteId);
    if (counters) counters.reads[tier] = (counters.reads[tier] ?? 0) + 1;
  }

  private countersOf(siteId: string): SiteCounters | undefined {
    let counters = this.sites.get(siteId);
    if (!counters && this.sites.size < this.maxSites) {
      counters = {
        requests: 0,
        hits: {},
        stale: 0,
        misses: 0,
        bypass: 0,
        originFetches: 0,
        reads: {},
        bytes: 0,
        optimize: { transformed: 0, original: 0, failed: 0 },
      };
      this.sites.set(siteId, counters);
    }
    return counters;
  }

  snapshot(siteId?: string): Record<string, SiteCounters> {
    const out: Record<string, SiteCounters> = {};
    for (const [id, counters] of this.sites) {
      if (siteId === undefined || id === siteId) out[id] = structuredClone(counters);
    }
    return out;
  }
}
