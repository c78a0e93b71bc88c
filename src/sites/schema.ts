import { z } from "zod";
import { TiercelError } from "../core/errors";

/**
 * The site config schema, version 1. Config read from KV is untrusted input: it is parsed here, once,
 * where it enters, and a bad value is refused with its field path. Unknown fields are refused too, so a
 * typo never silently falls back to a default.
 */
const httpOrigin = z.strictObject({
  kind: z.literal("http"),
  /** Base URL of the backend; the request path and query are appended to its path. */
  url: z.url({ protocol: /^https?$/, error: "must be an absolute http or https URL" }).refine((value) => {
    const url = new URL(value);
    return url.username === "" && url.password === "" && url.search === "" && url.hash === "";
  }, "must not carry credentials, a query or a fragment"),
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
  origin: z.discriminatedUnion("kind", [httpOrigin]),
  cache: cachePolicy.default(cachePolicy.parse({})),
});

export type Site = z.output<typeof siteSchema>;
export type SiteInput = z.input<typeof siteSchema>;
export type OriginConfig = Site["origin"];

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
