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

export const siteSchema = z.strictObject({
  /** Schema version; absent means 1. */
  version: z.literal(1).default(1),
  /** Unique, random, never reused: part of every cache key of the site. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, "must be 8–64 characters of A–Z, a–z, 0–9, _ or -"),
  origin: z.discriminatedUnion("kind", [httpOrigin]),
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
