import {
  type AdminDeps,
  adminHostOf,
  adminRouteError,
  adminRouteOf,
  type ControlPlane,
  handleAdmin,
} from "./admin/api";
import { handleConsole, isConsolePath } from "./console/console";
import { createCollapser } from "./core/collapse";
import { errorResponse, TiercelError } from "./core/errors";
import { type Deps, type Logger, respond } from "./core/pipeline";
import type { ShieldAnswer, ShieldBinding } from "./core/shield";
import { Stats, StatsFlusher } from "./core/stats";
import { STATS_NAME, type StatsAggregatorApi } from "./core/stats-buckets";
import type { Tier } from "./core/tier";
import type { Shield } from "./objects/shield";
import { cloudflareImagesEngine } from "./optimize/cloudflare-images";
import { DEFAULT_OPTIMIZE_LIMITS, type Engines, TRANSFORM_BOUNDS } from "./optimize/optimize";
import { TransformLimiter } from "./optimize/queue";
import { type OptimizerBinding, remoteImageEngine, remoteMinifier, unboundOptimizer } from "./optimize/remote";
import { isResizeUrl } from "./optimize/resize-url";
import { originFactory } from "./origins";
import { ControlClient } from "./sites/control";
import { envSiteStore } from "./sites/env-site";
import { type ControlFeedApi, type HostRegistryApi, type SiteOwnerApi, unwrap } from "./sites/owner";
import { FEED_NAME, kvSiteStore, REGISTRY_NAME, type SiteStore } from "./sites/store";
import { edgeTier } from "./tiers/edge";
import { globalTier } from "./tiers/global";
import { kvTier } from "./tiers/kv";
import { r2Tier } from "./tiers/r2";

export { ControlFeed } from "./objects/control-feed";
// The Durable Object classes bound in wrangler.jsonc (docs/architecture.md, "Durable Objects").
export { HostRegistry } from "./objects/host-registry";
export { Shield } from "./objects/shield";
export { SiteOwner } from "./objects/site-owner";
export { StatsAggregator } from "./objects/stats-aggregator";

/**
 * The Worker entry point: the only file that reads `env`. It binds the platform to the pieces once per
 * isolate and hands every request to the pipeline.
 */

/** Limits that are not per-site settings (yet). */
export const LIMITS = {
  /** A tier operation slower than this is skipped. */
  tierTimeoutMs: 2_000,
  /** Deadline for an origin's response headers. */
  originHeadersTimeoutMs: 30_000,
  /** Longest pause between two chunks of an origin's body. */
  originBodyIdleMs: 30_000,
  /** Bodies up to this size are buffered once (and shared with collapsed requests); larger ones stream. */
  maxBufferBytes: 4 * 1024 * 1024,
  /** Bodies larger than this stream through unstored. */
  maxObjectBytes: 512 * 1024 * 1024,
  /**
   * How long a data center waits for the shield's answer (the origin's headers, reached through it) before
   * fetching the origin itself: the origin's own deadline plus a margin, so only a broken shield runs out.
   */
  shieldTimeoutMs: 30_000 + 5_000,
} as const;

const log: Logger = (event, fields) => console.log(JSON.stringify({ event, ...fields }));

type Platform = Omit<Deps, "waitUntil">;

/** The config micro-cache TTL: CONFIG_CACHE_SECONDS (0–300), 30 by default as in the write-up. */
function configCacheSeconds(env: Env): number {
  const value = Number((env as unknown as Record<string, unknown>).CONFIG_CACHE_SECONDS ?? 30);
  return Number.isFinite(value) && value >= 0 && value <= 300 ? value : 30;
}
/** The control feed's window: CONTROL_WINDOW_MS (100–60000), 1000 by default. */
export function controlWindowMs(env: Env): number {
  const value = Number((env as unknown as Record<string, unknown>).CONTROL_WINDOW_MS ?? 1000);
  return Number.isFinite(value) && value >= 100 && value <= 60_000 ? value : 1000;
}
const platforms = new WeakMap<Env, Platform>();

/** Builds the env-derived pieces once per isolate (env is the same object for every request). */
export function platformFor(env: Env): Platform {
  let platform = platforms.get(env);
  if (!platform) {
    platform = buildPlatform(env);
    const shield = shieldFor(env);
    if (shield) platform.shield = shield;
    platforms.set(env, platform);
  }
  return platform;
}

/**
 * The pieces of one isolate. `dataCenter` names its Cache API caches (tests simulate several data centers
 * in one process: each gets its own caches and memory, and shares KV and the Durable Objects);
 * `windowMs` overrides CONTROL_WINDOW_MS.
 */
/** The platform of the shield's Durable Object: the global tier only (a data center keeps its own edge copy). */
const shieldPlatforms = new WeakMap<Env, Platform>();

