import { DurableObject } from "cloudflare:workers";
import { answerSince, FEED_FRESH_MS, FEED_LOG_ENTRIES, type FeedAppend } from "../sites/control";
import { FEED_TABLES, type FeedAnswer, type FeedChange } from "../sites/store";

/**
 * `CONTROL` → ControlFeed: one instance (named "feed") that every owner appends its committed changes to,
 * and every data center asks "changes since N" (src/sites/control.ts). A bounded log in SQLite: the last
 * `FEED_LOG_ENTRIES` changes; an isolate further behind is told to reset (`answerSince`, pure).
 */
export class ControlFeed extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    for (const statement of FEED_TABLES) ctx.storage.sql.exec(statement);
  }

  /** Appends one change; its sequence number. */
  append(change: FeedAppend): number {
    const at = Date.now();
    const sql = this.ctx.storage.sql;
    return this.ctx.storage.transactionSync(() => {
      const seq = this.latest() + 1;
      sql.exec("INSERT INTO feed (seq, at, body) VALUES (?, ?, ?)", seq, at, JSON.stringify({ ...change, seq, at }));
      sql.exec(
        "INSERT INTO feed_meta (name, value) VALUES ('latest', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        seq,
      );
      sql.exec("DELETE FROM feed WHERE seq <= ?", seq - FEED_LOG_ENTRIES);
      return seq;
    });
  }

  since(since: number): FeedAnswer {
    const sql = this.ctx.storage.sql;
    const rows =
      since === 0
        ? sql.exec<{ body: string }>("SELECT body FROM feed WHERE at >= ? ORDER BY seq", Date.now() - FEED_FRESH_MS)
        : sql.exec<{ body: string }>("SELECT body FROM feed WHERE seq > ? ORDER BY seq", since);
    const changes = rows.toArray().map((row) => JSON.parse(row.body) as FeedChange);
    const oldest = sql.exec<{ v: number | null }>("SELECT MIN(seq) AS v FROM feed").toArray()[0]?.v ?? null;
    const latest = this.latest();
    return answerSince(changes, oldest ?? latest + 1, latest, since);
  }

  private latest(): number {
    const row = this.ctx.storage.sql
      .exec<{ value: number }>("SELECT value FROM feed_meta WHERE name = 'latest'")
      .toArray()[0];
    return row?.value ?? 0;
  }
}
