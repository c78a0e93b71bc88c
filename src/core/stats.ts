import { withDeadline } from "./deadline";
import {
  addCounters,
  bucketStart,
  emptyCounters,
  MINUTE,
  type SiteCounters,
  type StatsBatch,
  type StatsItem,
} from "./stats-buckets";

export type { SiteCounters } from "./stats-buckets";

/**
 * Request counters per site, kept in the isolate, in memory: what the isolate counted since it started
 * (the admin API's `isolate` figures), and the deltas not yet flushed to the aggregator, per minute. A
 * `StatsFlusher` sends those in batches; counting itself never waits for anything.
 */
/** How a request was answered: from a tier (by its name), stale, from the origin, or around the cache. */
export type Outcome = { hit: string } | "stale" | "miss" | "bypass";

export class Stats {
  readonly since: number;
  private readonly sites = new Map<string, SiteCounters>();
  /** Deltas not flushed yet: minute start → site → counters. */
  private pending = new Map<number, Map<string, SiteCounters>>();
  private pendingItems = 0;
  /** Counting events since the last take (what the flush threshold looks at). */
  pendingEvents = 0;
  /** Pending minutes dropped because the aggregator stayed unreachable past the bound (their events). */
  dropped = 0;

  constructor(
    private readonly now: () => number,
    private readonly maxSites = 10_000,
    /** The most (minute, site) deltas kept pending; past it the oldest minute is dropped. */
    private readonly maxPending = 10_000,
  ) {
    this.since = now();
  }

  record(siteId: string, outcome: Outcome, bytes = 0): void {
    this.count(siteId, (counters) => {
      counters.requests += 1;
      counters.bytes += Math.max(0, bytes);
      if (typeof outcome === "object") counters.hits[outcome.hit] = (counters.hits[outcome.hit] ?? 0) + 1;
      else if (outcome === "stale") counters.stale += 1;
      else if (outcome === "miss") counters.misses += 1;
      else counters.bypass += 1;
    });
  }

  originFetch(siteId: string): void {
    this.count(siteId, (counters) => {
      counters.originFetches += 1;
    });
  }

  /** Bytes an origin answer declared (Content-Length); nothing when it declared none. */
  originBytes(siteId: string, bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) return;
    this.count(siteId, (counters) => {
      counters.originBytes += bytes;
    });
  }

  optimized(siteId: string, outcome: "transformed" | "original" | "failed", busy = false): void {
    this.count(siteId, (counters) => {
      counters.optimize[outcome] += 1;
      if (busy) counters.optimize.busy += 1;
    });
  }

  tierRead(siteId: string, tier: string): void {
    this.count(siteId, (counters) => {
      counters.reads[tier] = (counters.reads[tier] ?? 0) + 1;
    });
  }

  tierWrite(siteId: string, tier: string): void {
    this.count(siteId, (counters) => {
      counters.writes[tier] = (counters.writes[tier] ?? 0) + 1;
    });
  }

  /**
   * Work done for this isolate's request elsewhere, counted here: the shield's origin fetch, its bytes and
   * its global-tier writes for the fill this isolate's request led (src/core/shield.ts).
   */
  add(siteId: string, work: SiteCounters): void {
    this.count(siteId, (counters) => {
      addCounters(counters, work);
    });
  }

  /** Everything counted and not yet taken, summed per site (a shield's fill hands its work to its leader). */
  takeTotal(siteId: string): SiteCounters | undefined {
    let total: SiteCounters | undefined;
    for (const item of this.take()) {
      if (item.site === siteId) total = addCounters(total ?? emptyCounters(), item.counters);
    }
    return total;
  }

  /** A request of the site answered with a 5xx error by Tiercel. */
  error(siteId: string): void {
    this.count(siteId, (counters) => {
      counters.errors += 1;
    });
  }

  private count(siteId: string, change: (counters: SiteCounters) => void): void {
    const total = this.countersOf(siteId);
    if (!total) return;
    change(total);
    const delta = this.pendingOf(bucketStart(this.now(), MINUTE), siteId);
    if (delta) change(delta);
    this.pendingEvents += 1;
  }

  private countersOf(siteId: string): SiteCounters | undefined {
    let counters = this.sites.get(siteId);
    if (!counters && this.sites.size < this.maxSites) {
      counters = emptyCounters();
      this.sites.set(siteId, counters);
    }
    return counters;
  }

  private pendingOf(start: number, siteId: string): SiteCounters | undefined {
    let minute = this.pending.get(start);
    let counters = minute?.get(siteId);
    if (counters) return counters;
    // Past the bound, the oldest minute goes (a dead aggregator must not grow the isolate's memory).
    while (this.pendingItems >= this.maxPending) {
      if (!this.dropOldest(start)) return undefined;
    }
    if (!minute) {
      minute = new Map();
      this.pending.set(start, minute);
    }
    counters = emptyCounters();
    minute.set(siteId, counters);
    this.pendingItems += 1;
    return counters;
  }

  /** Drops the oldest pending minute if it is older than `keep`; false when there is none. */
  private dropOldest(keep: number): boolean {
    const oldest = Math.min(...this.pending.keys());
    const minute = this.pending.get(oldest);
    if (!minute || oldest >= keep) return false;
    for (const counters of minute.values()) this.dropped += eventsIn(counters);
    this.pendingItems -= minute.size;
    this.pending.delete(oldest);
    return true;
  }

  /** Hands over every pending delta (the flush sends them) and starts afresh. */
  take(): StatsItem[] {
    const items: StatsItem[] = [];
    for (const [start, minute] of this.pending) {
      for (const [site, counters] of minute) items.push({ start, site, counters });
    }
    this.pending = new Map();
    this.pendingItems = 0;
    this.pendingEvents = 0;
    return items;
  }

  snapshot(siteId?: string): Record<string, SiteCounters> {
    const out: Record<string, SiteCounters> = {};
    for (const [id, counters] of this.sites) {
      if (siteId === undefined || id === siteId) out[id] = structuredClone(counters);
    }
    return out;
  }
}

