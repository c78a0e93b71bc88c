import type { StoredEntry } from "../core/entry";
import { readAll, streamOf } from "../core/streams";
import { type ByteRange, type CachedObject, resolveRange, type Tier, type UnknownLength } from "../core/tier";

/**
 * An in-isolate tier: a bounded map with retention. Used by unit tests of the pipeline and as the
 * reference implementation the shared tier suite is checked against.
 */
export function memoryTier(options: { now: () => number; maxEntries?: number; name?: string }): Tier {
  const maxEntries = options.maxEntries ?? 1000;
  const entries = new Map<string, { entry: StoredEntry; body: Uint8Array; expiresAt: number }>();

  return {
    name: options.name ?? "memory",

    async get(key: string, range?: ByteRange): Promise<CachedObject | null> {
      const found = entries.get(key);
      if (!found) return null;
      if (found.expiresAt <= options.now()) {
        entries.delete(key);
        return null;
      }
      const wanted = range && resolveRange(range, found.body.byteLength);
      if (wanted) {
        const body = streamOf(found.body.subarray(wanted.start, wanted.end + 1));
        return { entry: structuredClone(found.entry), body, range: wanted };
      }
      return { entry: structuredClone(found.entry), body: streamOf(found.body) };
    },

    async put(
      key: string,
      given: StoredEntry,
      body: Uint8Array | ReadableStream<Uint8Array>,
      retention: number,
      unknown?: UnknownLength,
    ) {
      // All or nothing: a stream is read whole (and must have the record's length, or be counted within the
      // bound when its length is unknown) before anything changes.
      const limit = unknown && !(body instanceof Uint8Array) ? unknown.maxBytes : Number.POSITIVE_INFINITY;
      const bytes = body instanceof Uint8Array ? body.slice() : await readAll(body, limit);
      const entry = unknown && !(body instanceof Uint8Array) ? { ...given, length: bytes.byteLength } : given;
      if (!(body instanceof Uint8Array) && bytes.byteLength !== entry.length) {
        throw new Error(`body has ${bytes.byteLength} bytes, its record says ${entry.length}`);
      }
      entries.delete(key);
      entries.set(key, {
        entry: structuredClone(entry),
        body: bytes,
        expiresAt: options.now() + retention * 1000,
      });
      // Oldest first out: Map keeps insertion order.
      for (const oldest of entries.keys()) {
        if (entries.size <= maxEntries) break;
        entries.delete(oldest);
      }
    },

    async delete(key: string): Promise<void> {
      entries.delete(key);
    },
  };
}
