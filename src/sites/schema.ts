import { z } from "zod";
import { TiercelError } from "../core/errors";
import { DEFAULT_REQUEST_HEADERS } from "../core/forwarding";
import { DEFAULT_TARGETED_FIELDS } from "../core/http/targeted";

/**
 * The site config schema, version 1. Config read from KV is untrusted input: it is parsed here, once,
 * where it enters, and a bad value is refused with its field path. Unknown fields are refused too, so a
 * typo never silently falls back to a default.
 */
const originUrl = z.url({ protocol: /^https?$/, error: "must be an absolute http or https URL" }).refine((value) => {
  // Not a URL at all: z.url() has said so; the check must not throw (zod runs it anyway).
  if (!URL.canParse(value)) return true;
  const url = new URL(value);
  return url.username === "" && url.password === "" && url.search === "" && url.hash === "";
}, "must not carry credentials, a query or a fragment");

/** Allow origins on loopback, private or link-local addresses (the local demo does). Never metadata. */
const allowPrivate = z.boolean().default(false);

/** A backend at a URL, optionally reached at another `host:port` while the URL's host is sent as Host. */
const httpOrigin = z.strictObject({
  kind: z.literal("http"),
  /** Base URL of the backend; the request path and query are appended to its path. */
  url: originUrl,
  /** Where to connect instead of the URL's host: `ip:port`, `[ipv6]:port` or `hostname:port`. */
  connectTo: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, "must be host:port")
    .optional(),
  allowPrivate,
  /**
   * The scheme the backend is told in X-Forwarded-Proto. The cache key has no scheme, so by default it is a
   * fixed `https`: the backend's answer (its redirects, the absolute links it writes) cannot depend on the
   * client's scheme. `client` passes the client's, for backends that must know it; `http` a fixed `http`.
   */
  forwardedProto: z.enum(["https", "http", "client"]).default("https"),
});

/** Worker secret names: letters, digits and underscores, as wrangler accepts them. */
const secretName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "must be the name of a Worker secret");

/** An S3-compatible bucket (AWS S3, R2's S3 API, GCS interoperability, MinIO), signed with SigV4. */
const s3Origin = z.strictObject({
  kind: z.literal("s3"),
  /** The service endpoint, e.g. `https://s3.us-east-1.amazonaws.com`. */
  endpoint: originUrl,
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be a valid bucket name"),
  region: z.string().regex(/^[a-z0-9-]{2,32}$/, "must be a region name such as us-east-1 or auto"),
  /** `path`: endpoint/bucket/key; `virtual`: bucket.endpoint/key. */
  addressing: z.enum(["path", "virtual"]).default("path"),
  /** Key prefix inside the bucket, e.g. `site-a/`. */
  prefix: z
    .string()
    .max(512)
    .refine((p) => !p.startsWith("/") && !p.split("/").some((s) => s === "." || s === ".."), {
      message: "must not start with / or contain . or .. segments",
    })
    .default(""),
  /** Object served for a path ending in `/` (as S3 website hosting does), e.g. `index.html`. */
  indexDocument: z
    .string()
    .regex(/^[^/]{1,255}$/, "must be a file name without /")
    .optional(),
  /** Names of the Worker secrets holding the credentials (never the credentials themselves). */
  accessKeyIdSecret: secretName,
  secretAccessKeySecret: secretName,
  allowPrivate,
});

/** A cookie name (RFC 6265 §4.1.1: a token). */
const cookieName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, "must be a cookie name");

/** A request header name (RFC 9110 §5.1: a token), kept in lower case. */
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, "must be a header name")
  .transform((name) => name.toLowerCase());

/** A duration in whole seconds, at most a year. */
const seconds = z.number().int().min(0).max(31_536_000);

/**
 * How the site is cached. Every field has a default, so `{}` (or leaving `cache` out) is a valid policy.
 * Origin directives win over the stale-window defaults; `edgeTtl` and `browserTtl`, when set, win over the
 * origin's freshness.
 */
