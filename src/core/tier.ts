import type { StoredEntry } from "./entry";

/** What a tier hands back: the record and, unless the caller only needs headers, the body. */
export interface CachedObject {
  entry: StoredEntry;
  body: ReadableStream<Uint8Array>;
}

/**
 * The one contract every cache tier implements (Cache API, KV, R2, memory). A tier stores opaque bodies
 * under Tiercel's keys; freshness is decided above it. `retention` is how long, in seconds, the tier
 * should keep the entry (it may drop it sooner). Tiers throw on failure; the pipeline skips a tier that
 * throws or is slow.
 */
export interface Tier {
  /** Short name used in Cache-Status, Server-Timing and logs: "edge", "kv". */
  readonly name: string;
  get(key: string): Promise<CachedObject | null>;
  put(key: string, entry: StoredEntry, body: Uint8Array, retention: number): Promise<void>;
  delete(key: string): Promise<void>;
}
