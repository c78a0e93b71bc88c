import type { Exchange } from "./exchange";
import type { Tier } from "./tier";

/**
 * The site's admission policy for the global tier (`cache.globalAdmission`, `cache.globalMaxBytes`): which
 * fills are written to KV/R2 as well as to this data center's cache. A write to the global tier costs ten
 * times a read (KV: $5 per million writes against $0.50 per million reads) and KV takes one write per second
 * per key, so a site whose objects are mostly asked for once can keep them out of it.
 *
 * - `always` (the default): every storable fill, as before.
 * - `second-request`: a key's first fill in this isolate goes to the edge only; a fill of the same key again
 *   (within the memory of this isolate: the last 10,000 keys, an hour at most) goes to the global tier too.
 * - `globalMaxBytes`: a body declared larger than this is kept out of the global tier.
 */
const MAX_SEEN = 10_000;
const SEEN_FOR_MS = 3_600_000;
const seen = new Map<string, number>();

/** The tiers a fill of `length` bytes (undefined: not declared) is written to under the site's policy. */
export function admittedTiers(ex: Exchange, tiers: Tier[], length: number | undefined): Tier[] {
  if (!tiers.some((tier) => tier.global)) return tiers;
  const admit = admitted(ex, length);
  return admit ? tiers : tiers.filter((tier) => !tier.global);
}

function admitted(ex: Exchange, length: number | undefined): boolean {
  const { cache } = ex.site;
  if (cache.globalMaxBytes !== undefined && length !== undefined && length > cache.globalMaxBytes) return false;
  if (cache.globalAdmission === "always") return true;
  const now = ex.deps.now();
  const key = ex.baseKey;
  const before = seen.get(key);
  seen.delete(key);
  seen.set(key, now);
  for (const [old, at] of seen) {
    if (seen.size <= MAX_SEEN && now - at < SEEN_FOR_MS) break;
    seen.delete(old);
  }
  return before !== undefined && now - before < SEEN_FOR_MS;
}
