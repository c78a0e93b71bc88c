import { z } from "zod";
import { TiercelError } from "../core/errors";

/**
 * The site config schema, version 1. Config read from KV is untrusted input: it is parsed here, once,
 * where it enters, and a bad value is refused with its field path. Unknown fields are refused too, so a
 * typo never silently falls back to a default.
 */
const originUrl = z.url({ protocol: /^https?$/, error: "must be an absolute http or https URL" }).refine((value) => {
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
});

export type CachePolicy = z.output<typeof cachePolicy>;

export const siteSchema = z.strictObject({
  /** Schema version; absent means 1. */
  version: z.literal(1).default(1),
  /** Unique, random, never reused: part of every cache key of the site. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, "must be 8–64 characters of A–Z, a–z, 0–9, _ or -"),
  origin: z.discriminatedUnion("kind", [httpOrigin, s3Origin]),
  cache: cachePolicy.default(cachePolicy.parse({})),
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
