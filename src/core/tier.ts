import type { StoredEntry } from "./entry";

/** What a tier hands back: the record and, unless the caller only needs headers, the body. */
export interface CachedObject {
  entry: StoredEntry;
  body: ReadableStream<Uint8Array>;
  /**
   * Set when the get was ranged and the tier read only those bytes: `body` is bytes `start` to `end`
   * (inclusive) of the stored body. Absent, `body` is the whole body (a tier may ignore a range).
   */
  range?: { start: number; end: number };
  /**
   * An id of this stored copy, set by a tier whose copies never change once written (a new put is a new copy
   * with a new id): the edge. A reader that checked a copy whole may skip checking it again
   * (`readChecked` in lookup.ts). Tiers whose bytes others can damage at rest or in transit set none.
   */
  copy?: string;
}

/**
 * A byte range asked of a tier before its record (and so the body's length) is known: `offset` and an
 * optional `length` (to the end when absent), or the last `suffix` bytes.
 */
export type ByteRange = { offset: number; length?: number } | { suffix: number };

/** The inclusive bytes a range selects from a body of `length` bytes; undefined when it selects none. */
export function resolveRange(range: ByteRange, length: number): { start: number; end: number } | undefined {
  if (!Number.isSafeInteger(length) || length <= 0) return undefined;
  if ("suffix" in range) {
    if (!(range.suffix > 0)) return undefined;
    return { start: Math.max(0, length - range.suffix), end: length - 1 };
  }
  if (!(range.offset >= 0) || range.offset >= length) return undefined;
  const end = range.length === undefined ? length - 1 : Math.min(length - 1, range.offset + range.length - 1);
  return end < range.offset ? undefined : { start: range.offset, end };
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
 * `refresh`, where a tier has it, rewrites only the record of an entry that is there (a 304 freshened it),
 * leaving the body where it is; it resolves false when there is no such entry (or its body is not the one
 * the record describes), and the caller then stores the body again.
 *
 * `place` says where a tier that splits by size (the global tier with an R2 bucket, tiers/global.ts) keeps
 * the body: "large" past the site's `cache.largeObjectBytes` or of unknown length, else "small". Other tiers
 * ignore it.
 *
 * `global` marks a tier shared by every data center (KV, R2), for the site's global admission policy.
 *
 * `get` hands back the bytes as they are stored, unchecked: whoever reads an entry checks its body against
 * the record (`readChecked` in lookup.ts), so the check lives in one place for every tier. A tier that finds
 * damage only it can see (a missing part) errors the body with a `DamagedEntryError`.
 */
export interface Tier {
  /** Short name used in Cache-Status, Server-Timing and logs: "edge", "kv". */
  readonly name: string;
  /**
   * With `range`, a tier that can reads only the bytes the range selects from the stored body (resolved
   * against the record's length) and says so in `range`; one that cannot, or a range that selects nothing,
   * hands back the whole body without `range`.
   */
  get(key: string, range?: ByteRange): Promise<CachedObject | null>;
  put(
    key: string,
    entry: StoredEntry,
    body: Uint8Array | ReadableStream<Uint8Array>,
    retention: number,
    unknown?: UnknownLength,
    place?: Place,
  ): Promise<void>;
  delete(key: string): Promise<void>;
  refresh?(key: string, entry: StoredEntry, retention: number): Promise<boolean>;
  readonly global?: boolean;
}

export type Place = "small" | "large";

/** A streamed put whose length is not known up front: the tier counts it, up to `maxBytes`. */
export interface UnknownLength {
  maxBytes: number;
}
