import { createExecutionContext, env, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { handleAdmin } from "../../src/admin/api";
import { createCollapser } from "../../src/core/collapse";
import type { ErrorBody } from "../../src/core/errors";
import { respond } from "../../src/core/pipeline";
import { type SiteCounters, Stats, StatsFlusher } from "../../src/core/stats";
import {
  bucketStart,
  emptyCounters,
  HOUR,
  MINUTE,
  STATS_NAME,
  type StatsAggregatorApi,
  type StatsBatch,
  type StatsWindow,
} from "../../src/core/stats-buckets";
import { platformFor } from "../../src/worker";
import { adminCall, newSite, origin, send, unique } from "../support/harness";

/**
 * Global stats: separate isolates' counters (separate Stats instances, and the Worker's own) flush to the
 * one StatsAggregator, and the admin API answers their sums per window, whatever the concurrency.
 */

function aggregatorStub() {
  return env.STATS.get(env.STATS.idFromName(STATS_NAME));
}
const aggregator = aggregatorStub() as unknown as StatsAggregatorApi;

const quiet = () => {};

/** An isolate's worth of counting: its own Stats, flushing to the real aggregator (or to `send`). */
function isolate(send: (batch: StatsBatch) => Promise<unknown> = (batch) => aggregator.add(batch)) {
  const stats = new Stats(Date.now);
  const flusher = new StatsFlusher(stats, send, Date.now, quiet, {
    intervalMs: 0,
    threshold: 1,
    minGapMs: 0,
    timeoutMs: 2_000,
    maxBackoffMs: 0,
  });
  return { stats, flusher };
}

async function statsOf(query: string): Promise<StatsWindow & { isolate: { sites: Record<string, SiteCounters> } }> {
  const answer = await adminCall("GET", `/stats${query}`);
  expect(answer.status).toBe(200);
  return answer.body as never;
}

describe("global stats", () => {
  it("sums several isolates' flushes: totals per site and a zero-filled series", async () => {
    const site = unique("st");
    const isolates = [isolate(), isolate(), isolate()];
    let expected = 0;
    isolates.forEach(({ stats }, i) => {
      for (let n = 0; n <= i * 3; n++) {
        stats.record(site, { hit: n % 2 ? "kv" : "edge" }, 100);
        stats.tierRead(site, "edge");
        expected += 1;
      }
      stats.record(site, "miss");
      stats.originFetch(site);
      stats.originBytes(site, 1_000);
      stats.tierWrite(site, "kv");
      stats.error(site);
      stats.optimized(site, "failed", true);
      expected += 1;
    });
    for (const { flusher } of isolates) expect(await flusher.flush()).toBe(true);

    const answer = await statsOf(`?window=5m&site=${site}`);
    const total = answer.sites[site] as SiteCounters;
    expect(total.requests).toBe(expected);
    expect(total.misses).toBe(3);
    expect((total.hits.edge ?? 0) + (total.hits.kv ?? 0)).toBe(expected - 3);
    expect(total).toMatchObject({ originFetches: 3, originBytes: 3_000, errors: 3, writes: { kv: 3 } });
    expect(total.optimize).toMatchObject({ failed: 3, busy: 3 });
    expect(answer.total.requests).toBe(expected);
    expect(answer).toMatchObject({ scope: "global", window: "5m", bucketSeconds: 60 });
    expect(answer.series).toHaveLength(5);
    expect(answer.series.reduce((sum, point) => sum + point.values.requests, 0)).toBe(expected);
    // The current minute holds them (a flush that straddled a minute puts the rest in the one before).
    expect(answer.series.slice(0, 3).every((point) => point.values.requests === 0)).toBe(true);
    // The same figures in the hour buckets.
    expect((await statsOf(`?window=24h&site=${site}`)).sites[site]?.requests).toBe(expected);
  });

  it("loses nothing to concurrent flushes from many isolates", async () => {
    const site = unique("st");
    const isolates = Array.from({ length: 24 }, () => isolate());
    let expected = 0;
    isolates.forEach(({ stats }, i) => {
      for (let n = 0; n < 5 + i; n++) stats.record(site, "miss");
      expected += 5 + i;
    });
    // Each isolate flushes twice, all at once.
    const results = await Promise.all(
      isolates.flatMap(({ stats, flusher }) => [
        flusher.flush(),
        (async () => {
          stats.record(site, { hit: "edge" });
          return flusher.flush();
        })(),
      ]),
    );
    expected += isolates.length;
    expect(results.every(Boolean)).toBe(true);
    const answer = await statsOf(`?window=1h&site=${site}`);
    expect(answer.sites[site]?.requests).toBe(expected);
    expect(answer.sites[site]?.hits.edge).toBe(isolates.length);
  });

  it("counts traffic through the Worker and through other isolates' pipelines into one total", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("counted")}`;
    await origin.route(path, { body: "hello", headers: { "cache-control": "max-age=300" } });
    // This isolate: the Worker's own Stats and flusher.
    for (let i = 0; i < 4; i++) expect((await send(`http://${host}${path}`)).status).toBe(200);
    // Two more isolates: the same pipeline with Stats of their own, flushing after their requests.
    const others = [isolate(), isolate()];
    for (const other of others) {
      for (let i = 0; i < 3; i++) {
        const response = await send(`http://${host}${path}`, undefined, { stats: other.stats, flusher: other.flusher });
        expect(response.status).toBe(200);
      }
      await other.flusher.flush();
    }
    const answer = await statsOf(`?window=5m&site=${id}`);
    const own = answer.isolate.sites[id] as SiteCounters;
    expect(own.requests).toBe(4);
    expect(answer.sites[id]?.requests).toBe(10);
    expect(answer.sites[id]?.misses).toBe(1);
    expect(answer.sites[id]?.hits.edge).toBe(9);
    expect(answer.sites[id]?.originFetches).toBe(1);
    expect(answer.sites[id]?.originBytes).toBe(5);
    expect(answer.sites[id]?.writes).toMatchObject({ edge: 1, kv: 1 });
    // Every site, and the site's own route, say the same.
    expect((await statsOf("?window=5m")).sites[id]?.requests).toBe(10);
    const route = await adminCall("GET", `/sites/${id}/stats?window=5m`);
    expect((route.body.sites as Record<string, SiteCounters>)[id]?.requests).toBe(10);
  });

  it("counts a fill collapsed by the shield over several isolates as one origin fetch, and each request where it was made", async () => {
    const { id, host } = await newSite();
    const path = `/${unique("collapsed")}`;
    await origin.route(path, { size: 3000, delayMs: 200, headers: { "cache-control": "max-age=300" } });
    // Three isolates, each with its own counters and collapsing, sharing this data center's tiers and the shield.
    const isolates = [isolate(), isolate(), isolate()].map((one) => ({ ...one, collapser: createCollapser() }));
    const answers = await Promise.all(
      isolates.flatMap(({ stats, flusher, collapser }) =>
        Array.from({ length: 4 }, async () => {
          const ctx = createExecutionContext();
          const deps = {
            ...platformFor(env),
            stats,
            flusher,
            collapser,
            waitUntil: (w: Promise<unknown>) => ctx.waitUntil(w),
          };
          const response = await respond(new Request(`http://${host}${path}`), deps);
          const bytes = (await response.arrayBuffer()).byteLength;
          await waitOnExecutionContext(ctx);
          return { status: response.status, bytes };
        }),
      ),
    );
    expect(answers.every((answer) => answer.status === 200 && answer.bytes === 3000)).toBe(true);
    expect((await origin.hits(path)).hits).toBe(1);
    for (const { stats, flusher } of isolates) {
      expect(stats.snapshot(id)[id]?.requests).toBe(4);
      await flusher.flush();
    }
    const global = (await statsOf(`?window=5m&site=${id}`)).sites[id];
    expect(global?.requests).toBe(12);
    expect(global?.misses).toBe(12);
    expect(global?.originFetches).toBe(1);
    expect(global?.originBytes).toBe(3000);
    // The shield wrote the global tier once; each isolate's edge copy is its own (they share one Cache API here).
    expect(global?.writes.kv).toBe(1);
  });

  it("never fails a request when the aggregator is unreachable, and delivers the counts once it is back", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("down")}`;
    await origin.route(path, { body: "still served", headers: { "cache-control": "max-age=300" } });
    let down = true;
    const { stats, flusher } = isolate((batch) =>
      down ? Promise.reject(new Error("aggregator unreachable")) : aggregator.add(batch),
    );
    const hung = isolate(() => new Promise(() => {}));
    const hungFast = new StatsFlusher(hung.stats, () => new Promise(() => {}), Date.now, quiet, {
      intervalMs: 0,
      threshold: 1,
      minGapMs: 0,
      timeoutMs: 20,
      maxBackoffMs: 0,
    });
    for (let i = 0; i < 5; i++) {
      const response = await send(`http://${host}${path}`, undefined, { stats, flusher });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe("still served");
      const other = await send(`http://${host}${path}`, undefined, { stats: hung.stats, flusher: hungFast });
      expect(other.status).toBe(200);
    }
    expect(flusher.status.failures).toBeGreaterThanOrEqual(5);
    expect(hungFast.status.failures).toBeGreaterThanOrEqual(1);
    expect(stats.pendingEvents).toBeGreaterThan(0);
    down = false;
    expect(await flusher.flush()).toBe(true);
    const answer = await statsOf(`?window=5m&site=${id}`);
    // Only this isolate's 5 got through (the hung one's stay pending).
    expect(answer.sites[id]?.requests).toBe(5);
  });

  it("adds a retried batch once when its first try got through but its answer was lost", async () => {
    const site = unique("st");
    let tries = 0;
    const ids: string[] = [];
    const { stats, flusher } = isolate(async (batch) => {
      tries += 1;
      ids.push(batch.id);
      await aggregator.add(batch);
      if (tries === 1) throw new Error("the answer was lost");
    });
    for (let i = 0; i < 7; i++) stats.record(site, "miss");
    expect(await flusher.flush()).toBe(false);
    expect(await flusher.flush()).toBe(true);
    expect(ids).toHaveLength(2);
    expect(ids[1]).toBe(ids[0]);
    expect((await statsOf(`?window=5m&site=${site}`)).sites[site]?.requests).toBe(7);
  });

  it("keeps buckets within their retention, and refuses items outside it", async () => {
    const site = unique("st");
    const now = Date.now();
    const minute = bucketStart(now, MINUTE);
    const counted = (requests: number) => ({ ...emptyCounters(), requests });
    const { refused } = await aggregator.add({
      id: crypto.randomUUID(),
      items: [
        { start: minute, site, counters: counted(1) },
        { start: minute - 47 * HOUR, site, counters: counted(1) },
        { start: minute - 49 * HOUR, site, counters: counted(1) },
        { start: minute + HOUR, site, counters: counted(1) },
      ],
    });
    expect(refused).toBe(2);
    await runInDurableObject(aggregatorStub(), async (instance, state) => {
      // Rows older than the retention (as an aggregator that ran for months would hold) are pruned.
      const old = (width: number, start: number) =>
        state.storage.sql.exec(
          "INSERT OR REPLACE INTO buckets (width, start, site, counters) VALUES (?, ?, ?, ?)",
          width,
          start,
          site,
          JSON.stringify(counted(1)),
        );
      old(MINUTE, minute - 48 * HOUR - MINUTE);
      old(HOUR, bucketStart(now, HOUR) - 36 * 24 * HOUR);
      old(HOUR, bucketStart(now, HOUR) - 34 * 24 * HOUR);
      (instance as unknown as { prunedAt: number }).prunedAt = 0;
      await instance.add({ id: crypto.randomUUID(), items: [{ start: minute, site, counters: counted(1) }] });
      const rows = state.storage.sql
        .exec<{ width: number; start: number }>(
          "SELECT width, start FROM buckets WHERE site = ? ORDER BY width, start",
          site,
        )
        .toArray();
      const oldestMinute = Math.min(...rows.filter((r) => r.width === MINUTE).map((r) => r.start));
      const oldestHour = Math.min(...rows.filter((r) => r.width === HOUR).map((r) => r.start));
      expect(oldestMinute).toBe(minute - 47 * HOUR);
      expect(oldestHour).toBe(bucketStart(now, HOUR) - 34 * 24 * HOUR);
      expect(rows.filter((r) => r.width === MINUTE)).toHaveLength(2);
    });
    expect((await statsOf(`?window=5m&site=${site}`)).sites[site]?.requests).toBe(2);
  });

  it("refuses an unknown window or a malformed site id with 400", async () => {
    const window = await adminCall("GET", "/stats?window=2h");
    expect(window.status).toBe(400);
    expect((window.body as unknown as ErrorBody).error.code).toBe("invalid_window");
    const site = await adminCall("GET", "/stats?site=no/such");
    expect(site.status).toBe(400);
    expect((site.body as unknown as ErrorBody).error.code).toBe("invalid_site");
  });

  it("answers 503 stats_unavailable when the aggregator cannot be reached", async () => {
    const platform = platformFor(env);
    const unreachable = () => Promise.reject(new Error("aggregator unreachable"));
    const response = await handleAdmin(
      new Request("http://admin.test/_tiercel/api/v1/stats?window=5m", {
        headers: { authorization: "Bearer stats-test-token-0123456789abcdef0123" },
      }),
      {
        control: {
          registry: () => {
            throw new Error("not used");
          },
          owner: () => {
            throw new Error("not used");
          },
          stats: () => ({ add: unreachable, query: unreachable }),
        },
        token: "stats-test-token-0123456789abcdef0123",
        sites: platform.sites,
        tiers: platform.tiers,
        stats: new Stats(Date.now),
        now: Date.now,
        log: quiet,
        tierTimeoutMs: 100,
        invalidated: new Map(),
      },
    );
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(((await response.json()) as ErrorBody).error.code).toBe("stats_unavailable");
  });

  it("counts a failed request as the site's error, and the Worker flushes in the background", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("broken")}`;
    await origin.route(path, { hangUp: true });
    const ctx = createExecutionContext();
    const response = await respond(new Request(`http://${host}${path}`), {
      ...platformFor(env),
      waitUntil: (work) => ctx.waitUntil(work),
    });
    expect(response.status).toBeGreaterThanOrEqual(500);
    await waitOnExecutionContext(ctx);
    expect((await statsOf(`?window=5m&site=${id}`)).sites[id]?.errors).toBe(1);
  });
});
