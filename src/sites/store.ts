import { setBounded } from "../core/bounded";
import { withDeadline } from "../core/deadline";
import { TiercelError } from "../core/errors";
import { NO_PURGES, type PurgeView } from "../core/purge";
import { parseSite, type Site } from "./schema";

/**
 * Site configs by host, read through two caches: isolate memory (a few seconds), then the data center's
 * Cache API (the micro-cache, 30 s by default), then KV. The write-up's micro-cache cut KV reads by about
 * 80%; with both layers a busy isolate reads KV about once per host per micro-cache period per data center.
 *
 * - Unknown hosts are cached too (negatively, for a shorter time), so a flood of requests for one unknown
 *   host cannot hammer KV.
 * - If KV fails, the last known config (from memory or the micro-cache) is used for a bounded time
 *   (`lastKnownSeconds`); past that, or with none known, the request fails with 503. A site is never guessed.
 * - Config from KV is untrusted: it is validated on every read from KV (and the result remembered).
 */
export interface SiteStore {
  siteForHost(host: string, waitUntil?: (work: Promise<unknown>) => void): Promise<Site | null>;
  /** Drops what this isolate and this data center remember about these hosts (after an admin write). */
  forget(hosts: string[]): Promise<void>;
  /**
   * Makes this isolate and this data center serve `site` (at `revision`) for its hosts at once, ahead of
   * the owner's publish to KV; an older revision than one already remembered is ignored.
   */
  prime(site: Site, revision: number): Promise<void>;
  /**
   * The site's published purge state, parsed once per version and kept in isolate memory (read through the
   * same memory → micro-cache → KV layers as configs). None known: `NO_PURGES`. Stores without owners
   * (zero-config mode) have none.
   */
  purgesFor?(siteId: string, waitUntil?: (work: Promise<unknown>) => void): Promise<PurgeView>;
  /**
   * Applies one owner change to what this isolate and data center know of the site's purges: true when it
   * could (they knew the version before it), false when the whole state is needed (`primePurges`).
   */
  applyPurges?(siteId: string, delta: PurgeDelta): Promise<boolean>;
  /** Makes this isolate and data center use `published` for the site at once (after an admin purge). */
  primePurges?(siteId: string, published: PublishedPurges): Promise<void>;
  readonly counters: ConfigCounters;
}

export interface ConfigCounters {
  kvReads: number;
  memoryHits: number;
  cacheHits: number;
  negativeHits: number;
  lastKnownServed: number;
}

export interface SiteStoreOptions {
  /** The Cache API cache for the micro-cache; without one, only memory is used. */
  cache?: Cache | Promise<Cache>;
  now(): number;
  log?(event: string, fields: Record<string, unknown>): void;
  /** Isolate memory, in seconds. */
  memorySeconds?: number;
  /** The micro-cache, in seconds (the write-up's 30 s). */
  cacheSeconds?: number;
  /** Unknown hosts, in seconds. */
  negativeSeconds?: number;
  /** How long a last known config may stand in for KV when KV fails, in seconds. */
  lastKnownSeconds?: number;
  /** Deadline for one KV or Cache API read, in milliseconds. */
  timeoutMs?: number;
  /**
   * The owners, for a config or purge state the control feed says is newer than what KV answered (KV may lag
   * behind for up to a minute). Without them, what KV answers is used.
   */
  owners?: {
    config(siteId: string): Promise<{ site: Site; revision: number } | null>;
    purges(siteId: string): Promise<PublishedPurges>;
  };
}

/**
 * What the control feed tells a site store (src/sites/control.ts): changes as they come, and whether the
 * feed is current, which lets the store keep what it knows in memory for as long as it is.
 */
export interface ControlledStore {
  /** One change from the feed, in feed order. */
  note(change: FeedChange): void;
  /** The feed lost track (a reset answer): nothing this isolate knows counts as current any more. */
  reset(): void;
  /** Tells the store how to ask whether the feed is current (checked within its window). */
  attach(current: () => boolean): void;
}