const cachePolicy = z.strictObject({
  /** Freshness Tiercel uses for storable responses, instead of the origin's (RFC 9111 §4.2.1). */
  edgeTtl: seconds.optional(),
  /** When set, clients get `Cache-Control: max-age=<browserTtl>` instead of the origin's Cache-Control. */
  browserTtl: seconds.optional(),
  /** stale-while-revalidate window (RFC 5861 §3) for responses that do not carry one. */
  staleWhileRevalidate: seconds.default(0),
  /** stale-if-error window (RFC 5861 §4) for responses that do not carry one. */
  staleIfError: seconds.default(0),
  /** Freshness of 404 and 410 responses (negative caching); 0 stores none. */
  negativeTtl: seconds.default(60),
  /** Store responses that set cookies, with their Set-Cookie removed (otherwise they are never stored). */
  stripSetCookie: z.boolean().default(false),
  /**
   * Targeted cache-control fields (RFC 9213) Tiercel obeys, most specific first: the first one present with
   * a valid value replaces Cache-Control and Expires for Tiercel. All but CDN-Cache-Control are stripped
   * from what clients get. `[]` turns targeted fields off.
   */
  targetedFields: z
    .array(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/, "must be a header field name"))
    .max(8)
    .refine((names) => !names.some((name) => name.toLowerCase() === "cache-control"), {
      message: "must not list Cache-Control itself",
    })
    .default([...DEFAULT_TARGETED_FIELDS]),
  /**
   * Grace: how long past its expiry a stored response may still answer when the origin cannot be reached
   * (refused, reset, timed out), unless its directives forbid serving it stale (RFC 9111 §4.2.4). Also
   * bounds how long a soft-purged entry is served while it is refreshed. One day by default.
   */
  grace: seconds.default(86_400),
  /**
   * The longest any tier may hold an entry: one fetched longer ago than this is absent on lookup, whatever
   * its lifetime, so URL purge records can expire after it (src/sites/purges.ts). 3 days by default; at
   * least a minute, at most 30 days.
   */
  maxHold: z.number().int().min(60).max(2_592_000).default(259_200),
  /**
   * Which query parameters take part in the key and reach the origin: `all` (exactly as received), `none`,
   * or an allow-list, optionally sorted by name. Unset: `none` for bucket origins, `all` for http ones.
   */
  query: z
    .union([
      z.enum(["all", "none"]),
      z.strictObject({
        allow: z.array(z.string().min(1, "must not be empty").max(256)).min(1).max(64),
        sort: z.boolean().default(false),
      }),
    ])
    .optional(),
  /**
   * Bytes of an answer whose length is unknown when its head would leave (no Content-Length from the
   * origin, or a body Tiercel decoded) read before the head is sent, so it goes out with its length and a
   * body that breaks off becomes an error answer, never a clean short one (src/core/answer.ts). Past it the
   * answer streams chunked. 0 turns it off; at most 32 MiB, since it is held in the isolate's memory.
   */
  collectUnknownLength: z
    .number()
    .int()
    .min(0)
    .max(32 * 1024 * 1024)
    .default(8 * 1024 * 1024),
  /**
   * Where the global tier splits by size when an R2 bucket is bound (docs/architecture.md, "Large objects"):
   * bodies up to this many bytes go to KV, larger ones (and bodies of unknown length past the 4 MiB buffer)
   * to R2. 8 MiB by default: what KV holds in one value, so KV never chunks. Without R2, ignored.
   */
  largeObjectBytes: z
    .number()
    .int()
    .min(0)
    .max(25 * 1024 * 1024)
    .default(8 * 1024 * 1024),
  /**
   * Which fills are written to the global tier (KV, and R2) as well as to the data center's cache
   * (src/core/admission.ts): `always`, or `second-request` (a key's second fill: through its shield, worldwide;
   * with the shield off, in an isolate).
   */
  globalAdmission: z.enum(["always", "second-request"]).default("always"),
  /** Bodies declared larger than this are kept out of the global tier (edge only). Unset: no bound. */
  globalMaxBytes: z.number().int().min(0).optional(),
  /** Most variants one URL may have under Vary; past it, new variants are answered unstored. */
  maxVariants: z.number().int().min(0).max(128).default(32),
  /**
   * Request headers passed to the origin on GET and HEAD requests answered through the cache, besides the
   * fields a stored response names in Vary, credentials and Tiercel's own (src/core/forwarding.ts).
   */
  requestHeaders: z
    .array(headerName)
    .max(50)
    .default([...DEFAULT_REQUEST_HEADERS]),
  /**
   * Requests carrying cookies: `pass` (default) shares their answers only when the response is `public`,
   * has `s-maxage` or varies on Cookie; `ignore` stores them by the RFC 9111 rules alone, as any other.
   */
  cookies: z.enum(["pass", "ignore"]).default("pass"),
  /** Cookies removed from cacheable requests before anything else looks at them (e.g. analytics cookies). */
  ignoreCookies: z.array(cookieName).max(100).default([]),
  /**
   * The origin shield: a cold miss is fetched from the origin once for every data center, by the SHIELD
   * Durable Object of its key, and streamed to every waiter (docs/architecture.md, "The shield"). On by
   * default; `false`: each data center (each isolate) fetches on its own and writes the global tier itself.
   */
  shield: z.boolean().default(true),
});

export type CachePolicy = z.output<typeof cachePolicy>;
export type QueryPolicy = NonNullable<CachePolicy["query"]>;
export type OptimizeOptions = z.output<typeof optimize>;

