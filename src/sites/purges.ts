import { TiercelError } from "../core/errors";
import type { PublishedPurges, PurgeDelta } from "./store";

/**
 * A site's purge state, as its owner keeps it: bounded by design, decided here as pure code over a small
 * storage interface (`PurgeRows`: the owner's SQLite tables, or memory in tests).
 *
 * - **Purge of everything** bumps the site's generation (part of every key; a config change, src/sites/owner.ts).
 *   **Soft purge of everything** is one time per site.
 * - **Tags**: one time per tag (hard and soft apart). At most `maxTagRecords`; past that the oldest records
 *   are dropped and `tagFloor` rises to the newest dropped time: tagged entries fetched up to then are absent.
 *   The purge that does it says so in its answer (`evictedTags`). Untagged entries are never touched by it.
 * - **URLs**: one record per URL key, kept only while a tier may still hold an older entry: every entry
 *   fetched longer than the site's `cache.maxHold` ago is absent on lookup, so a record older than the hold
 *   (plus a clock margin) is dropped and `floor` rises to it. At most `maxUrlRecords` live records: a purge
 *   that would exceed it is refused (`429 purge_limit`, with when room frees up), never turned into a purge
 *   of everything.
 */
export const PURGE_LIMITS = {
  maxUrlRecords: 200_000,
  maxTagRecords: 10_000,
  /** Added to the hold before a record is dropped: the isolates' clocks may differ from the owner's. */
  clockMarginMs: 60_000,
} as const;

/** The site-wide part of the state (the owner's `purgeMeta`). */
export interface PurgeMeta {
  version: number;
  floor: number;
  tagFloor: number;
  softAll?: number;
}

export const EMPTY_META: PurgeMeta = { version: 0, floor: 0, tagFloor: 0 };

/** The records, as the owner stores them. */
export interface PurgeRows {
  /** URL records newer than `after`. */
  liveUrls(after: number): number;
  oldestUrl(after: number): number | undefined;
  putUrl(key: string, at: number): void;
  putTag(tag: string, soft: boolean, at: number): void;
  /** Drops every record at or before `cutoff`; the newest dropped time, if any. */
  dropUpTo(cutoff: number): number | undefined;
  tagCount(): number;
  /** Drops the `n` oldest tag records; the newest dropped time, if any. */
  dropOldestTags(n: number): number | undefined;
  snapshot(): Pick<PublishedPurges, "urls" | "tags" | "softTags">;
}

/** What one purge adds. */
export interface PurgeAdd {
  /** URL records (`urlPurgeKey` of each base key). */
  urls: string[];
  tags: string[];
  soft: boolean;
  softAll: boolean;
}

export interface PurgeResult {
  meta: PurgeMeta;
  delta: PurgeDelta;
  /** Tag records dropped to keep the table bounded (tagged entries fetched up to `meta.tagFloor` are absent). */
  evictedTags: number;
}

/** Records a purge at `now` for a site whose entries are held at most `maxHoldMs`. */
export function recordPurge(
  rows: PurgeRows,
  meta: PurgeMeta,
  add: PurgeAdd,
  now: number,
  maxHoldMs: number,
  limits: { maxUrlRecords: number; maxTagRecords: number; clockMarginMs: number } = PURGE_LIMITS,
): PurgeResult {
  const cutoff = now - maxHoldMs - limits.clockMarginMs;
  const urls = [...new Set(add.urls)];
  const live = rows.liveUrls(cutoff);
  if (live + urls.length > limits.maxUrlRecords) {
    const oldest = rows.oldestUrl(cutoff) ?? now;
    const retryAfter = Math.max(1, Math.ceil((oldest - cutoff) / 1000));
    throw new TiercelError(
      "purge_limit",
      429,
      `The site holds ${live} URL purges, at most ${limits.maxUrlRecords}; room frees up as they pass cache.maxHold. Purge by tag, or everything`,
      { details: { limit: limits.maxUrlRecords, live, retryAfter }, headers: { "retry-after": String(retryAfter) } },
    );
  }
  const next: PurgeMeta = { ...meta, version: meta.version + 1 };
  const dropped = rows.dropUpTo(cutoff);
  if (dropped !== undefined) next.floor = Math.max(next.floor, dropped);
  const delta: PurgeDelta = { version: next.version, floor: 0, tagFloor: 0, urls: [], tags: [], softTags: [] };
  for (const key of urls) {
    rows.putUrl(key, now);
    delta.urls.push([key, now]);
  }
  for (const tag of new Set(add.tags)) {
    rows.putTag(tag, add.soft, now);
    (add.soft ? delta.softTags : delta.tags).push([tag, now]);
  }
  if (add.softAll) next.softAll = now;
  let evictedTags = 0;
  const over = rows.tagCount() - limits.maxTagRecords;
  if (over > 0) {
    const newest = rows.dropOldestTags(over);
    evictedTags = over;
    if (newest !== undefined) next.tagFloor = Math.max(next.tagFloor, newest);
  }
  delta.floor = next.floor;
  delta.tagFloor = next.tagFloor;
  if (next.softAll !== undefined) delta.softAll = next.softAll;
  return { meta: next, delta, evictedTags };
}

/** The whole state as published. */
export function publishedPurges(rows: PurgeRows, meta: PurgeMeta): PublishedPurges {
  return {
    v: 1,
    version: meta.version,
    floor: meta.floor,
    tagFloor: meta.tagFloor,
    ...(meta.softAll === undefined ? {} : { softAll: meta.softAll }),
    ...rows.snapshot(),
  };
}

/** Purge rows in memory (tests; the reference for the owner's SQLite tables). */
export function memoryPurgeRows(): PurgeRows & { size(): number } {
  const urls = new Map<string, number>();
  const tags = new Map<string, number>();
  const tagKey = (tag: string, soft: boolean) => `${soft ? "s" : "h"}${tag}`;
  const dropFrom = (map: Map<string, number>, keep: (at: number) => boolean) => {
    let newest: number | undefined;
    for (const [name, at] of map) {
      if (keep(at)) continue;
      map.delete(name);
      newest = newest === undefined ? at : Math.max(newest, at);
    }
    return newest;
  };
  return {
    size: () => urls.size + tags.size,
    liveUrls: (after) => [...urls.values()].filter((at) => at > after).length,
    oldestUrl(after) {
      const live = [...urls.values()].filter((at) => at > after);
      return live.length > 0 ? Math.min(...live) : undefined;
    },
    putUrl: (key, at) => urls.set(key, Math.max(at, urls.get(key) ?? at)),
    putTag: (tag, soft, at) => tags.set(tagKey(tag, soft), Math.max(at, tags.get(tagKey(tag, soft)) ?? at)),
    dropUpTo(cutoff) {
      const a = dropFrom(urls, (at) => at > cutoff);
      const b = dropFrom(tags, (at) => at > cutoff);
      return a === undefined ? b : b === undefined ? a : Math.max(a, b);
    },
    tagCount: () => tags.size,
    dropOldestTags(n) {
      const oldest = [...tags.entries()].sort((x, y) => x[1] - y[1]).slice(0, n);
      for (const [name] of oldest) tags.delete(name);
      return oldest.at(-1)?.[1];
    },
    snapshot() {
      const pick = (prefix: string) =>
        [...tags.entries()]
          .filter(([name]) => name.startsWith(prefix))
          .map(([name, at]): [string, number] => [name.slice(1), at]);
      return { urls: [...urls.entries()], tags: pick("h"), softTags: pick("s") };
    },
  };
}
