import type { StoredEntry } from "./entry";

/**
 * Request collapsing within one isolate: while one origin fetch for a key is in flight, other requests for
 * that key wait for its outcome instead of going to the origin themselves.
 */
export type Shared =
  /** A small stored response: waiters answer from these bytes. `values` are the leader's selecting values. */
  | { kind: "entry"; entry: StoredEntry; bytes: Uint8Array; values: string }
  /** A large response now stored in the tiers: waiters read it from there. */
  | { kind: "stored" }
  /** Nothing to share (uncacheable, private, failed): each waiter goes to the origin itself. */
  | { kind: "none" };

export interface Flight {
  /** Settles the flight for every waiter; later calls are ignored. */
  settle(outcome: Shared): void;
}

export interface Collapser {
  /** The outcome of the flight in progress for `key`, if there is one. */
  waitFor(key: string): Promise<Shared> | undefined;
  /** Starts a flight for `key`; the caller must settle it. */
  begin(key: string): Flight;
}

/** A collapser holding at most `limit` flights; beyond that, requests simply are not collapsed. */
export function createCollapser(limit = 10_000): Collapser {
  const flights = new Map<string, Promise<Shared>>();
  return {
    waitFor(key) {
      return flights.get(key);
    },
    begin(key) {
      let resolve!: (outcome: Shared) => void;
      const promise = new Promise<Shared>((r) => {
        resolve = r;
      });
      const tracked = flights.size < limit && !flights.has(key);
      if (tracked) flights.set(key, promise);
      let settled = false;
      return {
        settle(outcome) {
          if (settled) return;
          settled = true;
          if (tracked) flights.delete(key);
          resolve(outcome);
        },
      };
    },
  };
}
