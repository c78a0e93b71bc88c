import type { VariantIndex } from "./entry";

/**
 * The cap on how many variants one URL may have under Vary (the site's `cache.maxVariants`), so a flood of
 * distinct selecting values (`Vary: Cookie`, `User-Agent`, a random header) cannot fill the global tier.
 *
 * A variant is counted by a short digest of its selecting values. The variant index at the base key carries
 * the digests it knows (`seen`), written with every variant stored; within an isolate the digests are also
 * reserved in memory before the store starts, so concurrent fills here can never pass the cap together.
 * Across isolates the index is last-writer-wins: isolates filling new variants of one URL at the same moment
 * can each add theirs, so the cap holds per isolate exactly and globally up to that race.
 */

/** Base keys whose variants this isolate tracks, the oldest forgotten first. */
const MAX_TRACKED_URLS = 10_000;
const reserved = new Map<string, Set<string>>();

/** The short digest a variant is counted by: the first 16 hex digits of SHA-256 of its selecting values. */
export async function variantId(values: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(values)));
  return [...digest.slice(0, 8)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Admits a variant under the cap, synchronously: the index to write (with its `seen` list grown), or null
 * when the URL already has `max` other variants and this one must pass unstored. A variant already counted
 * (a refresh) is always admitted.
 */
export function admitVariant(baseKey: string, index: VariantIndex, id: string, max: number): VariantIndex | null {
  const stored = Array.isArray(index.seen) ? index.seen.filter((seen) => typeof seen === "string") : [];
  const mine = reserved.get(baseKey);
  const seen = new Set([...stored, ...(mine ?? [])]);
  if (!seen.has(id)) {
    if (seen.size >= max) return null;
    seen.add(id);
    remember(baseKey, id);
  }
  return { fields: index.fields, nonce: index.nonce, seen: [...seen] };
}

function remember(baseKey: string, id: string): void {
  let mine = reserved.get(baseKey);
  if (!mine) {
    mine = new Set();
    reserved.set(baseKey, mine);
    while (reserved.size > MAX_TRACKED_URLS) {
      const oldest = reserved.keys().next().value;
      if (oldest === undefined) break;
      reserved.delete(oldest);
    }
  }
  mine.add(id);
}
