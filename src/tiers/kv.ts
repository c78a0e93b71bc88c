import { isStoredEntry, type StoredEntry } from "../core/entry";
import { concat, splitPrefix } from "../core/streams";
import type { CachedObject, Tier } from "../core/tier";

/**
 * Tier 2: Workers KV, global and persistent. The record rides in KV metadata when it fits in KV's
 * 1024-byte limit; when it does not (many or long headers), the whole record is written in front of the
 * body as a length-prefixed frame and the metadata only says how long that frame is. Headers are never
 * dropped to make things fit.
 *
 * KV values are limited to 25 MiB; larger bodies are refused here (the pipeline skips a tier that throws).
 */
export const KV_METADATA_LIMIT = 1024;
export const KV_VALUE_LIMIT = 25 * 1024 * 1024;
/** KV's smallest expirationTtl. */
const KV_MIN_TTL = 60;

type KvMetadata = { e: StoredEntry } | { f: number };

export function kvTier(kv: KVNamespace, options: { prefix?: string } = {}): Tier {
  const prefix = options.prefix ?? "c:";

  return {
    name: "kv",

    async get(key: string): Promise<CachedObject | null> {
      const { value, metadata } = await kv.getWithMetadata<KvMetadata>(prefix + key, "stream");
      if (value === null) return null;
      if (metadata && "e" in metadata && isStoredEntry(metadata.e)) return { entry: metadata.e, body: value };
      if (metadata && "f" in metadata && Number.isInteger(metadata.f) && metadata.f > 0) {
        const { prefix: frame, rest } = await splitPrefix(value, metadata.f);
        const entry: unknown = JSON.parse(new TextDecoder().decode(frame));
        if (isStoredEntry(entry)) return { entry, body: rest };
        await rest.cancel();
        return null;
      }
      await value.cancel();
      return null;
    },

    async put(key: string, entry: StoredEntry, body: Uint8Array, retention: number): Promise<void> {
      const expirationTtl = Math.max(KV_MIN_TTL, Math.ceil(retention));
      const inline: KvMetadata = { e: entry };
      if (byteLength(JSON.stringify(inline)) <= KV_METADATA_LIMIT) {
        if (body.byteLength > KV_VALUE_LIMIT) throw new Error(`body of ${body.byteLength} bytes exceeds KV's limit`);
        await kv.put(prefix + key, body, { metadata: inline, expirationTtl });
        return;
      }
      const frame = new TextEncoder().encode(JSON.stringify(entry));
      const value = concat([frame, body]);
      if (value.byteLength > KV_VALUE_LIMIT) throw new Error(`value of ${value.byteLength} bytes exceeds KV's limit`);
      const framed: KvMetadata = { f: frame.byteLength };
      await kv.put(prefix + key, value, { metadata: framed, expirationTtl });
    },

    async delete(key: string): Promise<void> {
      await kv.delete(prefix + key);
    },
  };
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}
