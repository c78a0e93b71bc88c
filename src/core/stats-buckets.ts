/**
 * Global stats as pure functions (docs/architecture.md, "Durable Objects"): the per-site counters, how two
 * sets of them add up, the time buckets the aggregator (src/objects/stats-aggregator.ts) keeps and for how
 * long, which buckets a window reads, and the zero-filled series it answers with. Nothing here reads a
 * clock or a binding.
 */

/** A site's figures: in an isolate since it started, in one flush's delta, or in one stored bucket. */
export interface SiteCounters {
  /** GET and HEAD requests answered through the cache, by how. */
  requests: number;
  /** Fresh hits, by tier name (edge, kv, and any tier added later). */
  hits: Record<string, number>;
  stale: number;
  misses: number;
  bypass: number;
  /** Requests that reached the origin (a collapsed miss makes one; a background refresh makes one). */
  originFetches: number;
  /** Body bytes the origin's answers declared (Content-Length: what crossed the wire from the origin). */
  originBytes: number;
  /** Reads of each tier for this site's objects, by tier name (a KV or R2 read is a billed operation). */
  reads: Record<string, number>;
  /** Writes (entries and variant indexes) that each tier took, by tier name (billed on KV and R2). */
  writes: Record<string, number>;
  /** Body bytes answered from the tiers. */
  bytes: number;
  /** Requests of the site answered with a 5xx error by Tiercel (origin unreachable, timed out, …). */
  errors: number;
  /**
   * Fills the optimizer looked at: transformed, left as they were, or failed (original served, unstored);
   * `busy` counts the failures that were the per-site or per-isolate transform bound (part of `failed`).
   */
  optimize: { transformed: number; original: number; failed: number; busy: number };
}

export function emptyCounters(): SiteCounters {
  return {
    requests: 0,
    hits: {},
    stale: 0,
    misses: 0,
    bypass: 0,
    originFetches: 0,
    originBytes: 0,
    reads: {},
    writes: {},
    bytes: 0,
    errors: 0,
    optimize: { transformed: 0, original: 0, failed: 0, busy: 0 },
  };
}

const SCALARS = [
  "requests",
  "stale",
  "misses",
  "bypass",
  "originFetches",
  "originBytes",
  "bytes",
  "errors",
] as const satisfies readonly (keyof SiteCounters)[];
const BY_TIER = ["hits", "reads", "writes"] as const satisfies readonly (keyof SiteCounters)[];
const OPTIMIZE = ["transformed", "original", "failed", "busy"] as const;

/** Adds `from` into `into` (in place) and returns `into`. */
export function addCounters(into: SiteCounters, from: SiteCounters): SiteCounters {
  for (const name of SCALARS) into[name] += from[name];
  for (const name of BY_TIER) {
    const target = into[name];
    for (const [tier, n] of Object.entries(from[name])) target[tier] = (target[tier] ?? 0) + n;
  }
  for (const name of OPTIMIZE) into.optimize[name] += from.optimize[name];
  return into;
}

/** The largest count one stored figure may hold: well inside a double's exact integers. */
const MAX_COUNT = 2 ** 50;
/** Tier names: a short word. At most this many per figure. */
const TIER_NAME = /^[a-z0-9_-]{1,32}$/;
const MAX_TIERS = 16;

/**
 * Counters from outside this code (a flush crossing an RPC boundary, a stored row): every figure a
 * non-negative integer, tier names short words. Anything else is refused whole (null), never half-added.
 */