/**
 * The storage layout of sites, in one place.
 *
 * - Owners (Durable Objects, src/objects/) hold the truth: `SITE_OWNER` by site id (config, revision,
 *   purge state, tombstone), `REGISTRY` ("hosts") the host → site id claims.
 * - KV `SITES` is the read path the owners publish to: `host:<host>` holds the site's settings (its
 *   revision in the key's metadata) for each of the site's hosts; `purges:<siteId>` its purge state
 *   (`PublishedPurges`), apart, so a purge never rewrites the settings.
 * - Before owners, the admin API wrote `site:<id>` and `tombstone:<id>` too, and operators may add a site
 *   by hand as one `host:` key: owners read these once, the first time they meet the site or the host.
 */
export const HOST_PREFIX = "host:";

/** The KV key of a host's site config. */
export function siteKey(host: string): string {
  return `${HOST_PREFIX}${host}`;
}

/** Where the admin API kept a site before owners (read once, when the owner first meets the id). */
export function legacySiteKey(id: string): string {
  return `site:${id}`;
}

/** Where the admin API kept a deleted site's last generation before owners. */
export function legacyTombstoneKey(id: string): string {
  return `tombstone:${id}`;
}

/** The KV key of a site's published purge state (`PublishedPurges`), apart from its settings. */
export function purgesKey(siteId: string): string {
  return `purges:${siteId}`;
}

/**
 * A site's purge state as its owner publishes it (KV `purges:<siteId>`, JSON; the version also in the key's
 * metadata) and answers for it: records as [name, epoch ms] pairs, which parse straight into Maps. URL
 * records are keyed by `urlPurgeKey` (src/core/purge.ts). Untrusted when read back: `parsePublishedPurges`.
 */
export interface PublishedPurges {
  v: 1;
  version: number;
  floor: number;
  tagFloor: number;
  softAll?: number;
  urls: [string, number][];
  tags: [string, number][];
  softTags: [string, number][];
}

/** What one owner write changed in the purge state: the records it added and the new site-wide times. */
export interface PurgeDelta {
  /** The version this delta produces; it applies to a state at `version - 1`. */
  version: number;
  floor: number;
  tagFloor: number;
  softAll?: number;
  urls: [string, number][];
  tags: [string, number][];
  softTags: [string, number][];
}

/** A published purge state read back from KV (or the micro-cache): null when it does not check out. */
export function parsePublishedPurges(raw: string): PublishedPurges | null {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Partial<PublishedPurges>;
  const time = (t: unknown) => typeof t === "number" && Number.isFinite(t);
  const pairs = (list: unknown) =>
    Array.isArray(list) && list.every((pair) => Array.isArray(pair) && typeof pair[0] === "string" && time(pair[1]));
  if (
    v.v !== 1 ||
    !time(v.version) ||
    !time(v.floor) ||
    !time(v.tagFloor) ||
    (v.softAll !== undefined && !time(v.softAll)) ||
    !pairs(v.urls) ||
    !pairs(v.tags) ||
    !pairs(v.softTags)
  ) {
    return null;
  }
  return v as PublishedPurges;
}

/**
 * The owner's SQLite tables for purge records (src/objects/site-owner.ts). Site-wide purge times live in its
 * key-value storage under `purgeMeta`; its config and revision under `state`.
 */
export const PURGE_TABLES = [
  "CREATE TABLE IF NOT EXISTS purge_urls (key TEXT PRIMARY KEY, at INTEGER NOT NULL)",
  "CREATE INDEX IF NOT EXISTS purge_urls_at ON purge_urls (at)",
  "CREATE TABLE IF NOT EXISTS purge_tags (tag TEXT NOT NULL, soft INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (tag, soft))",
  "CREATE INDEX IF NOT EXISTS purge_tags_at ON purge_tags (at)",
] as const;

