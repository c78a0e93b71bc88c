import { isStoredEntry, type StoredEntry } from "../core/entry";
import type { CachedObject, Tier } from "../core/tier";

/**
 * Tier 1: the data center's Cache API. Entries live under a synthetic URL made from Tiercel's key (never
 * the client's URL), as an envelope response: the body is the stored body, the record travels base64-encoded
 * in one header, and the envelope's own Cache-Control tells the Cache API how long to keep it.
 */
export interface EdgeTierOptions {
  /** Host of the synthetic key URLs; only its uniqueness matters. */
  keyHost?: string;
}

const ENTRY_HEADER = "x-tiercel-entry";

/** `cache` may be a promise (as from `caches.open`): if it rejects, every operation throws and is skipped. */
export function edgeTier(cache: Cache | Promise<Cache>, options: EdgeTierOptions = {}): Tier {
  const keyHost = options.keyHost ?? "cache.tiercel.internal";
  const urlFor = (key: string) => `https://${keyHost}/v1/${key}`;

  return {
    name: "edge",

    async get(key: string): Promise<CachedObject | null> {
      const response = await (await cache).match(urlFor(key));
      if (!response) return null;
      const entry = decodeEntry(response.headers.get(ENTRY_HEADER));
      if (!entry || !response.body) {
        await response.body?.cancel();
        return null;
      }
      return { entry, body: response.body };
    },

    async put(key: string, entry: StoredEntry, body: Uint8Array, retention: number): Promise<void> {
      const envelope = new Response(body, {
        headers: {
          "cache-control": `public, max-age=${Math.max(1, Math.ceil(retention))}`,
          "content-type": "application/octet-stream",
          [ENTRY_HEADER]: encodeEntry(entry),
        },
      });
      await (await cache).put(urlFor(key), envelope);
    },

    async delete(key: string): Promise<void> {
      await (await cache).delete(urlFor(key));
    },
  };
}

function encodeEntry(entry: StoredEntry): string {
  const bytes = new TextEncoder().encode(JSON.stringify(entry));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function decodeEntry(value: string | null): StoredEntry | null {
  if (!value) return null;
  try {
    const bytes = Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return isStoredEntry(parsed) ? parsed : null;
  } catch {
    return null;
  }
}
