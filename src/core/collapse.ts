import type { StoredEntry } from "./entry";
import type { FillTap } from "./stream-fanout";

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
  /**
   * A large body streaming to its tiers: a waiter takes its range from `tap` as it arrives when it can, else
   * waits for `stored` (true once a tier holds the whole body) and reads the tiers. The flight stays joinable
   * until the store is over, however long the body takes.
   */
  | { kind: "streaming"; entry: StoredEntry; values: string; tap: FillTap; stored: Promise<boolean> }
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
  /** The longest a streaming flight (settled, its body still filling) stays joinable, in milliseconds. */
  maxStreamMs?: number;
  now?: () => number;
}

export function createCollapser(options: CollapserOptions = {}): Collapser {
  const limit = options.limit ?? 10_000;
  const maxWaitMs = options.maxWaitMs ?? 30_000;
  const maxStreamMs = options.maxStreamMs ?? 600_000;
  const now = options.now ?? Date.now;
  /** `streaming`: settled with a body still filling, joinable until then (or `maxStreamMs`). */
  const flights = new Map<string, { promise: Promise<Shared>; started: number; streaming?: boolean }>();
  return {
    waitFor(key) {
      const flight = flights.get(key);
      if (!flight) return undefined;
      const waited = now() - flight.started;
      if (flight.streaming && waited < maxStreamMs) return flight.promise;
      if (waited >= maxWaitMs || flight.streaming) {
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
          const mine = tracked && flights.get(key)?.promise === promise;
          if (mine && outcome.kind === "streaming") {
            // Joinable while the body fills: forgotten once every tier is done with it.
            flights.set(key, { promise, started: now(), streaming: true });
            const forget = () => {
              if (flights.get(key)?.promise === promise) flights.delete(key);
            };
            outcome.stored.then(forget, forget);
          } else if (mine) flights.delete(key);
          resolve(outcome);
        },
      };
    },
  };
}