/**
 * One change in the control feed (`CONTROL` → ControlFeed, one instance named `feed`): what an owner
 * committed, appended right after it. `seq` is the feed's, strictly increasing. Settings changes carry the
 * new settings revision and the hosts to look at again; purge changes the delta itself when it is small
 * (`FEED_INLINE_RECORDS`), else only the version (isolates then fetch the whole state by version).
 */
export interface FeedChange {
  seq: number;
  /** When the feed appended it (epoch ms). */
  at: number;
  siteId: string;
  config?: { revision: number; hosts: string[]; dropped: string[]; deleted?: boolean };
  purge?: { version: number; delta?: PurgeDelta };
}

/** What "changes since N" answers: the changes after N, or `reset` when N is older than the log keeps. */
export type FeedAnswer = { seq: number; changes: FeedChange[] } | { seq: number; reset: true };

/** The feed's SQLite table: the last `FEED_LOG_ENTRIES` changes, the body as JSON. */
export const FEED_TABLES = [
  "CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL)",
  "CREATE INDEX IF NOT EXISTS feed_at ON feed (at)",
  // The highest sequence ever used (kept when its row is trimmed).
  "CREATE TABLE IF NOT EXISTS feed_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
] as const;

/** The control feed's Durable Object name (one instance). */
export const FEED_NAME = "feed";

/** Where isolates keep immutable answers in the Cache API (per data center): configs and purge states by version, feed answers by window. */
export const CONTROL_CACHE_ORIGIN = "https://control.tiercel.internal/v1";

/** The registry's Durable Object name (one instance; shardable later by a hash of the host). */
export const REGISTRY_NAME = "hosts";

/** The site id a stored config names, or null when it does not parse far enough to name one. */
export function siteIdOf(raw: string | null): string | null {
  if (raw === null) return null;
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "object" && value !== null && "id" in value && typeof value.id === "string"
      ? value.id
      : null;
  } catch {
    return null;
  }
}

/** What was read for a host: its raw JSON (null for no site) and when. */
interface Record_ {
  raw: string | null;
  fetchedAt: number;
  /** The settings revision (KV metadata, or the owner's answer); absent for a config written by hand. */
  revision?: number;
  parsed?: { site: Site | null } | { error: TiercelError };
  /** Checked against the control feed in this epoch: kept in memory for as long as the feed is current. */
  epoch?: number;
  /**
   * When memory took it from the micro-cache: memory keeps it `memorySeconds` from then (and never past its
   * micro-cache freshness). Absent: from `fetchedAt` (read from KV or primed).
   */
  heldAt?: number;
}

/** What the control feed said last about a host: it belongs to the site at least at this revision, or left it. */
interface HostHint {
  siteId: string;
  revision: number;
  left: boolean;
}

const MAX_REMEMBERED = 10_000;

/** A published purge state as the hot path checks it: Maps, built once per version. */
export function purgeViewOf(published: PublishedPurges): PurgeView {
  return {
    version: published.version,
    floor: published.floor,
    tagFloor: published.tagFloor,
    ...(published.softAll === undefined ? {} : { softAll: published.softAll }),
    urls: new Map(published.urls),
    tags: new Map(published.tags),
    softTags: new Map(published.softTags),
  };
}

/**
 * A view with one owner change applied, in O(records added): the Maps are extended in place (records are
 * only ever added, so a request holding the view meanwhile sees a consistent, newer state). Records a raised
 * floor covers are dropped (one pass, when a floor moves), so the view stays as bounded as the owner's state.
 */
