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
 *
 * `put` is all or nothing: when the body is a stream that errors (a body that broke off, or one whose
 * length check failed), the put rejects and a later `get` finds the previous entry or nothing, never a
 * partial body. A streamed body is `entry.length` bytes long, unless the put is given `unknown`: then
 * `entry.length` is ignored, the tier counts the bytes as it writes them (refusing the put past
 * `unknown.maxBytes`), and the record it writes — last, after the body — carries the counted length, so
 * nothing reachable is ever incomplete (a decoded body, or one sent chunked without a length).
 *
 * `get` hands back the bytes as they are stored, unchecked: whoever reads an entry checks its body against
 * the record (`readChecked` in lookup.ts), so the check lives in one place for every tier. A tier that finds
 * damage only it can see (a missing part) errors the body with a `DamagedEntryError`.
 */
export interface Tier {
  /** Short name used in Cache-Status, Server-Timing and logs: "edge", "kv". */
  readonly name: string;
  get(key: string): Promise<CachedObject | null>;
  put(
    key: string,
    entry: StoredEntry,
    body: Uint8Array | ReadableStream<Uint8Array>,
    retention: number,
    unknown?: UnknownLength,
  ): Promise<void>;
  delete(key: string): Promise<void>;
}

/** A streamed put whose length is not known up front: the tier counts it, up to `maxBytes`. */
export interface UnknownLength {
  maxBytes: number;
}
