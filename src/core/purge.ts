import type { Site } from "../sites/schema";
import type { StoredEntry } from "./entry";

/**
 * Purges are checked on read: a purge records a time and an entry whose origin request started at or before
 * that time no longer counts. Using the request time, not the store time, means a fill that started before a
 * purge cannot store a result that survives it, however late it lands.
 *
 * The records are data, not config: each site's owner keeps them (src/sites/purges.ts), publishes them apart
 * from the settings, and every isolate keeps them parsed here, in Maps, so the check costs a few Map lookups
 * per request (the entry's URL keys and tags), never a parse. A site also names how long any tier may hold an
 * entry (`cache.maxHold`): an entry fetched longer ago than that is as good as absent, which is what lets URL
 * purge records expire and keeps the state bounded.
 */
export type PurgeState = "none" | "purged" | "soft";

/** The published purge state of a site, parsed once per version and kept in isolate memory. */
export interface PurgeView {
  /** Bumped by every change the owner makes; 0 for none. */
  version: number;
  /** URL purges: the first 16 hex digits of a base cache key (`urlPurgeKey`) → purge time (epoch ms). */
  urls: ReadonlyMap<string, number>;
  /** Tag → hard purge time. */
  tags: ReadonlyMap<string, number>;
  /** Tag → soft purge time. */
  softTags: ReadonlyMap<string, number>;
  /** Soft purge of everything. */
  softAll?: number;
  /**
   * Records at or before this time were dropped (they expired): an entry fetched then or earlier is absent.
   * With an unchanged `maxHold`, such an entry is past its hold anyway.
   */
  floor: number;
  /** Tag records at or before this time were dropped to keep the tag table bounded: tagged entries fetched
   * then or earlier are absent (reported by the purge that did it; never a purge of untagged entries). */
  tagFloor: number;
}

export const NO_PURGES: PurgeView = {
  version: 0,
  urls: new Map(),
  tags: new Map(),
  softTags: new Map(),
  floor: 0,
  tagFloor: 0,
};

/** The part of a base cache key (hex SHA-256) a URL purge record keeps: 64 bits, collisions only over-purge. */
export function urlPurgeKey(baseKey: string): string {
  return baseKey.slice(0, 16);
}

/** The legacy records a config may still carry (before owners moved them out); empty for every new site. */
type LegacyPurges = Site["purges"] | undefined;

/**
 * Whether an entry is purged, soft-purged or neither, given the site's published purges, the records its
 * config may still carry (legacy), the site's maximum hold, and the URL keys that reach it (its own base key,
 * and for a resized variant its source's).
 */
export function purgeState(
  entry: StoredEntry,
  view: PurgeView,
  legacy: LegacyPurges,
  hold: { now: number; maxHoldMs: number },
  ...urlKeys: string[]
): PurgeState {
  const fetched = entry.requestTime;
  if (fetched < hold.now - hold.maxHoldMs || fetched <= view.floor) return "purged";
  if (entry.tags.length > 0 && fetched <= view.tagFloor) return "purged";
  for (const key of urlKeys) {
    const at = view.urls.get(urlPurgeKey(key));
    if (at !== undefined && fetched <= at) return "purged";
    const old = legacy?.urls[key];
    if (old !== undefined && fetched <= old) return "purged";
  }
  for (const tag of entry.tags) {
    const at = view.tags.get(tag);
    if (at !== undefined && fetched <= at) return "purged";
    const old = legacy?.tags[tag];
    if (old !== undefined && fetched <= old) return "purged";
  }
  return softPurgedAt(entry, view, legacy) === undefined ? "none" : "soft";
}

/**
 * When the earliest soft purge that reached the entry happened (epoch ms), or undefined when none did: the
 * entry counts as stale from then on, so its stale windows and grace are measured from it.
 */
export function softPurgedAt(entry: StoredEntry, view: PurgeView, legacy?: LegacyPurges): number | undefined {
  const fetched = entry.requestTime;
  let earliest: number | undefined;
  const consider = (time: number | undefined) => {
    if (time !== undefined && fetched <= time && (earliest === undefined || time < earliest)) earliest = time;
  };
  consider(view.softAll);
  consider(legacy?.softAll);
  for (const tag of entry.tags) {
    consider(view.softTags.get(tag));
    consider(legacy?.softTags[tag]);
  }
  return earliest;
}