export function shieldPlatformFor(env: Env): Platform {
  let platform = shieldPlatforms.get(env);
  if (!platform) {
    platform = buildPlatform(env, { tiers: globalTiersFor(env) });
    shieldPlatforms.set(env, platform);
  }
  return platform;
}

function shieldFor(env: Env): ShieldBinding | undefined {
  // Typed as always present, but a Worker deployed with an older config has none.
  const namespace: DurableObjectNamespace<Shield> | undefined = env.SHIELD;
  if (!namespace) return undefined;
  return {
    fill: (key, request) => namespace.get(namespace.idFromName(key)).fill(request) as Promise<ShieldAnswer>,
    invalidated: async (key) => {
      await namespace.get(namespace.idFromName(key)).invalidated(key);
    },
    timeoutMs: LIMITS.shieldTimeoutMs,
  };
}

export function buildPlatform(
  env: Env,
  place: { dataCenter?: string; windowMs?: number; tiers?: Tier[] } = {},
): Platform {
  const suffix = place.dataCenter ? `-${place.dataCenter}` : "";
  const { sites, control } = siteStoreFor(env, suffix, place.windowMs ?? controlWindowMs(env));
  const stats = new Stats(Date.now);
  // Typed as always present, but a Worker deployed with an older config has none.
  const statsBinding: Env["STATS"] | undefined = env.STATS;
  return {
    sites,
    ...(control ? { control } : {}),
    tiers: place.tiers ?? tiersFor(env, suffix),
    originFor: originFactory({
      headersTimeoutMs: LIMITS.originHeadersTimeoutMs,
      bodyIdleMs: LIMITS.originBodyIdleMs,
      // Bucket credentials are Worker secrets, named in the site config; never stored in KV.
      secret: (name) => secretOf(env, name),
      connectMode: (env.ORIGIN_CONNECT_MODE as string) === "resolve-override" ? "resolve-override" : "direct",
    }),
    now: Date.now,
    log,
    collapser: createCollapser(),
    stats,
    // Without the STATS binding (an older config), the counters stay in the isolate.
    ...(statsBinding ? { flusher: new StatsFlusher(stats, (batch) => aggregator(env).add(batch), Date.now, log) } : {}),
    invalidated: new Map(),
    tierTimeoutMs: LIMITS.tierTimeoutMs,
    maxBufferBytes: LIMITS.maxBufferBytes,
    maxObjectBytes: LIMITS.maxObjectBytes,
    engines: enginesFor(env),
    optimizeLimits: DEFAULT_OPTIMIZE_LIMITS,
    transformLimiter: new TransformLimiter(TRANSFORM_BOUNDS.perSite, TRANSFORM_BOUNDS.isolate),
  };
}

/**
 * The tiers, nearest first: this data center's Cache API, then the global tier. With an R2 bucket bound
 * (CACHE_R2) the global tier keeps large bodies in R2 and every record in KV (tiers/global.ts): ranged
 * reads, no 25 MiB value limit, one write per 8 MiB part. Without it, KV holds every size, in 8 MiB chunks.
 */
function tiersFor(env: Env, suffix = ""): Tier[] {
  return [edgeTier(caches.open(`${env.EDGE_CACHE_NAME}${suffix}`)), ...globalTiersFor(env)];
}

/** The global tier: KV, with large bodies in R2 when the bucket is bound. */
function globalTiersFor(env: Env): Tier[] {
  // KV takes one write per second per key: this isolate never sends more (a refused write skips the tier).
  const kv = kvTier(env.CACHE_KV, { minWriteGapMs: 1000 });
  // Typed as always present, but a Worker deployed without the bucket has none.
  const bucket: R2Bucket | undefined = (env as { CACHE_R2?: R2Bucket }).CACHE_R2;
  if (!bucket) return [kv];
  return [globalTier(kv, r2Tier(bucket, { expire: false }))];
}

/**
 * The site store: the SITES namespace when bound; without it, the one site of the TIERCEL_SITE variable
 * (zero-config mode, src/sites/env-site.ts); without either, no host has a site.
 */
