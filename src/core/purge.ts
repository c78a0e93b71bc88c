import type { Site } from "../sites/schema";
import type { StoredEntry } from "./entry";

/**
 * Purges are checked on read: a purge records a time (in the site config, which every data center reads
 * through the config micro-cache), and an entry whose origin request started before that time no longer
 * counts. Using the request time, not the store time, means a fill that started before a purge cannot
 * store a result that survives it, however late it lands.
 */
export type PurgeState = "none" | "purged" | "soft";

export function purgeState(entry: StoredEntry, purges: Site["purges"], ...urlKeys: string[]): PurgeState {
  const fetched = entry.requestTime;
  for (const key of urlKeys) {
    const urlPurge = purges.urls[key];
    if (urlPurge !== undefined && fetched <= urlPurge) return "purged";
  }
  for (const tag of entry.tags) {
    const tagPurge = purges.tags[tag];
    if (tagPurge !== undefined && fetched <= tagPurge) return "purged";
  }
  if (purges.softAll !== undefined && fetched <= purges.softAll) return "soft";
  for (const tag of entry.tags) {
    const softPurge = purges.softTags[tag];
    if (softPurge !== undefined && fetched <= softPurge) return "soft";
  }
  return "none";
}

/**
 * When the earliest soft purge that reached the entry happened (epoch ms), or undefined when none did: the
 * entry counts as stale from then on, so its stale windows and grace are measured from it.
 */
export function softPurgedAt(entry: StoredEntry, purges: Site["purges"]): number | undefined {
  const fetched = entry.requestTime;
  const times = entry.tags.map((tag) => purges.softTags[tag]);
  times.push(purges.softAll);
  const applying = times.filter((time): time is number => time !== undefined && fetched <= time);
  return applying.length > 0 ? Math.min(...applying) : undefined;
}
