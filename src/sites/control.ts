import { withDeadline } from "../core/deadline";
import { CONTROL_CACHE_ORIGIN, type ControlledStore, type FeedAnswer, type FeedChange, type PurgeDelta } from "./store";

/**
 * The control plane's fast path (docs/architecture.md, "Control plane"): owners append every committed
 * change to one feed (`CONTROL` → ControlFeed), and each isolate asks it for the changes since the last
 * one it applied, at most once per window (`CONTROL_WINDOW_MS`). One isolate per data center asks per
 * window: the answer is kept in the data center's Cache API under the window and the sequence asked from,
 * and the others read it there. While the feed has answered within its window, the isolate keeps configs
 * and purge states in memory with no TTL (the feed says when they change); when it has not, everything
 * falls back to the TTLs and KV. A request never waits longer than `waitMs` for a check.
 */

/** How many records a purge delta may carry inline in the feed; a larger one only names its version. */
export const FEED_INLINE_RECORDS = 64;
/** How many changes the feed keeps; an isolate further behind is told to reset. */
export const FEED_LOG_ENTRIES = 512;
/** A new isolate (asking since 0) gets the changes of this long ago: longer than KV's lag plus the micro-cache. */
export const FEED_FRESH_MS = 120_000;

/** The change an owner appends, without the feed's sequence and time. */
export type FeedAppend = Omit<FeedChange, "seq" | "at">;

/** A purge change for the feed: the delta inline when it is small. */
export function purgeChange(delta: PurgeDelta): NonNullable<FeedChange["purge"]> {
  const records = delta.urls.length + delta.tags.length + delta.softTags.length;
  return records <= FEED_INLINE_RECORDS ? { version: delta.version, delta } : { version: delta.version };
}

/**
 * What the feed answers to "changes since `since`", given the changes it holds after `since` (or, for 0, of
 * the last `FEED_FRESH_MS`: what a new isolate gets), the oldest sequence it holds and the latest it gave.
 * A sequence older than the log keeps, or newer than the feed's own (the feed lost its storage), is a reset.
 */
export function answerSince(changes: FeedChange[], oldest: number, latest: number, since: number): FeedAnswer {
  if (since === 0) return { seq: latest, changes };
  if (since > latest || since < oldest - 1) return { seq: latest, reset: true };
  return { seq: latest, changes: changes.filter((change) => change.seq > since) };
}

export interface ControlClientOptions {
  store: ControlledStore;
  /** Asks the feed (one Durable Object request). */
  feed(since: number): Promise<FeedAnswer>;
  /** This data center's Cache API cache for feed answers; without one, every isolate asks the feed. */
  cache?: Cache | Promise<Cache>;
  now(): number;
  windowMs: number;
  /** Longest a request waits for a check (it goes on in the background). */
  waitMs?: number;
  /** Deadline for asking the feed. */
  timeoutMs?: number;
  log?(event: string, fields: Record<string, unknown>): void;
}

export interface ControlCounters {
  checks: number;
  feedRequests: number;
  cacheAnswers: number;
  failures: number;
  changes: number;
  resets: number;
}

export class ControlClient {
  /** The last sequence applied; 0 before the first answer. */
  seq = 0;
  private lastOk = Number.NEGATIVE_INFINITY;
  private nextCheckAt = 0;
  private checking: Promise<void> | null = null;
  readonly counters: ControlCounters = {
    checks: 0,
    feedRequests: 0,
    cacheAnswers: 0,
    failures: 0,
    changes: 0,
    resets: 0,
  };

  constructor(private readonly options: ControlClientOptions) {
    options.store.attach(() => this.current());
  }

  /**
   * Whether what the isolate knows is known current: the feed answered a check that started within the
   * last two windows (a check runs every window while requests come).
   */
  current(): boolean {
    return this.options.now() - this.lastOk <= 2 * this.options.windowMs;
  }

  /** Called before each request: starts a check when one is due and waits for it at most `waitMs`. */
  async beforeRequest(waitUntil?: (work: Promise<unknown>) => void): Promise<void> {
    const now = this.options.now();
    if (!this.checking && now >= this.nextCheckAt) {
      this.nextCheckAt = now + this.options.windowMs;
      this.checking = this.check(now, waitUntil).finally(() => {
        this.checking = null;
      });
      waitUntil?.(this.checking);
    }
    const checking = this.checking;
    if (!checking) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      checking,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.waitMs ?? 50);
      }),
    ]);
    clearTimeout(timer);
  }

  /** One check: the data center's cached answer for this window and sequence, else the feed's. */
  private async check(startedAt: number, waitUntil?: (work: Promise<unknown>) => void): Promise<void> {
    this.counters.checks += 1;
    const since = this.seq;
    const window = Math.floor(startedAt / this.options.windowMs);
    const url = `${CONTROL_CACHE_ORIGIN}/feed/${window}/${since}`;
    try {
      const cache = this.options.cache ? await this.options.cache : undefined;
      let answer: FeedAnswer | undefined;
      const hit = await cache?.match(url).catch(() => undefined);
      if (hit) {
        answer = (await hit.json()) as FeedAnswer;
        this.counters.cacheAnswers += 1;
      } else {
        this.counters.feedRequests += 1;
        answer = await withDeadline(this.options.feed(since), this.options.timeoutMs ?? 2_000, "control feed");
        const ttl = Math.max(1, Math.ceil((2 * this.options.windowMs) / 1000));
        const headers = { "content-type": "application/json", "cache-control": `max-age=${ttl}` };
        // Shared with the data center's other isolates after it is applied here: a request waiting for this
        // check (beforeRequest) does not wait for the put too.
        const put = cache?.put(url, new Response(JSON.stringify(answer), { headers })).catch(() => {});
        if (put && waitUntil) waitUntil(put);
        else await put;
      }
      this.apply(since, answer);
      this.lastOk = startedAt;
    } catch (error) {
      this.counters.failures += 1;
      this.options.log?.("control.check-failed", { error: String(error) });
    }
  }

  private apply(since: number, answer: FeedAnswer): void {
    // Another check may have moved on meanwhile (it cannot: one at a time), or a cached answer may be older.
    if (this.seq !== since) return;
    if ("reset" in answer) {
      this.counters.resets += 1;
      this.options.store.reset();
      this.seq = answer.seq;
      return;
    }
    for (const change of answer.changes) {
      if (change.seq <= since && since !== 0) continue;
      this.options.store.note(change);
      this.counters.changes += 1;
    }
    this.seq = Math.max(this.seq, answer.seq);
  }
}