function siteStoreFor(env: Env, suffix: string, windowMs: number): { sites: SiteStore; control?: ControlClient } {
  const kv = (env as { SITES?: KVNamespace }).SITES;
  if (kv) {
    const owners = controlPlane(env);
    const sites = kvSiteStore(kv, {
      cache: caches.open(`tiercel-config${suffix}`),
      now: Date.now,
      log,
      cacheSeconds: configCacheSeconds(env),
      owners: {
        config: async (siteId) => unwrap(await owners.owner(siteId).read(siteId)),
        purges: (siteId) => owners.owner(siteId).purges(siteId),
      },
    });
    // Without the CONTROL binding (an older deployment), configs live by the TTLs and KV alone.
    const feed = (env as { CONTROL?: Env["CONTROL"] }).CONTROL;
    if (!feed) return { sites };
    const control = new ControlClient({
      store: sites,
      feed: (since) => (feed.get(feed.idFromName(FEED_NAME)) as unknown as ControlFeedApi).since(since),
      cache: caches.open(`tiercel-control${suffix}`),
      now: Date.now,
      windowMs,
      waitMs: CONTROL_WAIT_MS,
      log,
    });
    return { sites, control };
  }
  return {
    sites: envSiteStore(env as unknown as Record<string, unknown>) ?? {
      counters: { kvReads: 0, memoryHits: 0, cacheHits: 0, negativeHits: 0, lastKnownServed: 0 },
      siteForHost: async () => null,
      forget: async () => {},
      prime: async () => {},
    },
  };
}

/** The longest a request waits for a control feed check (it goes on in the background). */
const CONTROL_WAIT_MS = 50;

export default {
  fetch(request, env, ctx) {
    const platform = platformFor(env);
    // Tiercel's reserved prefix is answered before any site is looked up: no site can shadow it. Under
    // it, resize URLs belong to the site; everything else is the admin API, on ADMIN_HOST only when that
    // is set (src/admin/api.ts, adminRouteOf).
    const url = new URL(request.url);
    const adminHost = secretOf(env, "ADMIN_HOST");
    const route = adminRouteOf(request.headers.get("host") ?? url.host, url.pathname, isResizeUrl(url), adminHost);
    if (route !== "site" && route !== "admin") return errorResponse(adminRouteError(route));
    if (route === "admin") {
      if (!(env as { SITES?: KVNamespace }).SITES) {
        return errorResponse(
          new TiercelError("admin_disabled", 503, "The admin API needs a site store: bind the SITES KV namespace"),
        );
      }
      const deps: AdminDeps = {
        control: controlPlane(env),
        token: secretOf(env, "ADMIN_TOKEN"),
        adminHost: adminHost === undefined ? undefined : (adminHostOf(adminHost) ?? undefined),
        sites: platform.sites,
        tiers: platform.tiers,
        stats: platform.stats,
        ...(platform.flusher ? { flusher: platform.flusher } : {}),
        now: platform.now,
        log: platform.log,
        tierTimeoutMs: platform.tierTimeoutMs,
        invalidated: platform.invalidated,
        ...(platform.control ? { propagationMs: 2 * controlWindowMs(env) + CONTROL_WAIT_MS } : {}),
      };
      // The operators' console: pages over the same handler, in-process (src/console/console.ts).
      if (isConsolePath(url.pathname)) return handleConsole(request, deps, { adminHostSet: adminHost !== undefined });
      return handleAdmin(request, deps);
    }
    return respond(request, { ...platform, waitUntil: (work) => ctx.waitUntil(work) }, url);
  },
} satisfies ExportedHandler<Env>;

/** The owners, reached through their Durable Object stubs (RPC). */
function controlPlane(env: Env): ControlPlane {
  return {
    registry: () => env.REGISTRY.get(env.REGISTRY.idFromName(REGISTRY_NAME)) as unknown as HostRegistryApi,
    owner: (siteId) => env.SITE_OWNER.get(env.SITE_OWNER.idFromName(siteId)) as unknown as SiteOwnerApi,
    stats: () => aggregator(env),
  };
}

/** The stats aggregator's one instance (docs/architecture.md, "Durable Objects"). */
function aggregator(env: Env): StatsAggregatorApi {
  return env.STATS.get(env.STATS.idFromName(STATS_NAME)) as unknown as StatsAggregatorApi;
}

/**
 * The optimizer's engines: the WASM codecs and the minifiers run in the optimizer Worker, behind the
 * OPTIMIZER service binding (src/optimizer-worker.ts); without the binding every such transform fails and
 * the original stands in. Cloudflare's image service is called from here (it does its work elsewhere).
 */
function enginesFor(env: Env): Engines {
  // Typed as always present, but a Worker deployed without it (or an older config) has none.
  const binding: OptimizerBinding | undefined = env.OPTIMIZER;
  const remote = { timeoutMs: DEFAULT_OPTIMIZE_LIMITS.engineTimeoutMs };
  const engines: Engines = binding
    ? { wasm: remoteImageEngine(binding, remote), minifier: remoteMinifier(binding, remote) }
    : { wasm: unboundOptimizer.engine, minifier: unboundOptimizer.minifier };
  if (env.IMAGES) engines.cloudflare = cloudflareImagesEngine(env.IMAGES);
  return engines;
}

/** A Worker secret (or, locally, a var) by name, if it is a non-empty string. */
function secretOf(env: Env, name: string): string | undefined {
  const value = (env as unknown as Record<string, unknown>)[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}
