import { TiercelError } from "../core/errors";
import type { OptimizeOptions } from "../sites/schema";
import { type Fit, OPTIMIZER_VERSION, type OutputFormat } from "./types";

/**
 * The resize URL form: `/_tiercel/image/<options>/<path to the image>`, e.g.
 * `/_tiercel/image/width=640,format=auto/photos/cat.jpg`. Options are comma-separated `name=value`:
 * `width` (`w`), `height` (`h`), `fit` (`scale-down` | `cover`), `quality` (`q`), `format` (`f`: `auto` |
 * `webp` | `avif` | `jpeg` | `png`). The prefix lives under Tiercel's reserved `/_tiercel/`, so it can
 * never shadow a site's own paths (Cloudflare's `/cdn-cgi/image/` is taken by Cloudflare itself).
 *
 * Sizes and qualities must be on the site's allow-lists: anything else is refused (400) before the
 * origin is asked, so random sizes neither fill the cache with variants nor burn CPU.
 */
export const IMAGE_PREFIX = "/_tiercel/image/";

/** `resize: true` allows these widths (common responsive breakpoints) and no heights. */
export const DEFAULT_WIDTHS = [160, 320, 480, 640, 768, 1024, 1280, 1600, 1920];

export interface ResizeRequest {
  width?: number;
  height?: number;
  fit: Fit;
  quality: number;
  /** `auto`: negotiated from Accept among the site's formats, else the source's own. */
  format: OutputFormat | "auto";
  /** The options in canonical form: part of the cache key. */
  canonical: string;
}

const NAMES: Record<string, "width" | "height" | "fit" | "quality" | "format"> = {
  width: "width",
  w: "width",
  height: "height",
  h: "height",
  fit: "fit",
  quality: "quality",
  q: "quality",
  format: "format",
  f: "format",
};
const FITS: readonly Fit[] = ["scale-down", "cover"];
const FORMATS: readonly (OutputFormat | "auto")[] = ["auto", "webp", "avif", "jpeg", "png"];

export function isResizeUrl(url: URL): boolean {
  return url.pathname.startsWith(IMAGE_PREFIX);
}

/**
 * Splits a resize URL into its options and the source image's URL (same origin and query). Throws a 4xx
 * TiercelError for a site without resizing, malformed options, or sizes and qualities not allowed.
 */
export function parseResizeUrl(url: URL, options: OptimizeOptions): { request: ResizeRequest; source: URL } {
  if (options.resize === false) {
    throw new TiercelError("resize_not_enabled", 404, "Image resizing is not enabled for this site");
  }
  const rest = url.pathname.slice(IMAGE_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash <= 0) {
    throw bad("expected /_tiercel/image/<options>/<path>, e.g. /_tiercel/image/width=640/photo.jpg");
  }
  const values: Partial<Record<"width" | "height" | "fit" | "quality" | "format", string>> = {};
  for (const pair of rest.slice(0, slash).split(",")) {
    const [rawName = "", value, extra] = pair.split("=");
    const name = NAMES[rawName.toLowerCase()];
    if (!name || value === undefined || value === "" || extra !== undefined) throw bad(`unknown option "${pair}"`);
    if (values[name] !== undefined) throw bad(`${name} is given twice`);
    values[name] = value.toLowerCase();
  }

  const rules = options.resize === true ? { widths: DEFAULT_WIDTHS, heights: [], qualities: [] } : options.resize;
  const width = dimension("width", values.width, rules.widths);
  const height = dimension("height", values.height, rules.heights);
  if (width === undefined && height === undefined) throw bad("give a width or a height");
  const fit = (values.fit ?? "scale-down") as Fit;
  if (!FITS.includes(fit)) throw bad(`fit must be one of ${FITS.join(", ")}`);
  if (fit === "cover" && (width === undefined || height === undefined))
    throw bad("fit=cover needs a width and a height");
  const format = (values.format ?? "auto") as OutputFormat | "auto";
  if (!FORMATS.includes(format)) throw bad(`format must be one of ${FORMATS.join(", ")}`);
  let quality = options.quality;
  if (values.quality !== undefined) {
    quality = integer("quality", values.quality);
    if (!rules.qualities.includes(quality)) throw notAllowed("quality", quality, rules.qualities);
  }

  const canonical = [
    width !== undefined ? `w=${width}` : "",
    height !== undefined ? `h=${height}` : "",
    `fit=${fit}`,
    `q=${quality}`,
    `f=${format}`,
    `engine=${options.engine}`,
    `v=${OPTIMIZER_VERSION}`,
  ]
    .filter(Boolean)
    .join(",");
  const source = new URL(url);
  source.pathname = rest.slice(slash);
  const request: ResizeRequest = { fit, quality, format, canonical };
  if (width !== undefined) request.width = width;
  if (height !== undefined) request.height = height;
  return { request, source };
}

function dimension(name: string, value: string | undefined, allowed: readonly number[]): number | undefined {
  if (value === undefined) return undefined;
  const number = integer(name, value);
  if (!allowed.includes(number)) throw notAllowed(name, number, allowed);
  return number;
}

function integer(name: string, value: string): number {
  if (!/^[0-9]{1,5}$/.test(value)) throw bad(`${name} must be a whole number`);
  return Number(value);
}

function bad(message: string): TiercelError {
  return new TiercelError("bad_resize_options", 400, `Bad resize URL: ${message}`);
}

function notAllowed(name: string, value: number, allowed: readonly number[]): TiercelError {
  const list = allowed.length > 0 ? `one of ${allowed.join(", ")}` : "not set by this site";
  return new TiercelError("resize_not_allowed", 400, `${name}=${value} is not allowed here: ${name} must be ${list}`);
}