export function applyPurgeDelta(view: PurgeView, delta: PurgeDelta): PurgeView {
  // The empty view's Maps are shared by every site: never extended.
  const own = view.version > 0 && view !== NO_PURGES;
  const merge = (records: ReadonlyMap<string, number>, added: [string, number][], floor: number, old: number) => {
    const map = own ? (records as Map<string, number>) : new Map<string, number>();
    if (floor > old) for (const [name, at] of map) if (at <= floor) map.delete(name);
    for (const [name, at] of added) map.set(name, Math.max(at, map.get(name) ?? at));
    return map;
  };
  const tagFloor = Math.max(delta.floor, delta.tagFloor);
  const oldTagFloor = Math.max(view.floor, view.tagFloor);
  return {
    version: delta.version,
    floor: delta.floor,
    tagFloor: delta.tagFloor,
    ...(delta.softAll === undefined ? {} : { softAll: delta.softAll }),
    urls: merge(view.urls, delta.urls, delta.floor, view.floor),
    tags: merge(view.tags, delta.tags, tagFloor, oldTagFloor),
    softTags: merge(view.softTags, delta.softTags, tagFloor, oldTagFloor),
  };
}

/** A view as the owner publishes it (for the micro-cache). */
export function publishedOf(view: PurgeView): PublishedPurges {
  return {
    v: 1,
    version: view.version,
    floor: view.floor,
    tagFloor: view.tagFloor,
    ...(view.softAll === undefined ? {} : { softAll: view.softAll }),
    urls: [...view.urls],
    tags: [...view.tags],
    softTags: [...view.softTags],
  };
}

/** What this isolate knows of a site's purges: the parsed view and when it was read. */
interface PurgeRecord_ {
  view: PurgeView;
  fetchedAt: number;
  epoch?: number;
}

