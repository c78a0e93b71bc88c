import { describe, expect, it } from "vitest";
import { MAX_ATTEMPTS, Stats, StatsFlusher } from "../../src/core/stats";
import {
  addCounters,
  batchIdOf,
  emptyCounters,
  HOUR,
  MINUTE,
  parseCounters,
  retentionCutoffs,
  rowsOf,
  type StatsBatch,
  summarize,
  windowPlan,
} from "../../src/core/stats-buckets";

/** The pure half of global stats: counters, buckets, windows, and the isolate's pending deltas and flushes. */

const T0 = Date.UTC(2026, 11, 5, 6, 0, 0);

function counters(requests: number, edgeHits = 0) {
  const c = emptyCounters();
  c.requests = requests;
  if (edgeHits) c.hits.edge = edgeHits;
  return c;
}

describe("counters", () => {
  it("add figure by figure, tiers by name", () => {
    const a = counters(3, 2);
    a.reads.kv = 1;
    const b = counters(4, 1);
    b.hits.r2 = 2;
    b.writes.kv = 5;
    b.optimize.busy = 1;
    const sum = addCounters(a, b);
    expect(sum.requests).toBe(7);
    expect(sum.hits).toEqual({ edge: 3, r2: 2 });
    expect(sum.reads).toEqual({ kv: 1 });
    expect(sum.writes).toEqual({ kv: 5 });
    expect(sum.optimize.busy).toBe(1);
  });

  it("are refused whole when a figure is not a count or a tier name is odd", () => {
    expect(parseCounters({ requests: 2, hits: { edge: 1 } })?.requests).toBe(2);
    for (const bad of [
      null,
      [],
      { requests: -1 },
      { requests: 1.5 },
      { requests: "3" },
      { errors: 2 ** 60 },
      { hits: { "Edge Tier": 1 } },
      { hits: [] },
      { optimize: { busy: -2 } },
      { reads: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`t${i}`, 1])) },
    ]) {
      expect(parseCounters(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});

describe("buckets", () => {
  it("count each item in its minute and its hour, merged, and refuse what is malformed, too old or ahead", () => {
    const now = T0 + 30 * MINUTE + 5_000;
    const batch = {
      items: [
        { start: T0 + 30 * MINUTE, site: "a", counters: counters(2) },
        { start: T0 + 30 * MINUTE, site: "a", counters: counters(3) },
        { start: T0 + 29 * MINUTE, site: "a", counters: counters(1) },
        { start: T0 + 29 * MINUTE, site: "b", counters: counters(7) },
        { start: T0 + 29 * MINUTE + 1, site: "a", counters: counters(1) },
        { start: now - 49 * HOUR, site: "a", counters: counters(1) },
        { start: T0 + 10 * HOUR, site: "a", counters: counters(1) },
        { start: T0, site: "no/slash", counters: counters(1) },
        { start: T0, site: "a", counters: { requests: -1 } },
      ],
    };
    const { rows, refused } = rowsOf(batch, now);
    expect(refused).toBe(5);
    const find = (width: number, start: number, site: string) =>
      rows.find((r) => r.width === width && r.start === start && r.site === site)?.counters.requests;
    expect(find(MINUTE, T0 + 30 * MINUTE, "a")).toBe(5);
    expect(find(MINUTE, T0 + 29 * MINUTE, "a")).toBe(1);
    expect(find(HOUR, T0, "a")).toBe(6);
    expect(find(HOUR, T0, "b")).toBe(7);
    expect(rows).toHaveLength(5);
    expect(rowsOf({ items: "x" }, now).refused).toBe(1);
    expect(rowsOf({ items: Array.from({ length: 20_001 }, () => ({})) }, now).rows).toEqual([]);
  });

  it("take a batch id only when it is a short word (a UUID)", () => {
    expect(batchIdOf({ id: "0b8a6f1e-8c1d-4c55-9a57-6f6f0d2f6a10", items: [] })).toBe(
      "0b8a6f1e-8c1d-4c55-9a57-6f6f0d2f6a10",
    );
    for (const id of [undefined, 42, "short", "x".repeat(65), "has space in it"]) {
      expect(batchIdOf({ id, items: [] })).toBeNull();
    }
  });

  it("keep minutes 48 hours and hours 35 days", () => {
    const cutoffs = retentionCutoffs(T0 + 123);
    expect(cutoffs).toEqual([
      { width: MINUTE, before: T0 - 48 * HOUR },
      { width: HOUR, before: T0 - 35 * 24 * HOUR },
    ]);
  });
});

describe("windows", () => {
  it("answer every bucket of the window, zero-filled, with totals per site and over them all", () => {
    const now = T0 + 10 * MINUTE + 30_000;
    const plan = windowPlan("5m", now);
    expect(plan).toMatchObject({ width: MINUTE, count: 5, first: T0 + 6 * MINUTE, last: T0 + 10 * MINUTE });
    const answer = summarize(plan, [
      { start: T0 + 6 * MINUTE, site: "a", counters: counters(2, 1) },
      { start: T0 + 10 * MINUTE, site: "a", counters: counters(3, 3) },
      { start: T0 + 10 * MINUTE, site: "b", counters: counters(4) },
      { start: T0 + 5 * MINUTE, site: "a", counters: counters(100) },
      { start: T0 + 7 * MINUTE + 1, site: "a", counters: counters(100) },
    ]);
    expect(answer.bucketSeconds).toBe(60);
    expect(answer.from).toBe(new Date(T0 + 6 * MINUTE).toISOString());
    expect(answer.to).toBe(new Date(T0 + 11 * MINUTE).toISOString());
    expect(answer.series.map((p) => p.values.requests)).toEqual([2, 0, 0, 0, 7]);
    expect(answer.series.map((p) => p.start)).toEqual(
      [6, 7, 8, 9, 10].map((m) => new Date(T0 + m * MINUTE).toISOString()),
    );
    expect(answer.sites.a?.requests).toBe(5);
    expect(answer.sites.a?.hits.edge).toBe(4);
    expect(answer.sites.b?.requests).toBe(4);
    expect(answer.total.requests).toBe(9);
  });

  it("read hour buckets for 24h and 7d", () => {
    expect(windowPlan("24h", T0 + 5)).toMatchObject({ width: HOUR, count: 24, first: T0 - 23 * HOUR });
    expect(windowPlan("7d", T0).count).toBe(168);
    expect(windowPlan("1h", T0)).toMatchObject({ width: MINUTE, count: 60 });
  });
});

describe("an isolate's pending deltas", () => {
  it("are kept per minute and handed over once", () => {
    let now = T0 + 1_000;
    const stats = new Stats(() => now);
    stats.record("a", { hit: "edge" }, 10);
    stats.tierWrite("a", "kv");
    now += MINUTE;
    stats.record("a", "miss");
    stats.originBytes("a", 500);
    stats.originBytes("a", Number.NaN);
    const items = stats.take();
    expect(items.map((i) => [i.start, i.counters.requests])).toEqual([
      [T0, 1],
      [T0 + MINUTE, 1],
    ]);
    expect(items[1]?.counters.originBytes).toBe(500);
    expect(stats.take()).toEqual([]);
    // What the isolate counted since it started stays.
    expect(stats.snapshot().a?.requests).toBe(2);
    expect(stats.snapshot().a?.writes).toEqual({ kv: 1 });
  });

  it("are bounded: past the bound the oldest minute is dropped, and counted as dropped", () => {
    let now = T0;
    const stats = new Stats(() => now, 10_000, 3);
    for (let minute = 0; minute < 5; minute++) {
      stats.record("a", "miss");
      now += MINUTE;
    }
    const items = stats.take();
    expect(items.map((i) => i.start)).toEqual([T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE]);
    expect(stats.dropped).toBe(2);
    expect(stats.snapshot().a?.requests).toBe(5);
  });
});

describe("flushing", () => {
  function setup(send: (batch: StatsBatch) => Promise<unknown>, options = {}) {
    let now = T0;
    const stats = new Stats(() => now);
    const logs: string[] = [];
    const flusher = new StatsFlusher(
      stats,
      send,
      () => now,
      (event) => logs.push(event),
      {
        intervalMs: 10_000,
        threshold: 5,
        minGapMs: 1_000,
        timeoutMs: 50,
        maxBackoffMs: 60_000,
        ...options,
      },
    );
    const started: Promise<unknown>[] = [];
    const waitUntil = (work: Promise<unknown>) => started.push(work);
    return { stats, flusher, logs, started, waitUntil, advance: (ms: number) => (now += ms) };
  }

  it("happens at most once per interval, or when the threshold is reached (at most once a second)", async () => {
    const sent: StatsBatch[] = [];
    const { stats, flusher, started, waitUntil, advance } = setup(async (batch) => {
      sent.push(batch);
    });
    stats.record("a", "miss");
    flusher.maybeFlush(waitUntil);
    expect(started).toHaveLength(0);
    advance(10_000);
    flusher.maybeFlush(waitUntil);
    flusher.maybeFlush(waitUntil);
    expect(started).toHaveLength(1);
    await Promise.all(started);
    expect(sent[0]?.items[0]?.counters.requests).toBe(1);
    for (let i = 0; i < 5; i++) stats.record("a", "miss");
    // The threshold is reached, but the last flush was just now: not twice within a second.
    flusher.maybeFlush(waitUntil);
    expect(started).toHaveLength(1);
    advance(1_000);
    flusher.maybeFlush(waitUntil);
    expect(started).toHaveLength(2);
    await Promise.all(started);
    expect(sent).toHaveLength(2);
    expect(sent[1]?.items[0]?.counters.requests).toBe(5);
  });

  it("keeps a failed or hung flush's batch, backs off, and sends it again with its id; never rejects", async () => {
    let mode: "down" | "hung" | "up" = "down";
    const sent: StatsBatch[] = [];
    const tried: string[] = [];
    const { stats, flusher, logs, started, waitUntil, advance } = setup((batch) => {
      tried.push(batch.id);
      if (mode === "down") return Promise.reject(new Error("aggregator unreachable"));
      if (mode === "hung") return new Promise(() => {});
      sent.push(batch);
      return Promise.resolve();
    });
    stats.record("a", "miss");
    expect(await flusher.flush()).toBe(false);
    expect(flusher.status).toMatchObject({ failures: 1, failing: 1 });
    stats.record("a", "miss");
    mode = "hung";
    expect(await flusher.flush()).toBe(false);
    expect(flusher.status.failing).toBe(2);
    expect(tried[1]).toBe(tried[0]);
    // Backing off: the threshold does not hurry a failing aggregator, and the interval has doubled twice.
    for (let i = 0; i < 10; i++) stats.record("a", "miss");
    advance(10_000);
    flusher.maybeFlush(waitUntil);
    expect(started).toHaveLength(0);
    mode = "up";
    advance(30_000);
    flusher.maybeFlush(waitUntil);
    await Promise.all(started);
    // The kept batch (its one count) with its id, then what was counted meanwhile in a batch of its own.
    expect(sent.map((batch) => batch.id)).toEqual([tried[0], tried[3]]);
    expect(sent.map((batch) => batch.items.reduce((sum, item) => sum + item.counters.requests, 0))).toEqual([1, 11]);
    expect(flusher.status.failing).toBe(0);
    expect(logs.filter((event) => event === "stats.flush-failed")).toHaveLength(2);
  });

  it("drops a batch after MAX_ATTEMPTS failures, counting what it held as dropped", async () => {
    const { stats, flusher } = setup(() => Promise.reject(new Error("down")));
    for (let i = 0; i < 3; i++) stats.record("a", "miss");
    for (let i = 0; i < MAX_ATTEMPTS; i++) expect(await flusher.flush()).toBe(false);
    expect(stats.dropped).toBe(3);
    expect(await flusher.flush()).toBe(true);
  });
});
