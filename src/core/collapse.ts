import type { StoredEntry } from "./entry";

/**
 * Request collapsing within one isolate: while one origin fetch for a key is in flight, other requests for
 * that key wait for its outcome instead of going to the origin themselves.
 *
 * No waiter can hang: a waiter gives up after `maxWaitMs` and goes to the origin itself, and a flight older
 * than that is forgotten (its leader may have been cancelled with its client, before it could settle).
 */
export type Shared =
  /** A small stored response: waiters answer from these bytes. `values` are the leader's selecting values. */
  | { kind: "entry"; entry: StoredEntry; bytes: Uint8Array; values: string }
  /** Nothing to share (uncacheable, private, failed, too large to hold, too slow): each waiter goes itself. */
  | { kind: "none" };

export interface Flight {
  /** Settles the flight for every waiter; later calls are ignored. */
  settle(outcome: Shared): void;
}

export interface Collapser {
  /** The outcome of the flight in progress for `key` (or "none" after `maxWaitMs`), if there is one. */
  waitFor(key: string): Promise<Shared> | undefined;
  /** Starts a flight for `key`; the caller must settle it. */
  begin(key: string): Flight;
}

export interface CollapserOptions {
  /** At most this many flights; beyond that, requests are simply not collapsed. */
  limit?: number;
  /** The longest a waiter waits, and the longest a flight is remembered, in milliseconds. */
  maxWaitMs?: number;
  now?: () => number;
}

export function createCollapser(options: CollapserOptions = {}): Collapser {
  const limit = options.limit ?? 10_000;
  const maxWaitMs = options.maxWaitMs ?? 30_000;
  const now = options.now ?? Date.now;
  const flights = new Map<string, { promise: Promise<Shared>; started: number }>();
  return {
    waitFor(key) {
      const flight = flights.get(key);
      if (!flight) return undefined;
      const waited = now() - flight.started;
      if (waited >= maxWaitMs) {
        flights.delete(key);
        return undefined;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const giveUp = new Promise<Shared>((resolve) => {
        timer = setTimeout(() => resolve({ kind: "none" }), maxWaitMs - waited);
      });
      return Promise.race([flight.promise, giveUp]).finally(() => clearTimeout(timer));
    },
    begin(key) {
      let resolve!: (outcome: Shared) => void;
      const promise = new Promise<Shared>((r) => {
        resolve = r;
      });
      const tracked = flights.size < limit && !flights.has(key);
      if (tracked) flights.set(key, { promise, started: now() });
      let settled = false;
      return {
        settle(outcome) {
          if (settled) return;
          settled = true;
          if (tracked && flights.get(key)?.promise === promise) flights.delete(key);
          resolve(outcome);
        },
      };
    },
  };
}
