import type { OutputFormat } from "./types";

/**
 * Content negotiation for image formats, kept out of the raw `Accept` string: a response converted for
 * some clients varies on a *pseudo-field* `:format=<offered>` (a name no real header can have), whose
 * value for a request is the format that request gets. So every browser that accepts WebP shares one
 * variant, whatever its exact Accept line, and the key never holds the raw header (RFC 9111 §4.1 allows
 * normalizing selecting values "known to have identical semantics").
 */
const FIELD_PREFIX = ":format=";

/** Formats in order of preference (smallest first) among those a site may offer. */
const PREFERENCE: readonly OutputFormat[] = ["avif", "webp"];

/** The selecting pseudo-field for a response offered in `formats` (stable whatever their order). */
export function formatField(formats: readonly OutputFormat[]): string {
  return FIELD_PREFIX + PREFERENCE.filter((format) => formats.includes(format)).join(",");
}

export function isFormatField(field: string): boolean {
  return field.startsWith(FIELD_PREFIX);
}

/** The normalized value of a format pseudo-field for a request: the format it gets, or "original". */
export function formatFieldValue(field: string, accept: string | null): string {
  const offered = field.slice(FIELD_PREFIX.length).split(",") as OutputFormat[];
  return chooseFormat(offered, accept) ?? "original";
}

/**
 * The best offered format the client lists in Accept with a non-zero quality. Only an explicit
 * `image/webp` or `image/avif` counts: `*\/*` and `image/*` are sent by clients that cannot decode
 * either (older Safari, for one), which is also how Cloudflare's Polish decides.
 */
export function chooseFormat(offered: readonly OutputFormat[], accept: string | null): OutputFormat | undefined {
  if (!accept) return undefined;
  const listed = new Set<string>();
  for (const member of accept.toLowerCase().split(",")) {
    const [type = "", ...params] = member.split(";").map((part) => part.trim());
    const q = params.find((param) => param.startsWith("q="));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    listed.add(type);
  }
  return PREFERENCE.find((format) => offered.includes(format) && listed.has(`image/${format}`));
}
