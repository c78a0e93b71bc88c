import { ADMIN_PREFIX, handleAdmin } from "./admin/api";
import { createCollapser } from "./core/collapse";
import { errorResponse, TiercelError } from "./core/errors";
import { type Deps, type Logger, respond } from "./core/pipeline";
import { Stats } from "./core/stats";
import { cloudflareImagesEngine } from "./optimize/cloudflare-images";
import { DEFAULT_OPTIMIZE_LIMITS } from "./optimize/optimize";
import { TransformQueue } from "./optimize/queue";
import { isResizeUrl } from "./optimize/resize-url";
import { wasmImageEngine } from "./optimize/wasm-images";
import { originFactory } from "./origins";
import { envSiteStore } from "./sites/env-site";
import { kvSiteStore, type SiteStore } from "./sites/store";
import { edgeTier } from "./tiers/edge";
import { kvTier } from "./tiers/kv";

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
} as const;

const log: Logger = (event, fields) => console.log(JSON.stringify({ event, ...fields }));

type Platform = Omit<Deps, "waitUntil">;

/** The config micro-cache TTL: CONFIG_CACHE_SECONDS (0–300), 30 by default as in the write-up. */
function configCacheSeconds(env: Env): number {
  const value = Number((env as unknown as Record<string, unknown>).CONFIG_CACHE_SECONDS ?? 30);
  return Number.isFinite(value) && value >= 0 && value <= 300 ? value : 30;
}
const platforms = new WeakMap<Env, Platform>();

/** Builds the env-derived pieces once per isolate (env is the same object for every request). */
export function platformFor(env: Env): Platform {
  let platform = platforms.get(env);
  if (!platform) {
    platform = {
      sites: siteStoreFor(env),
      tiers: [edgeTier(caches.open(env.EDGE_CACHE_NAME)), kvTier(env.CACHE_KV)],
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
      engines: env.IMAGES
        ? { wasm: wasmImageEngine, cloudflare: cloudflareImagesEngine(env.IMAGES) }
        : { wasm: wasmImageEngine },
      optimizeLimits: DEFAULT_OPTIMIZE_LIMITS,
      transformQueue: new TransformQueue(),
    };
    platforms.set(env, platform);
  }
  return platform;
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
        kv: env.SITES,
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

/** A Worker secret (or, locally, a var) by name, if it is a non-empty string. */
function secretOf(env: Env, name: string): string | undefined {
  const value = (env as unknown as Record<string, unknown>)[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}
