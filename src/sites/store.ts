import { withDeadline } from "../core/deadline";
import { TiercelError } from "../core/errors";
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
}

/**
 * The storage layout of sites, in one place.
 *
 * - Owners (Durable Objects, src/objects/) hold the truth: `SITE_OWNER` by site id (config, revision,
 *   purge state, tombstone), `REGISTRY` ("hosts") the host → site id claims.
 * - KV `SITES` is the read path the owners publish to: `host:<host>` holds the whole site config (its
 *   revision in the key's metadata) for each of the site's hosts.
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
  /** The owner's revision, when this isolate learned it from the owner (see `prime`). */
  revision?: number;
  parsed?: { site: Site | null } | { error: TiercelError };
}

const MAX_REMEMBERED = 10_000;

export function kvSiteStore(kv: KVNamespace, options: SiteStoreOptions): SiteStore {
  const memoryMs = (options.memorySeconds ?? 5) * 1000;
  const cacheMs = (options.cacheSeconds ?? 30) * 1000;
  const negativeMs = (options.negativeSeconds ?? 10) * 1000;
  const lastKnownMs = (options.lastKnownSeconds ?? 300) * 1000;
  const timeoutMs = options.timeoutMs ?? 2000;
  const memory = new Map<string, Record_>();
  const counters: ConfigCounters = { kvReads: 0, memoryHits: 0, cacheHits: 0, negativeHits: 0, lastKnownServed: 0 };
  const urlFor = (host: string) => `https://config.tiercel.internal/v1/host/${encodeURIComponent(host)}`;
  const freshFor = (record: Record_) => (record.raw === null ? Math.min(negativeMs, cacheMs) : cacheMs);

  const remember = (host: string, record: Record_) => {
    memory.delete(host);
    memory.set(host, record);
    if (memory.size > MAX_REMEMBERED) {
      const oldest = memory.keys().next().value;
      if (oldest !== undefined) memory.delete(oldest);
    }
  };

  const readCache = async (host: string): Promise<Record_ | undefined> => {
    if (!options.cache) return undefined;
    try {
      const cache = await options.cache;
      const response = await withDeadline(cache.match(urlFor(host)), timeoutMs, "config cache get");
      if (!response) return undefined;
      const value = (await response.json()) as Partial<Record_>;
      if (typeof value.fetchedAt !== "number" || (typeof value.raw !== "string" && value.raw !== null))
        return undefined;
      return { raw: value.raw, fetchedAt: value.fetchedAt };
    } catch (error) {
      options.log?.("config.cache-skipped", { host, error: String(error) });
      return undefined;
    }
  };

  const writeCache = async (host: string, record: Record_): Promise<void> => {
    if (!options.cache) return;
    try {
      const cache = await options.cache;
      const body = JSON.stringify({ raw: record.raw, fetchedAt: record.fetchedAt });
      // Kept for the last-known window, so it can stand in when KV fails; freshness is checked on read.
      const headers = { "content-type": "application/json", "cache-control": `max-age=${lastKnownMs / 1000}` };
      await cache.put(urlFor(host), new Response(body, { headers }));
    } catch (error) {
      options.log?.("config.cache-skipped", { host, error: String(error) });
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

  return {
    counters,

    async siteForHost(host, waitUntil) {
      const now = options.now();
      const inMemory = memory.get(host);
      if (inMemory && now - inMemory.fetchedAt < Math.min(memoryMs, freshFor(inMemory))) {
        if (inMemory.raw === null) counters.negativeHits += 1;
        else counters.memoryHits += 1;
        return resolve(host, inMemory);
      }
      const cached = await readCache(host);
      if (cached && now - cached.fetchedAt < freshFor(cached)) {
        if (cached.raw === null) counters.negativeHits += 1;
        else counters.cacheHits += 1;
        // Memory keeps it only for what is left of its micro-cache freshness.
        remember(host, cached);
        return resolve(host, cached);
      }
      let raw: string | null;
      try {
        counters.kvReads += 1;
        raw = await withDeadline(kv.get(siteKey(host), "text"), timeoutMs, "config KV get");
      } catch (cause) {
        const lastKnown = [inMemory, cached]
          .filter((record): record is Record_ => record !== undefined)
          .sort((a, b) => b.fetchedAt - a.fetchedAt)[0];
        if (lastKnown && now - lastKnown.fetchedAt < lastKnownMs) {
          counters.lastKnownServed += 1;
          options.log?.("config.last-known", { host, age: Math.round((now - lastKnown.fetchedAt) / 1000) });
          return resolve(host, lastKnown);
        }
        throw new TiercelError("site_store_unavailable", 503, "The site config store is unavailable", {
          cause,
          headers: { "retry-after": "5" },
        });
      }
      const record: Record_ = { raw, fetchedAt: now };
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
          const known = memory.get(host)?.revision;
          if (known !== undefined && known > revision) return;
          const record: Record_ = { raw, fetchedAt: now, revision, parsed: { site } };
          remember(host, record);
          await writeCache(host, record);
        }),
      );
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