export function kvSiteStore(kv: KVNamespace, options: SiteStoreOptions): SiteStore & ControlledStore {
  const memoryMs = (options.memorySeconds ?? 5) * 1000;
  const cacheMs = (options.cacheSeconds ?? 30) * 1000;
  const negativeMs = (options.negativeSeconds ?? 10) * 1000;
  const lastKnownMs = (options.lastKnownSeconds ?? 300) * 1000;
  const timeoutMs = options.timeoutMs ?? 2000;
  const memory = new Map<string, Record_>();
  const counters: ConfigCounters = { kvReads: 0, memoryHits: 0, cacheHits: 0, negativeHits: 0, lastKnownServed: 0 };
  const urlFor = (host: string) => `https://config.tiercel.internal/v1/host/${encodeURIComponent(host)}`;
  const freshFor = (record: Record_) => (record.raw === null ? Math.min(negativeMs, cacheMs) : cacheMs);

  // What the control feed has said (src/sites/control.ts). Without a feed, `current` stays false and every
  // record lives by the TTLs above.
  let current: () => boolean = () => false;
  let epoch = 0;
  const hints = new Map<string, HostHint>();
  const latestPurge = new Map<string, number>();
  /**
   * Whether a record checked against the feed may be used past the TTLs: the feed is current, same epoch.
   * Still read again after `lastKnownSeconds` (5 min; the same config is not parsed again), so a change
   * whose announcement was lost (an owner that could not reach the feed) heals through KV.
   */
  const known = (record: { epoch?: number; fetchedAt: number }) =>
    record.epoch === epoch && current() && options.now() - record.fetchedAt < lastKnownMs;

  const remember = (host: string, record: Record_) => setBounded(memory, host, record, MAX_REMEMBERED);

  const readCache = async (host: string): Promise<Record_ | undefined> => {
    if (!options.cache) return undefined;
    try {
      const cache = await options.cache;
      const response = await withDeadline(cache.match(urlFor(host)), timeoutMs, "config cache get");
      if (!response) return undefined;
      const value = (await response.json()) as Partial<Record_>;
      if (typeof value.fetchedAt !== "number" || (typeof value.raw !== "string" && value.raw !== null))
        return undefined;
      return {
        raw: value.raw,
        fetchedAt: value.fetchedAt,
        ...(typeof value.revision === "number" ? { revision: value.revision } : {}),
      };
    } catch (error) {
      options.log?.("config.cache-skipped", { host, error: String(error) });
      return undefined;
    }
  };

  const writeCache = async (host: string, record: Record_): Promise<void> => {
    if (!options.cache) return;
    try {
      const cache = await options.cache;
      const body = JSON.stringify({ raw: record.raw, fetchedAt: record.fetchedAt, revision: record.revision });
      // Kept for the last-known window, so it can stand in when KV fails; freshness is checked on read.
      const headers = { "content-type": "application/json", "cache-control": `max-age=${lastKnownMs / 1000}` };
      await cache.put(urlFor(host), new Response(body, { headers }));
    } catch (error) {
      options.log?.("config.cache-skipped", { host, error: String(error) });
    }
  };

  /**
   * A record read from the micro-cache or KV, checked against what the feed said about its host: one older
   * than the feed's revision is replaced by the owner's config (by revision, kept in the Cache API, since a
   * revision never changes). When that fails, the record is used as it is, on the TTLs (never current).
   */
  const checked = async (host: string, record: Record_, now: number): Promise<Record_> => {
    if (!current()) return record;
    const hint = hints.get(host);
    const siteId = siteIdOf(record.raw);
    // Only an owner's config (it has a revision) is announced by the feed when it changes: a config written
    // by hand, or an unknown host, keeps living by the TTLs.
    const keep = (checkedRecord: Record_) =>
      checkedRecord.revision !== undefined && checkedRecord.raw !== null ? { ...checkedRecord, epoch } : checkedRecord;
    if (!hint) return keep(record);
    if (hint.left) {
      // The feed said the host left this site: an older copy naming it is no site at all.
      if (siteId === hint.siteId && (record.revision ?? 0) < hint.revision) return { raw: null, fetchedAt: now };
      return keep(record);
    }
    if (siteId === hint.siteId && (record.revision ?? 0) >= hint.revision) return keep(record);
    const owned = await ownerConfig(hint.siteId, hint.revision);
    if (owned && owned.revision >= hint.revision) {
      if (!owned.site.hosts.includes(host)) return { raw: null, fetchedAt: now, revision: owned.revision };
      return { raw: JSON.stringify(owned.site), fetchedAt: now, revision: owned.revision, epoch };
    }
    return record;
  };

  /** The owner's settings at `revision` or later: from this data center's Cache API, else from the owner. */
  const ownerConfig = async (siteId: string, revision: number): Promise<{ site: Site; revision: number } | null> => {
    if (!options.owners) return null;
    const url = `${CONTROL_CACHE_ORIGIN}/config/${encodeURIComponent(siteId)}/${revision}`;
    try {
      const cache = options.cache ? await options.cache : undefined;
      const hit = await cache?.match(url);
      if (hit) return (await hit.json()) as { site: Site; revision: number };
      const owned = await withDeadline(options.owners.config(siteId), timeoutMs, "owner config");
      if (owned && cache) {
        const body = JSON.stringify(owned);
        const headers = { "content-type": "application/json", "cache-control": "max-age=86400" };
        await cache.put(
          `${CONTROL_CACHE_ORIGIN}/config/${encodeURIComponent(siteId)}/${owned.revision}`,
          new Response(body, { headers }),
        );
      }
      return owned;
    } catch (error) {
      options.log?.("config.owner-skipped", { siteId, error: String(error) });
      return null;
    }
  };

  const resolve = (host: string, record: Record_): Site | null => {
    if (!record.parsed) {
      try {
        record.parsed = { site: record.raw === null ? null : parseSite(parseJson(record.raw, host), host) };
      } catch (error) {
        record.parsed = {
          error:
            error instanceof TiercelError
              ? error
              : new TiercelError("site_config_invalid", 502, `The site config for ${host} is invalid`),
        };
      }
    }
    if ("error" in record.parsed) throw record.parsed.error;
    return record.parsed.site;
  };

  /** Keeps the parse of a record with the same config, so the same config is never parsed twice. */
  const carry = (record: Record_, before: Record_ | undefined) => {
    if (before?.parsed && before.raw === record.raw) record.parsed = before.parsed;
    return record;
  };

  const purgeMemory = new Map<string, PurgeRecord_>();
  const purgeUrlFor = (siteId: string) => `https://config.tiercel.internal/v1/purges/${encodeURIComponent(siteId)}`;
  const rememberPurges = (siteId: string, record: PurgeRecord_) =>
    setBounded(purgeMemory, siteId, record, MAX_REMEMBERED);
  /** A view for `raw` (null: none published); the known one when its version is the same (no re-parse). */
  const viewOf = (siteId: string, raw: string | null, version: number | undefined, before?: PurgeView): PurgeView => {
    if (raw === null) return NO_PURGES;
    if (before && version !== undefined && before.version === version) return before;
    const published = parsePublishedPurges(raw);
    if (!published) {
      options.log?.("config.purges-invalid", { siteId });
      return before ?? NO_PURGES;
    }
    return purgeViewOf(published);
  };
  const writePurgeCache = async (
    url: string,
    raw: string | null,
    version: number,
    fetchedAt: number,
    maxAge: number,
  ) => {
    if (!options.cache) return;
    try {
      const cache = await options.cache;
      const headers = {
        "content-type": "application/json",
        "cache-control": `max-age=${maxAge}`,
        "x-tiercel-fetched-at": String(fetchedAt),
        "x-tiercel-version": String(version),
      };
      await cache.put(url, new Response(raw ?? "null", { headers }));
    } catch (error) {
      options.log?.("config.cache-skipped", { url, error: String(error) });
    }
  };
  /** The owner's purge state at `version` or later: from this data center's Cache API, else the owner. */
  const ownerPurges = async (siteId: string, version: number, before?: PurgeView): Promise<PurgeView | null> => {
    if (!options.owners) return null;
    const url = (v: number) => `${CONTROL_CACHE_ORIGIN}/purges/${encodeURIComponent(siteId)}/${v}`;
    try {
      const cache = options.cache ? await options.cache : undefined;
      const hit = await cache?.match(url(version));
      if (hit) return viewOf(siteId, await hit.text(), version, before);
      const published = await withDeadline(options.owners.purges(siteId), timeoutMs, "owner purges");
      const raw = JSON.stringify(published);
      await writePurgeCache(url(published.version), raw, published.version, options.now(), 86_400);
      return purgeViewOf(published);
    } catch (error) {
      options.log?.("config.owner-skipped", { siteId, error: String(error) });
      return null;
    }
  };
  /** A purge view read from the micro-cache or KV, replaced by the owner's when the feed knows a newer one. */
  const checkedView = async (siteId: string, view: PurgeView, fetchedAt: number): Promise<PurgeRecord_> => {
    if (!current()) return { view, fetchedAt };
    const latest = latestPurge.get(siteId) ?? 0;
    if (view.version >= latest) return { view, fetchedAt, epoch };
    const owned = await ownerPurges(siteId, latest, view);
    if (owned && owned.version >= latest) return { view: owned, fetchedAt: options.now(), epoch };
    return { view, fetchedAt };
  };

  return {
    counters,

    attach(isCurrent) {
      current = isCurrent;
    },

    reset() {
      epoch += 1;
    },

    note(change) {
      if (change.config) {
        const { revision, hosts, dropped, deleted } = change.config;
        for (const host of [...hosts, ...dropped]) {
          // Hints only move forward: a change the feed got late (an owner's retry) never undoes a newer one.
          const hinted = hints.get(host);
          if (hinted && hinted.siteId === change.siteId && hinted.revision > revision) continue;
          setBounded(
            hints,
            host,
            {
              siteId: change.siteId,
              revision,
              left: deleted === true || dropped.includes(host),
            },
            MAX_REMEMBERED,
          );
          const before = memory.get(host);
          if (before && !(before.revision !== undefined && before.revision >= revision && !deleted)) {
            // Read again on the next request (checked against this hint); the parse is kept if it is the same.
            memory.set(host, { ...before, epoch: -1, fetchedAt: 0 });
          }
        }
      }
      if (change.purge) {
        const { version, delta } = change.purge;
        setBounded(latestPurge, change.siteId, Math.max(version, latestPurge.get(change.siteId) ?? 0), MAX_REMEMBERED);
        const before = purgeMemory.get(change.siteId);
        if (!before || before.view.version >= version) return;
        if (delta && before.view.version === version - 1) {
          rememberPurges(change.siteId, {
            view: applyPurgeDelta(before.view, delta),
            fetchedAt: before.fetchedAt,
            epoch: before.epoch ?? epoch,
          });
        } else {
          purgeMemory.set(change.siteId, { ...before, epoch: -1, fetchedAt: 0 });
        }
      }
    },

    async siteForHost(host, waitUntil) {
      const now = options.now();
      const inMemory = memory.get(host);
      const held = inMemory && now - (inMemory.heldAt ?? inMemory.fetchedAt) < memoryMs;
      if (inMemory && (known(inMemory) || (held && now - inMemory.fetchedAt < freshFor(inMemory)))) {
        if (inMemory.raw === null) counters.negativeHits += 1;
        else counters.memoryHits += 1;
        return resolve(host, inMemory);
      }
      const cachedRaw = await readCache(host);
      if (cachedRaw && now - cachedRaw.fetchedAt < freshFor(cachedRaw)) {
        const cached = carry(await checked(host, cachedRaw, now), inMemory);
        if (cached.raw === null) counters.negativeHits += 1;
        else counters.cacheHits += 1;
        // Memory keeps it for `memorySeconds` from now, within what is left of its micro-cache freshness (or
        // while the feed is current): not read back from the Cache API on every request until the KV read.
        cached.heldAt = now;
        remember(host, cached);
        if (cached !== cachedRaw && cached.raw !== cachedRaw.raw) {
          const write = writeCache(host, cached);
          if (waitUntil) waitUntil(write);
          else await write;
        }
        return resolve(host, cached);
      }
      let read: { value: string | null; metadata: { revision?: number } | null };
      try {
        counters.kvReads += 1;
        read = await withDeadline(
          kv.getWithMetadata<{ revision?: number }>(siteKey(host), "text"),
          timeoutMs,
          "config KV get",
        );
      } catch (cause) {
        const lastKnown = [inMemory, cachedRaw]
          .filter((record): record is Record_ => record !== undefined)
          .sort((a, b) => b.fetchedAt - a.fetchedAt)[0];
        if (lastKnown && now - lastKnown.fetchedAt < lastKnownMs) {
          counters.lastKnownServed += 1;
          options.log?.("config.last-known", { host, age: Math.round((now - lastKnown.fetchedAt) / 1000) });
          return resolve(host, carry(lastKnown, inMemory));
        }
        throw new TiercelError("site_store_unavailable", 503, "The site config store is unavailable", {
          cause,
          headers: { "retry-after": "5" },
        });
      }
      const revision = read.metadata?.revision;
      const fromKv: Record_ = {
        raw: read.value,
        fetchedAt: now,
        ...(typeof revision === "number" ? { revision } : {}),
      };
      const record = carry(await checked(host, fromKv, now), inMemory);
      remember(host, record);
      const write = writeCache(host, record);
      if (waitUntil) waitUntil(write);
      else await write;
      return resolve(host, record);
    },

    async prime(site, revision) {
      const now = options.now();
      const raw = JSON.stringify(site);
      await Promise.all(
        site.hosts.map(async (host) => {
          const before = memory.get(host)?.revision;
          if (before !== undefined && before > revision) return;
          const record: Record_ = { raw, fetchedAt: now, revision, parsed: { site }, epoch };
          remember(host, record);
          await writeCache(host, record);
        }),
      );
    },

    async purgesFor(siteId, waitUntil) {
      const now = options.now();
      const inMemory = purgeMemory.get(siteId);
      if (inMemory && (known(inMemory) || now - inMemory.fetchedAt < Math.min(memoryMs, cacheMs))) return inMemory.view;
      const before = inMemory?.view;
      if (options.cache) {
        try {
          const cache = await options.cache;
          const response = await withDeadline(cache.match(purgeUrlFor(siteId)), timeoutMs, "purges cache get");
          const fetchedAt = Number(response?.headers.get("x-tiercel-fetched-at"));
          if (response && Number.isFinite(fetchedAt) && now - fetchedAt < cacheMs) {
            const version = Number(response.headers.get("x-tiercel-version"));
            // The body is read only when the version is new to this isolate.
            const same = before !== undefined && before.version === version;
            if (same) response.body?.cancel().catch(() => {});
            const raw = same ? null : await response.text();
            const view = same ? before : viewOf(siteId, raw === "null" ? null : raw, version, before);
            const record = await checkedView(siteId, view, fetchedAt);
            rememberPurges(siteId, record);
            return record.view;
          }
          response?.body?.cancel().catch(() => {});
        } catch (error) {
          options.log?.("config.cache-skipped", { siteId, error: String(error) });
        }
      }
      try {
        counters.kvReads += 1;
        const read = await withDeadline(
          kv.getWithMetadata<{ version?: number }>(purgesKey(siteId), "text"),
          timeoutMs,
          "purges KV get",
        );
        const version = read.metadata?.version ?? 0;
        const record = await checkedView(siteId, viewOf(siteId, read.value, version, before), now);
        rememberPurges(siteId, record);
        const raw = record.view.version === version ? read.value : JSON.stringify(publishedOf(record.view));
        const write = writePurgeCache(purgeUrlFor(siteId), raw, record.view.version, now, lastKnownMs / 1000);
        if (waitUntil) waitUntil(write);
        else await write;
        return record.view;
      } catch (error) {
        // Purges are never guessed away: the last known state stands in (as a config does) while KV fails.
        options.log?.("config.purges-skipped", { siteId, error: String(error) });
        if (inMemory && now - inMemory.fetchedAt < lastKnownMs) return inMemory.view;
        throw new TiercelError("site_store_unavailable", 503, "The site config store is unavailable", {
          cause: error,
          headers: { "retry-after": "5" },
        });
      }
    },

    async applyPurges(siteId, delta) {
      const before = purgeMemory.get(siteId)?.view;
      if (before && before.version >= delta.version) return true;
      if (!before || before.version !== delta.version - 1) return false;
      const view = applyPurgeDelta(before, delta);
      const now = options.now();
      rememberPurges(siteId, { view, fetchedAt: now, epoch });
      await writePurgeCache(
        purgeUrlFor(siteId),
        JSON.stringify(publishedOf(view)),
        view.version,
        now,
        lastKnownMs / 1000,
      );
      return true;
    },

    async primePurges(siteId, published) {
      const before = purgeMemory.get(siteId)?.view;
      if (before && before.version > published.version) return;
      const now = options.now();
      rememberPurges(siteId, { view: purgeViewOf(published), fetchedAt: now, epoch });
      await writePurgeCache(purgeUrlFor(siteId), JSON.stringify(published), published.version, now, lastKnownMs / 1000);
    },

    async forget(hosts) {
      for (const host of hosts) memory.delete(host);
      if (!options.cache) return;
      const cache = await options.cache;
      await Promise.all(hosts.map((host) => cache.delete(urlFor(host)).catch(() => false)));
    },
  };
}

function parseJson(raw: string, host: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (cause) {
    throw new TiercelError("site_config_invalid", 502, `The site config for ${host} is not valid JSON`, { cause });
  }
}
