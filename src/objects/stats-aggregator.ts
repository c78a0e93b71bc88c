import { DurableObject } from "cloudflare:workers";
import {
  addCounters,
  BATCH_ID_MEMORY,
  type BucketRow,
  batchIdOf,
  isWindow,
  parseCounters,
  retentionCutoffs,
  rowsOf,
  SITE_ID,
  type StatsAggregatorApi,
  type StatsBatch,
  type StatsWindow,
  summarize,
  type WindowName,
  windowPlan,
} from "../core/stats-buckets";

/** How often, at most, a flush also deletes the buckets past their retention. */
const PRUNE_EVERY_MS = 60_000;

/**
 * `STATS` → StatsAggregator: one instance (named "global") that sums the isolates' flushed deltas into
 * time buckets in its SQLite storage: 1-minute buckets kept 48 h, 1-hour buckets kept 35 days, one row per
 * bucket and site, and the ids of the last hour's batches. Each flush is applied in one synchronous
 * transaction (no await inside), so concurrent flushes are serialized by the object and none is lost. What
 * goes in and comes out is decided by the pure functions of src/core/stats-buckets.ts.
 */
export class StatsAggregator extends DurableObject<Env> implements StatsAggregatorApi {
  private prunedAt = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // The ids of recent batches: a retried flush whose first try got through is not added twice.
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL)");
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS batches_by_at ON batches (at)");
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS buckets (width INTEGER NOT NULL, start INTEGER NOT NULL, site TEXT NOT NULL, counters TEXT NOT NULL, PRIMARY KEY (width, start, site))",
    );
  }

  async add(batch: StatsBatch): Promise<{ refused: number; duplicate?: true }> {
    const now = Date.now();
    const id = batchIdOf(batch);
    const { rows, refused } = rowsOf(batch, now);
    const duplicate = this.ctx.storage.transactionSync(() => {
      if (id !== null) {
        if (this.ctx.storage.sql.exec("SELECT 1 FROM batches WHERE id = ?", id).toArray().length > 0) return true;
        this.ctx.storage.sql.exec("INSERT INTO batches (id, at) VALUES (?, ?)", id, now);
      }
      for (const row of rows) this.addRow(row);
      if (now - this.prunedAt >= PRUNE_EVERY_MS) {
        for (const { width, before } of retentionCutoffs(now)) {
          this.ctx.storage.sql.exec("DELETE FROM buckets WHERE width = ? AND start < ?", width, before);
        }
        this.ctx.storage.sql.exec("DELETE FROM batches WHERE at < ?", now - BATCH_ID_MEMORY);
        this.prunedAt = now;
      }
      return false;
    });
    return duplicate ? { refused: 0, duplicate } : { refused };
  }

  async query(window: WindowName, site: string | null): Promise<StatsWindow> {
    if (!isWindow(window) || (site !== null && !SITE_ID.test(site))) throw new TypeError("bad stats query");
    const plan = windowPlan(window, Date.now());
    const cursor =
      site === null
        ? this.ctx.storage.sql.exec<{ start: number; site: string; counters: string }>(
            "SELECT start, site, counters FROM buckets WHERE width = ? AND start >= ? AND start <= ?",
            plan.width,
            plan.first,
            plan.last,
          )
        : this.ctx.storage.sql.exec<{ start: number; site: string; counters: string }>(
            "SELECT start, site, counters FROM buckets WHERE width = ? AND start >= ? AND start <= ? AND site = ?",
            plan.width,
            plan.first,
            plan.last,
            site,
          );
    return summarize(plan, rowsFrom(cursor));
  }

  private addRow(row: BucketRow): void {
    const stored = this.ctx.storage.sql
      .exec<{ counters: string }>(
        "SELECT counters FROM buckets WHERE width = ? AND start = ? AND site = ?",
        row.width,
        row.start,
        row.site,
      )
      .toArray()[0];
    const counters = stored ? (parseCounters(JSON.parse(stored.counters)) ?? undefined) : undefined;
    const next = counters ? addCounters(counters, row.counters) : row.counters;
    this.ctx.storage.sql.exec(
      "INSERT INTO buckets (width, start, site, counters) VALUES (?, ?, ?, ?) ON CONFLICT (width, start, site) DO UPDATE SET counters = excluded.counters",
      row.width,
      row.start,
      row.site,
      JSON.stringify(next),
    );
  }
}

function* rowsFrom(cursor: Iterable<{ start: number; site: string; counters: string }>) {
  for (const row of cursor) {
    const counters = parseCounters(JSON.parse(row.counters));
    if (counters) yield { start: row.start, site: row.site, counters };
  }
}
