import { OptimizeError } from "./types";

/**
 * Admission for transforms: at most `concurrency` run at once, at most `maxWaiting` wait (in order) for a
 * turn, and past that a transform is refused at once ("busy"), which the optimizer treats as a failure: the
 * original is served and stands in briefly.
 *
 * Every transform starts on a fresh turn of the event loop (a timer, not a microtask). The minifiers and the
 * WASM codecs compute synchronously inside promise callbacks; started from the previous one's `.then`, k
 * queued transforms would run as one block of k × their CPU during which the isolate answers nothing else —
 * no other site's hit, no timer, not even the finished transforms' own responses (issue 11 §7: four
 * concurrent cache-busting minifies of a 900 KB script held another site's hit for minutes, one I/O step
 * of it per block). With a turn between them, other work in the isolate waits for one transform at most.
 */
export class TransformQueue {
  /** Running transforms: id → when they started. */
  private readonly running = new Map<number, number>();
  /** Waiting transforms: id → when they last checked in (ids grow: the smallest waited longest). */
  private readonly waiting = new Map<number, number>();
  private nextId = 0;

  constructor(
    private readonly maxWaiting = 4,
    private readonly concurrency = 1,
    private readonly now: () => number = Date.now,
  ) {}

  /** Transforms running or waiting. */
  get size(): number {
    return this.running.size + this.waiting.size;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    this.prune();
    if (this.running.size >= this.concurrency && this.waiting.size >= this.maxWaiting) {
      throw new OptimizeError("busy", `${this.waiting.size} transforms are already waiting`);
    }
    const id = this.nextId++;
    if (this.running.size < this.concurrency && this.waiting.size === 0) {
      this.running.set(id, this.now());
    } else {
      // Each waiter checks in on its own timer, in its own request: a place is never handed to a request
      // that is gone (the runtime drops the continuations of a finished request, so a place passed to one
      // through a promise would be lost for good).
      this.waiting.set(id, this.now());
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        this.prune();
        this.waiting.set(id, this.now());
        const first = Math.min(...this.waiting.keys());
        if (first === id && this.running.size < this.concurrency) break;
      }
      this.waiting.delete(id);
      this.running.set(id, this.now());
    }
    await nextTurn();
    try {
      return await work();
    } finally {
      this.running.delete(id);
    }
  }

  /** Forgets waiters that stopped checking in and transforms that outlived any deadline (their requests are gone). */
  private prune(): void {
    const now = this.now();
    for (const [id, seen] of this.waiting) if (now - seen > STALE_WAITER_MS) this.waiting.delete(id);
    for (const [id, started] of this.running) if (now - started > STALE_RUNNING_MS) this.running.delete(id);
  }
}

/** How often a waiting transform looks for a free place. */
const POLL_MS = 10;
/**
 * A waiter that has not checked in for this long is gone. (The clock stands still while a transform
 * computes and jumps after it, so a live waiter may be dropped too: it checks in again, keeping its place.)
 */
const STALE_WAITER_MS = 1_000;
/** A running transform older than this is gone (the caller's deadline is 20 s). */
const STALE_RUNNING_MS = 60_000;

/** Resolves on a later turn of the event loop, after pending I/O callbacks have run. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Bounds transforms per site and per isolate, so one site's burst cannot take every turn: a transform takes
 * a place in its site's queue, then one in the isolate's. A site holds at most `perSite.concurrency` of the
 * isolate's running places, so another site's transform always finds one free or waits behind few.
 */
export class TransformLimiter {
  private readonly sites = new Map<string, TransformQueue>();
  private readonly isolate: TransformQueue;

  constructor(
    private readonly perSite: { concurrency: number; maxWaiting: number },
    total: { concurrency: number; maxWaiting: number },
  ) {
    this.isolate = new TransformQueue(total.maxWaiting, total.concurrency);
  }

  async run<T>(site: string, work: () => Promise<T>): Promise<T> {
    let queue = this.sites.get(site);
    if (!queue) {
      queue = new TransformQueue(this.perSite.maxWaiting, this.perSite.concurrency);
      this.sites.set(site, queue);
    }
    try {
      return await queue.run(() => this.isolate.run(work));
    } finally {
      // Idle sites are forgotten, so the map holds only sites with transforms in flight.
      if (queue.size === 0 && this.sites.get(site) === queue) this.sites.delete(site);
    }
  }
}