export function parseCounters(value: unknown): SiteCounters | null {
  if (!isRecord(value)) return null;
  const out = emptyCounters();
  const count = (n: unknown): number | null =>
    n === undefined
      ? 0
      : Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= MAX_COUNT
        ? (n as number)
        : null;
  for (const name of SCALARS) {
    const n = count(value[name]);
    if (n === null) return null;
    out[name] = n;
  }
  for (const name of BY_TIER) {
    const tiers = value[name] ?? {};
    if (!isRecord(tiers)) return null;
    const entries = Object.entries(tiers);
    if (entries.length > MAX_TIERS) return null;
    for (const [tier, raw] of entries) {
      const n = count(raw);
      if (n === null || !TIER_NAME.test(tier)) return null;
      if (n > 0) out[name][tier] = n;
    }
  }
  const optimize = value.optimize ?? {};
  if (!isRecord(optimize)) return null;
  for (const name of OPTIMIZE) {
    const n = count(optimize[name]);
    if (n === null) return null;
    out.optimize[name] = n;
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export const MINUTE = 60_000;
export const HOUR = 3_600_000;

/** The bucket widths the aggregator keeps, and how long it keeps each (bounded retention). */
export const RETENTION: ReadonlyMap<number, number> = new Map([
  [MINUTE, 48 * HOUR],
  [HOUR, 35 * 24 * HOUR],
]);

/** How far ahead of the aggregator's clock an isolate's minute may be (clock skew), at most. */
const MAX_AHEAD = 5 * MINUTE;

export function bucketStart(time: number, width: number): number {
  return time - (((time % width) + width) % width);
}

/** Site ids as the admin API and the schema allow them. */
export const SITE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** One site's delta for one minute, as an isolate flushes it. */
export interface StatsItem {
  /** The minute it was counted in (epoch ms, a multiple of MINUTE). */
  start: number;
  site: string;
  counters: SiteCounters;
}

/** What an isolate sends the aggregator in one flush; a retry of it carries the same id. */
export interface StatsBatch {
  id: string;
  items: StatsItem[];
}

/** How long the aggregator remembers a batch id (an isolate gives up on a batch well within it). */
export const BATCH_ID_MEMORY = HOUR;

/** A batch's id, when it has a usable one. */
export function batchIdOf(batch: unknown): string | null {
  const id = isRecord(batch) ? batch.id : undefined;
  return typeof id === "string" && /^[A-Za-z0-9-]{8,64}$/.test(id) ? id : null;
}

/** The most items one flush may carry (an isolate bounds what it keeps pending to fewer). */
export const MAX_BATCH_ITEMS = 20_000;

/** One stored row: a bucket of a width, for one site. */
export interface BucketRow {
  width: number;
  start: number;
  site: string;
  counters: SiteCounters;
}

/**
 * The rows a flush adds to, merged: each item counts in its minute bucket and its hour bucket. Items that
 * do not parse, or whose minute is outside the minute retention or too far ahead, are refused (counted).
 */
export function rowsOf(batch: unknown, now: number): { rows: BucketRow[]; refused: number } {
  const items = isRecord(batch) && Array.isArray(batch.items) ? batch.items : null;
  if (items === null || items.length > MAX_BATCH_ITEMS) return { rows: [], refused: items?.length ?? 1 };
  const oldest = bucketStart(now, MINUTE) - (RETENTION.get(MINUTE) as number);
  const rows = new Map<string, BucketRow>();
  let refused = 0;
  for (const item of items) {
    const counters = isRecord(item) ? parseCounters(item.counters) : null;
    const start = isRecord(item) ? item.start : undefined;
    const site = isRecord(item) ? item.site : undefined;
    if (
      counters === null ||
      typeof site !== "string" ||
      !SITE_ID.test(site) ||
      !Number.isSafeInteger(start) ||
      (start as number) % MINUTE !== 0 ||
      (start as number) < oldest ||
      (start as number) > now + MAX_AHEAD
    ) {
      refused += 1;
      continue;
    }
    for (const width of RETENTION.keys()) {
      const row = { width, start: bucketStart(start as number, width), site };
      const key = `${row.width}/${row.start}/${site}`;
      const known = rows.get(key);
      if (known) addCounters(known.counters, counters);
      else rows.set(key, { ...row, counters: addCounters(emptyCounters(), counters) });
    }
  }
  return { rows: [...rows.values()], refused };
}

/** The start before which each width's buckets are dropped. */
export function retentionCutoffs(now: number): { width: number; before: number }[] {
  return [...RETENTION].map(([width, keep]) => ({ width, before: bucketStart(now, width) - keep }));
}

/** The windows the admin API answers for: the last `count` buckets of `width`, the current one partial. */
export const WINDOWS = {
  "5m": { width: MINUTE, count: 5 },
  "1h": { width: MINUTE, count: 60 },
  "24h": { width: HOUR, count: 24 },
  "7d": { width: HOUR, count: 168 },
} as const;
export type WindowName = keyof typeof WINDOWS;

export function isWindow(value: string): value is WindowName {
  return Object.hasOwn(WINDOWS, value);
}

export interface WindowPlan {
  window: WindowName;
  width: number;
  count: number;
  /** The first bucket's start and the last (current) bucket's start. */
  first: number;
  last: number;
}

export function windowPlan(window: WindowName, now: number): WindowPlan {
  const { width, count } = WINDOWS[window];
  const last = bucketStart(now, width);
  return { window, width, count, first: last - (count - 1) * width, last };
}

/** A window's answer: totals per site and over them all, and a series with one point per bucket. */
export interface StatsWindow {
  window: WindowName;
  bucketSeconds: number;
  /** The first bucket's start and the end of the last one (ISO 8601). */
  from: string;
  to: string;
  sites: Record<string, SiteCounters>;
  total: SiteCounters;
  /** Every bucket of the window in order, zero-filled: `start` and the figures summed over the sites. */
  series: { start: string; values: SiteCounters }[];
}

/** Sums the rows a window read into its answer. Rows outside the plan (another width, too old) are ignored. */
export function summarize(plan: WindowPlan, rows: Iterable<Omit<BucketRow, "width">>): StatsWindow {
  const points = Array.from({ length: plan.count }, emptyCounters);
  const sites: Record<string, SiteCounters> = {};
  const total = emptyCounters();
  for (const row of rows) {
    const index = (row.start - plan.first) / plan.width;
    const point = points[index];
    if (!Number.isInteger(index) || point === undefined) continue;
    addCounters(point, row.counters);
    addCounters(total, row.counters);
    const site = sites[row.site] ?? emptyCounters();
    sites[row.site] = addCounters(site, row.counters);
  }
  return {
    window: plan.window,
    bucketSeconds: plan.width / 1000,
    from: new Date(plan.first).toISOString(),
    to: new Date(plan.last + plan.width).toISOString(),
    sites,
    total,
    series: points.map((values, i) => ({ start: new Date(plan.first + i * plan.width).toISOString(), values })),
  };
}

/** The aggregator's RPC surface (src/objects/stats-aggregator.ts), as isolates and the admin API use it. */
export interface StatsAggregatorApi {
  /**
   * Adds one flush; answers how many items were refused (malformed, too old, too far ahead), or that the
   * batch's id was already added (a retry whose first try got through): then nothing is added again.
   */
  add(batch: StatsBatch): Promise<{ refused: number; duplicate?: true }>;
  query(window: WindowName, site: string | null): Promise<StatsWindow>;
}

/** The aggregator's one instance (see docs/architecture.md on why one, and when to shard). */
export const STATS_NAME = "global";
