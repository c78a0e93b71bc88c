import { ADMIN_PREFIX, type ControlPlane, handleAdmin } from "./admin/api";
import { createCollapser } from "./core/collapse";
import { errorResponse, TiercelError } from "./core/errors";
import { type Deps, type Logger, respond } from "./core/pipeline";
import type { ShieldAnswer, ShieldBinding } from "./core/shield";
import { Stats } from "./core/stats";
import type { Tier } from "./core/tier";
import type { Shield } from "./objects/shield";
import { cloudflareImagesEngine } from "./optimize/cloudflare-images";
import { DEFAULT_OPTIMIZE_LIMITS, type Engines, TRANSFORM_BOUNDS } from "./optimize/optimize";
import { TransformLimiter } from "./optimize/queue";
import { type OptimizerBinding, remoteImageEngine, remoteMinifier, unboundOptimizer } from "./optimize/remote";
import { isResizeUrl } from "./optimize/resize-url";
import { originFactory } from "./origins";
import { envSiteStore } from "./sites/env-site";
import type { HostRegistryApi, SiteOwnerApi } from "./sites/owner";
import { kvSiteStore, REGISTRY_NAME, type SiteStore } from "./sites/store";
import { edgeTier } from "./tiers/edge";
import { kvTier } from "./tiers/kv";

// The Durable Object classes bound in wrangler.jsonc (docs/architecture.md, "Durable Objects").
export { HostRegistry } from "./objects/host-registry";
export { Shield } from "./objects/shield";
export { SiteOwner } from "./objects/site-owner";

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
const platforms = new WeakMap<Env, Platform>();
const shieldPlatforms = new WeakMap<Env, Platform>();

/** Builds the env-derived pieces once per isolate (env is the same object for every request). */
export function platformFor(env: Env): Platform {
  let platform = platforms.get(env);
  if (!platform) {
    platform = buildPlatform(env, [edgeTier(caches.open(env.EDGE_CACHE_NAME)), ...globalTiersFor(env)]);
    const shield = shieldFor(env);
    if (shield) platform.shield = shield;
    platforms.set(env, platform);
  }
  return platform;
}

/** The shield's platform (src/objects/shield.ts): the global tiers only, and no shield of its own. */
export function shieldPlatformFor(env: Env): Platform {
  let platform = shieldPlatforms.get(env);
  if (!platform) {
    platform = buildPlatform(env, globalTiersFor(env));
    shieldPlatforms.set(env, platform);
  }
  return platform;
}

/** The tiers shared by every data center, written once per fill (by the shield when there is one). */
function globalTiersFor(env: Env): Tier[] {
  return [kvTier(env.CACHE_KV)];
}

/** The SHIELD binding as the pipeline calls it: the instance named by the cache key (docs/architecture.md). */
function shieldFor(env: Env): ShieldBinding | undefined {
  // Typed as always present, but a Worker deployed with an older config has none.
  const namespace: DurableObjectNamespace<Shield> | undefined = env.SHIELD;
  if (!namespace) return undefined;
  return {
    fill: (key, request) => namespace.get(namespace.idFromName(key)).fill(request) as Promise<ShieldAnswer>,
    timeoutMs: LIMITS.shieldTimeoutMs,
  };
}

function buildPlatform(env: Env, tiers: Tier[]): Platform {
  return {
    sites: siteStoreFor(env),
    tiers,
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
    stats: new Stats(Date.now()),
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
 * The site store: the SITES namespace when bound; without it, the one site of the TIERCEL_SITE variable
 * (zero-config mode, src/sites/env-site.ts); without either, no host has a site.
 */
function siteStoreFor(env: Env): SiteStore {
  const kv = (env as { SITES?: KVNamespace }).SITES;
  if (kv) {
    return kvSiteStore(kv, {
      cache: caches.open("tiercel-config"),
      now: Date.now,
      log,
      cacheSeconds: configCacheSeconds(env),
    });
  }
  return (
    envSiteStore(env as unknown as Record<string, unknown>) ?? {
      counters: { kvReads: 0, memoryHits: 0, cacheHits: 0, negativeHits: 0, lastKnownServed: 0 },
      siteForHost: async () => null,
      forget: async () => {},
      prime: async () => {},
    }
  );
}

export default {
  fetch(request, env, ctx) {
    const platform = platformFor(env);
    // Tiercel's reserved prefix is answered before any site is looked up: no site can shadow it. Under
    // it, resize URLs belong to the site; everything else is the admin API.
    const url = new URL(request.url);
    if (url.pathname.startsWith(ADMIN_PREFIX) && !isResizeUrl(url)) {
      if (!(env as { SITES?: KVNamespace }).SITES) {
        return errorResponse(
          new TiercelError("admin_disabled", 503, "The admin API needs a site store: bind the SITES KV namespace"),
        );
      }
      return handleAdmin(request, {
        control: controlPlane(env),
        token: secretOf(env, "ADMIN_TOKEN"),
        sites: platform.sites,
        tiers: platform.tiers,
        stats: platform.stats,
        now: platform.now,
        log: platform.log,
        tierTimeoutMs: platform.tierTimeoutMs,
        invalidated: platform.invalidated,
      });
    }
    return respond(request, { ...platform, waitUntil: (work) => ctx.waitUntil(work) });
  },
} satisfies ExportedHandler<Env>;

/** The owners, reached through their Durable Object stubs (RPC). */
function controlPlane(env: Env): ControlPlane {
  return {
    registry: () => env.REGISTRY.get(env.REGISTRY.idFromName(REGISTRY_NAME)) as unknown as HostRegistryApi,
    owner: (siteId) => env.SITE_OWNER.get(env.SITE_OWNER.idFromName(siteId)) as unknown as SiteOwnerApi,
  };
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