/** Requests that skip the cache and go straight to the origin. */
const bypass = z.strictObject({
  /** Path prefixes, e.g. `/wp-admin/`. */
  paths: z
    .array(z.string().regex(/^\/[^\s]{0,255}$/, "must be a path prefix starting with /"))
    .max(100)
    .default([]),
  /** Cookie names whose presence bypasses the cache, e.g. a logged-in cookie. */
  cookies: z.array(cookieName).max(100).default([]),
});

/** Widths and heights a resize URL may ask for: an allow-list, so random sizes cannot bust the cache. */
const dimensions = z.array(z.number().int().min(1).max(4096)).max(32);

/**
 * Resizing through `/_tiercel/image/<options>/<path>` (docs/configuration.md): `true` allows the default
 * widths; an object sets the allow-lists. A size or quality not listed is refused with 400.
 */
const resize = z.union([
  z.boolean(),
  z.strictObject({
    widths: dimensions.min(1),
    heights: dimensions.default([]),
    /** Qualities a URL may ask for (else the site's `quality`). */
    qualities: z.array(z.number().int().min(1).max(100)).max(16).default([]),
  }),
]);

/** Options that change the bytes Tiercel serves; a digest of them is part of every cache key. */
const optimize = z.strictObject({
  /** Image recompression: off, lossless, or lossy at `quality`. */
  polish: z.enum(["off", "lossless", "lossy"]).default("off"),
  /** Quality of lossy encodes (polish lossy, resized images), bounded so "lossy" never means "ruined". */
  quality: z.number().int().min(40).max(95).default(80),
  /** Image formats offered to clients whose Accept lists them; the best one the engine can write wins. */
  formats: z
    .array(z.enum(["webp", "avif"]))
    .max(2)
    .default([]),
  /** Image resizing through the documented URL form. */
  resize: resize.default(false),
  minify: z
    .strictObject({ html: z.boolean().default(false), css: z.boolean().default(false), js: z.boolean().default(false) })
    .default({ html: false, css: false, js: false }),
  /**
   * Who transforms images: `wasm` (codecs inside the Worker, everywhere) or `cloudflare` (Cloudflare's
   * Images binding, when deployed with one; falls back to wasm when the binding is missing).
   */
  engine: z.enum(["wasm", "cloudflare"]).default("wasm"),
});

/** A purge record: when (epoch ms) entries fetched before it stopped counting. */
const purgeTimes = z.record(z.string().max(1024), z.number().int().min(0)).default({});

/**
 * Purge records as configs carried them before owners kept purges apart (src/sites/purges.ts). Still read
 * (a config published before the change), never written: an owner moves them out when it first loads the
 * site, and the settings it publishes carry none.
 */
const purges = z.strictObject({
  /** Base cache key → purge time (URL purges). */
  urls: purgeTimes,
  /** Tag → purge time. */
  tags: purgeTimes,
  /** Tag → soft purge time. */
  softTags: purgeTimes,
  /** Soft purge of everything. */
  softAll: z.number().int().min(0).optional(),
});

/** A host name without port; upper case is folded to lower case (host names are case-insensitive, RFC 4343). */
const hostName = z
  .string()
  .max(253)
  .toLowerCase()
  .regex(/^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/, "must be a host name without port");

export const siteSchema = z.strictObject({
  /** Schema version; absent means 1. */
  version: z.literal(1).default(1),
  /** Unique, random, never reused: part of every cache key of the site. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, "must be 8–64 characters of A–Z, a–z, 0–9, _ or -"),
  /** The hosts the site answers for (each has its own `host:` key in KV). */
  /** Listed twice (also after case folding) counts once: the duplicates are dropped, the order kept. */
  hosts: z
    .array(hostName)
    .max(100)
    .overwrite((hosts) => [...new Set(hosts)])
    .default([]),
  origin: z.discriminatedUnion("kind", [httpOrigin, s3Origin]),
  cache: cachePolicy.default(cachePolicy.parse({})),
  bypass: bypass.default(bypass.parse({})),
  optimize: optimize.default(optimize.parse({})),
  /** Bumped by a purge of everything; part of every cache key. */
  generation: z.number().int().min(0).default(0),
  purges: purges.default(purges.parse({})),
  limits: z
    .strictObject({
      /** Bodies larger than this stream through unstored (at most the Worker-wide limit). */
      maxObjectBytes: z.number().int().min(0).optional(),
    })
    .default({}),
});

export type Site = z.output<typeof siteSchema>;
export type SiteInput = z.input<typeof siteSchema>;
export type OriginConfig = Site["origin"];
export type HttpOriginConfig = Extract<OriginConfig, { kind: "http" }>;
export type S3OriginConfig = Extract<OriginConfig, { kind: "s3" }>;

/** Parses an untrusted site config; throws `site_config_invalid` naming every bad field. */
export function parseSite(value: unknown, source: string): Site {
  const result = siteSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
  throw new TiercelError(
    "site_config_invalid",
    502,
    `The site config for ${source} is invalid: ${problems.join("; ")}`,
  );
}