/** The body bytes an origin answer declares on the wire (Content-Length, encoded), or 0 when it declares none. */
export function wireLength(response: Response): number {
  const value = response.headers.get("content-length");
  return value !== null && /^\d{1,15}$/.test(value) ? Number(value) : 0;
}

/** A rough count of what a delta held, for the `dropped` figure. */
export function eventsIn(counters: SiteCounters): number {
  return counters.requests + counters.originFetches + counters.errors;
}

export interface FlushOptions {
  /** At most one flush per this many ms (unless the threshold is reached first). */
  intervalMs: number;
  /** Counting events that make a flush due before the interval is over (at most once per `minGapMs`). */
  threshold: number;
  /** The shortest time between two flushes that the threshold makes due. */
  minGapMs: number;
  /** How long one flush may take before it counts as failed. */
  timeoutMs: number;
  /** After failures, the wait doubles per failure up to this. */
  maxBackoffMs: number;
}

export const FLUSH_DEFAULTS: FlushOptions = {
  intervalMs: 10_000,
  threshold: 10_000,
  minGapMs: 1_000,
  timeoutMs: 5_000,
  maxBackoffMs: 5 * MINUTE,
};

/** What the admin API shows of an isolate's flushing. */
export interface FlushStatus {
  flushes: number;
  failures: number;
  /** Failures in a row (0 once a flush gets through). */
  failing: number;
  lastFlushAt: string | null;
  lastError: string | null;
}

/** How many times one batch is tried before it is dropped (with the back-off, about half an hour). */
export const MAX_ATTEMPTS = 10;

/**
 * Sends an isolate's pending deltas to the aggregator: at most once per interval (sooner once the
 * threshold is reached, but not twice within `minGapMs`), one flush at a time, always in `waitUntil`, never on a request's path. A batch
 * that fails is kept as it is, with its id, and sent again (the aggregator ignores an id it has already
 * added, so a flush whose answer was lost is not counted twice) after a wait that doubles per failure,
 * at most MAX_ATTEMPTS times. Meanwhile new counts wait in `Stats`, within its pending bound.
 */
export class StatsFlusher {
  private nextAt: number;
  private lastAt: number;
  private inFlight: Promise<boolean> | null = null;
  /** The batch being delivered (kept across failures). */
  private held: { batch: StatsBatch; attempts: number } | null = null;
  readonly status: FlushStatus = { flushes: 0, failures: 0, failing: 0, lastFlushAt: null, lastError: null };

  constructor(
    private readonly stats: Stats,
    private readonly send: (batch: StatsBatch) => Promise<unknown>,
    private readonly now: () => number,
    private readonly log: (event: string, fields: Record<string, unknown>) => void,
    private readonly options: FlushOptions = FLUSH_DEFAULTS,
  ) {
    this.lastAt = now();
    this.nextAt = this.lastAt + options.intervalMs;
  }

  /** After a request: starts a flush in the background if one is due. Cheap when none is; never throws. */
  maybeFlush(waitUntil: (work: Promise<unknown>) => void): void {
    try {
      if (this.inFlight || (this.stats.pendingEvents === 0 && !this.held)) return;
      const now = this.now();
      const due =
        now >= this.nextAt ||
        (this.status.failing === 0 &&
          this.stats.pendingEvents >= this.options.threshold &&
          now - this.lastAt >= this.options.minGapMs);
      if (due) waitUntil(this.flush());
    } catch (error) {
      this.log("stats.flush-failed", { error: String(error) });
    }
  }

  /**
   * Flushes now (after any flush in flight): a batch kept from a failure, then what is pending. True when
   * everything got through. Never rejects.
   */
  async flush(): Promise<boolean> {
    while (this.inFlight) await this.inFlight;
    this.inFlight = (async () => {
      for (let round = 0; round < 2; round++) {
        if (!(await this.deliver())) return false;
      }
      return true;
    })();
    try {
      return await this.inFlight;
    } finally {
      this.inFlight = null;
    }
  }

  /** Sends the held batch, or a new one of what is pending; true when it got through (or there was none). */
  private async deliver(): Promise<boolean> {
    if (!this.held) {
      const items = this.stats.take();
      if (items.length === 0) return true;
      this.held = { batch: { id: crypto.randomUUID(), items }, attempts: 0 };
    }
    const held = this.held;
    const now = this.now();
    this.lastAt = now;
    try {
      await withDeadline(this.send(held.batch), this.options.timeoutMs, "stats flush");
      this.held = null;
      this.status.flushes += 1;
      this.status.failing = 0;
      this.status.lastFlushAt = new Date(now).toISOString();
      this.nextAt = now + this.options.intervalMs;
      return true;
    } catch (error) {
      held.attempts += 1;
      this.status.failures += 1;
      this.status.failing += 1;
      this.status.lastError = String(error);
      const wait = Math.min(this.options.intervalMs * 2 ** this.status.failing, this.options.maxBackoffMs);
      this.nextAt = now + wait;
      const dropping = held.attempts >= MAX_ATTEMPTS;
      if (dropping) {
        this.held = null;
        this.stats.dropped += held.batch.items.reduce((sum, item) => sum + eventsIn(item.counters), 0);
      }
      this.log("stats.flush-failed", {
        items: held.batch.items.length,
        attempts: held.attempts,
        dropped: dropping,
        error: String(error),
      });
      return false;
    }
  }
}
