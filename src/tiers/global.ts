import type { StoredEntry } from "../core/entry";
import { verifyLength } from "../core/stream-fanout";
import type { ByteRange, CachedObject, Place, Tier, UnknownLength } from "../core/tier";

/**
 * The global tier with an R2 bucket: KV holds every record, and the bodies of small entries; the body of a
 * large one (past the site's `cache.largeObjectBytes`, or of unknown length past the buffer) is in R2, and
 * its KV record says so (`at: "r2"`) with an empty value.
 *
 * - A lookup is one KV read, as without R2 (a miss never touches R2); a large hit then reads R2, ranged
 *   when the request is (only the bytes asked for).
 * - A large put writes the body to R2 first (one put, or a multipart upload of 8 MiB parts) and the KV
 *   record last, so nothing reachable is ever incomplete: a body that breaks off leaves no record.
 * - A 304 rewrites the KV record only (`refresh`); the R2 body stays where it is. The R2 objects keep no
 *   expiry of their own: the record's TTL is the entry's, and the bucket's lifecycle rule removes bodies
 *   left behind (docs/deployment.md).
 * - It answers to the name "kv" (Cache-Status `Tiercel-KV`): it is the global tier, wherever its bytes are.
 */
export function globalTier(kv: Tier, r2: Tier): Tier {
  return {
    name: kv.name,
    global: true,

    async get(key: string, range?: ByteRange): Promise<CachedObject | null> {
      const found = await kv.get(key, range);
      if (found === null || found.entry.at !== "r2") return found;
      await found.body.cancel().catch(() => {});
      const { at: _at, ...entry } = found.entry;
      const body = await r2.get(key, range);
      if (!body) return null;
      // The KV record is the entry (a 304 refreshes it alone); the R2 object holds its bytes.
      return body.range ? { entry, body: body.body, range: body.range } : { entry, body: body.body };
    },

    async put(
      key: string,
      entry: StoredEntry,
      body: Uint8Array | ReadableStream<Uint8Array>,
      retention: number,
      unknown?: UnknownLength,
      place?: Place,
    ) {
      if (place !== "large") return kv.put(key, entry, body, retention, unknown);
      let length = body instanceof Uint8Array ? body.byteLength : entry.length;
      if (body instanceof Uint8Array || !unknown) {
        await r2.put(key, entry, body, retention);
      } else {
        const count = verifyLength(undefined);
        await r2.put(key, entry, body.pipeThrough(count), retention, unknown);
        length = count.bytes();
      }
      await kv.put(key, { ...entry, length, at: "r2" }, new Uint8Array(0), retention);
    },

    async delete(key: string): Promise<void> {
      // A body left in R2 is unreachable without its record; the bucket's lifecycle rule removes it.
      await kv.delete(key);
    },

    async refresh(key: string, entry: StoredEntry, retention: number): Promise<boolean> {
      return kv.refresh ? kv.refresh(key, entry, retention) : false;
    },
  };
}
