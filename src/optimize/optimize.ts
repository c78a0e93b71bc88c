import { withDeadline } from "../core/deadline";
import type { OptimizeOptions } from "../sites/schema";
import { type MinifyKind, minifyKindOf } from "./minify-kind";
import { chooseFormat, formatField } from "./negotiate";
import type { TransformLimiter } from "./queue";
import type { ResizeRequest } from "./resize-url";
import { IMAGE_TYPES, type ImageInfo, pixelMeaning, sniffImage } from "./sniff";
import {
  type ImageEngine,
  type ImageJob,
  type ImageResult,
  type Minifier,
  OptimizeError,
  type OutputFormat,
} from "./types";

/**
 * Decides what happens to a response body before it is stored, and does it: image polish, format
 * conversion, resizing, minification. Runs once per variant, when the variant is filled; what is stored
 * is the result. Whatever goes wrong, the client gets the original bytes, and the answer says why.
 */

export interface OptimizeLimits {
  /** Larger images are served as they are (decoding them could exceed the Worker's memory). */
  maxImageBytes: number;
  /**
   * Images with more pixels are served as they are by the WASM engine. Measured in workerd at 2048×2048,
   * the WebP encoder's memory grew to 166 MB and oxipng's to 123 MB (a Worker has 128 MB); at 1 MP each
   * stays near a quarter of that. Cloudflare's engine, which runs outside the Worker, has no such limit.
   */
  maxImagePixels: number;
  /** Larger text assets are not minified (Terser takes seconds on large scripts). */
  maxTextBytes: number;
  /** How long one engine call may take: Cloudflare's, or the optimizer Worker's (the wasm codecs, the minifiers). */
  engineTimeoutMs: number;
}

export const DEFAULT_OPTIMIZE_LIMITS: OptimizeLimits = {
  maxImageBytes: 10 * 1024 * 1024,
  maxImagePixels: 1_048_576, // 1 MP: 1280 × 819, 1024 × 1024
  maxTextBytes: 1024 * 1024,
  engineTimeoutMs: 20_000,
};

/**
 * How many transforms may be in flight to the optimizer Worker from one isolate of the cache Worker: per site
 * 2 running and 6 waiting, per isolate 4 running and 4 waiting; past either bound a transform is refused
 * ("busy") and the original stands in for BUSY_RETRY_SECONDS.
 *
 * - Per site 8 in flight: one page load asks for all its variants at once (the demo's page: the page, its
 *   stylesheet and script, two images and a resized one — 6), and a site's first visitor should get them
 *   all transformed, not stand-ins. Waiting costs the waiter's buffered input (at most 1 MiB of text, or
 *   an image within the 10 MiB / 1 MP bounds), which its request holds anyway.
 * - Per site 2 running, of the isolate's 4: a site's burst never holds more than half of the isolate's
 *   places, so another site's transform finds one free at once however many of the first one's wait
 *   (they wait in their site's own queue, not the isolate's). In the optimizer Worker (src/optimizer-worker.ts)
 *   that is at most 2 calls per site from this isolate, which its own per-site bound admits.
 */
export const TRANSFORM_BOUNDS = {
  perSite: { concurrency: 2, maxWaiting: 6 },
  isolate: { concurrency: 4, maxWaiting: 4 },
} as const;

export interface Engines {
  /** The WASM codecs: in the optimizer Worker, reached through the OPTIMIZER binding (src/optimize/remote.ts). */
  wasm: ImageEngine;
  /** The minifiers, in the optimizer Worker too. */
  minifier: Minifier;
  /** Cloudflare's image service, when the Worker has an Images binding. */
  cloudflare?: ImageEngine;
}

export interface OptimizeContext {
  /** The site whose response this is: its transforms are bounded apart from other sites'. */
  site: string;
  options: OptimizeOptions;
  /** Bounds the optimizer Worker's transforms in flight, per site and per isolate. */
  limiter: TransformLimiter;
  /** The client's Accept header (for format negotiation). */
  accept: string | null;
  /** Present for a resize URL. */
  resize?: ResizeRequest;
  engines: Engines;
  limits: OptimizeLimits;
}

export interface Optimized {
  bytes: Uint8Array;
  contentType: string;
  /** A format pseudo-field the stored variant must vary on (its bytes depend on the client's Accept). */
  varyField?: string;
  /** The `Tiercel-Optimize` header: what was done (or why nothing was). Stored with the bytes. */
  note: string;
  /** Set when the original bytes are served instead of a transform: the Cache-Status detail. */
  detail?: string;
  /**
   * Set after a failure: the original is served, and stored for at most this many seconds, so the next
   * attempt comes that much later, never as the optimized variant.
   */
  retryAfter?: number;
}

/** How long the original stands in for a variant whose transform failed, before it is tried again. */
export const FAILURE_RETRY_SECONDS = 60;
/**
 * How long it stands in when the transform was not even tried because the site (or the isolate) already had
 * as many transforms in flight and waiting as it may ("busy"): the input is not at fault, so sooner.
 */
export const BUSY_RETRY_SECONDS = 10;

type Work = { kind: "image" } | { kind: "minify"; as: MinifyKind };

/** Whether a response of this type is to be transformed at all (and so its body buffered). */
export function workFor(ctx: OptimizeContext, contentType: string | null): Work | undefined {
  if (ctx.resize) return { kind: "image" };
  const kind = minifyKindOf(contentType);
  if (kind) return ctx.options.minify[kind] ? { kind: "minify", as: kind } : undefined;
  const imageOptions = ctx.options.polish !== "off" || ctx.options.formats.length > 0;
  return imageOptions && isImageType(contentType) ? { kind: "image" } : undefined;
}

/** The bound on the body that `work` may buffer. */
export function inputLimit(ctx: OptimizeContext, work: Work): number {
  return work.kind === "image" ? ctx.limits.maxImageBytes : ctx.limits.maxTextBytes;
}

/** A response the optimizer left alone because it was too large to buffer. */
export function tooLarge(): Pick<Optimized, "note" | "detail"> {
  return { note: original("too-large"), detail: "optimize-too-large" };
}

export async function optimize(
  ctx: OptimizeContext,
  work: Work,
  body: Uint8Array,
  contentType: string,
): Promise<Optimized> {
  const unchanged = (reason: string): Optimized => ({
    bytes: body,
    contentType,
    note: original(reason),
    detail: `optimize-${reason}`,
  });
  try {
    if (work.kind === "minify") {
      return await ctx.limiter.run(ctx.site, () => minifyBody(ctx, work.as, body, contentType));
    }
    // Cloudflare's engine is billed per call and does its work elsewhere: its calls are not limited here.
    if (engineFor(ctx) !== ctx.engines.wasm) return await optimizeImage(ctx, body, contentType);
    return await ctx.limiter.run(ctx.site, () => optimizeImage(ctx, body, contentType));
  } catch (error) {
    // An OptimizeError with a deterministic reason (unsupported input, not an image) describes the
    // variant: the original *is* its right answer and may be stored. Anything else is a failure.
    if (error instanceof OptimizeError && DETERMINISTIC.has(error.reason)) return unchanged(error.reason);
    // A failure (a codec error, the binding erroring, a timeout) may not happen next time: the original
    // stands in briefly, so a failing input costs one attempt a minute, not one per request.
    const reason = error instanceof OptimizeError ? error.reason : "engine-error";
    const retry = reason === "busy" ? BUSY_RETRY_SECONDS : FAILURE_RETRY_SECONDS;
    return {
      ...unchanged(reason),
      note: `${original(reason)}, retry=${retry}`,
      detail: "optimize-failed",
      retryAfter: retry,
    };
  }
}

/** Reasons that are a property of the input: the same input always gives them. */
const DETERMINISTIC = new Set([
  "not-an-image",
  "animated",
  "format-unsupported",
  "too-large",
  "minify-parse-error",
  "minify-not-utf8",
  "minify-too-large",
  "minify-unsafe",
  "minify-charset-unsafe",
  "lossless-unavailable",
  "orientation",
  "color-profile",
]);

async function minifyBody(
  ctx: OptimizeContext,
  kind: MinifyKind,
  body: Uint8Array,
  contentType: string,
): Promise<Optimized> {
  const result = await withDeadline(
    ctx.engines.minifier.minify(kind, body, ctx.site),
    ctx.limits.engineTimeoutMs,
    "minify",
  ).catch((error: unknown) => {
    if (error instanceof OptimizeError) throw error;
    throw new OptimizeError("optimizer-timeout", error instanceof Error ? error.message : String(error));
  });
  if (!result.changed || result.bytes.byteLength >= body.byteLength) {
    return { bytes: body, contentType, note: original("no-gain"), detail: "optimize-no-gain" };
  }
  return { bytes: result.bytes, contentType, note: `minified, original=${body.byteLength}` };
}

async function optimizeImage(ctx: OptimizeContext, body: Uint8Array, contentType: string): Promise<Optimized> {
  const info = sniffImage(body);
  if (!info) throw new OptimizeError("not-an-image", "The body is not an image Tiercel can read");
  if (info.animated) throw new OptimizeError("animated", "Animated images are served as they are");
  const engine = engineFor(ctx);
  const wasm = engine === ctx.engines.wasm;
  if (wasm) {
    if (info.width * info.height > ctx.limits.maxImagePixels) {
      throw new OptimizeError("too-large", `${info.width}×${info.height} is more than the pixel limit`);
    }
    // The WASM codecs drop EXIF and ICC data: a rotated phone photo would turn sideways, a Display P3
    // one would lose its colours. Those are served as they are (Cloudflare's engine handles both).
    const meaning = pixelMeaning(body, info.format);
    if (meaning.orientation !== 1) throw new OptimizeError("orientation", "EXIF orientation would be lost");
    if (meaning.foreignProfile) throw new OptimizeError("color-profile", "A non-sRGB colour profile would be lost");
  }
  const plan = planImage(ctx, info, engine);
  const keep = (reason: string, detail = `optimize-${reason}`): Optimized => {
    const result: Optimized = { bytes: body, contentType, note: original(reason), detail };
    if (plan.varyField) result.varyField = plan.varyField;
    return result;
  };
  if (!plan.job) return keep(plan.reason);

  // The planned job; with the WASM engine (whose extra attempts cost CPU, not a billed call) also:
  // - a PNG converted lossily to WebP, losslessly (a PNG is often a graphic, where lossless wins);
  // - a negotiated conversion, the source's own format polished: a browser that takes WebP gets WebP
  //   only where it is smaller (as Cloudflare's Polish does).
  // All are valid answers to the request; the smallest wins. An extra attempt that fails is dropped.
  const first: ImageJob = { ...plan.job, input: body, inputFormat: info.format };
  const extra: ImageJob[] = [];
  if (wasm && info.format === "png" && first.output === "webp" && first.mode === "lossy") {
    extra.push({ ...first, mode: "lossless" });
  }
  if (wasm && plan.converted) {
    const own = planImage({ ...ctx, accept: null }, info, engine).job;
    if (own) extra.push({ ...own, input: body, inputFormat: info.format });
  }
  let job = first;
  let transformed = await run(engine, first, ctx);
  for (const other of extra) {
    const result = await run(engine, other, ctx).catch(() => undefined);
    if (result && result.bytes.byteLength < transformed.bytes.byteLength) {
      transformed = result;
      job = other;
    }
  }
  const resized = transformed.width !== info.width || transformed.height !== info.height;
  // Not smaller and not resized: the original is the better answer (and is stored as this variant).
  if (!resized && transformed.bytes.byteLength >= body.byteLength) return keep("larger");
  const params = [
    `format=${transformed.format}`,
    `from=${info.format}`,
    job.mode === "lossy" && transformed.format !== "png" ? `quality=${job.quality}` : "lossless",
    resized ? `width=${transformed.width}, height=${transformed.height}` : "",
    `original=${body.byteLength}`,
    `engine=${engine.name}`,
  ];
  const result: Optimized = {
    bytes: transformed.bytes,
    contentType: IMAGE_TYPES[transformed.format],
    note: params.filter(Boolean).join(", "),
  };
  if (plan.varyField) result.varyField = plan.varyField;
  return result;
}

async function run(engine: ImageEngine, job: ImageJob, ctx: OptimizeContext): Promise<ImageResult> {
  try {
    return await withDeadline(engine.transform(job, ctx.site), ctx.limits.engineTimeoutMs, `${engine.name} transform`);
  } catch (error) {
    if (error instanceof OptimizeError) throw error;
    throw new OptimizeError("engine-error", error instanceof Error ? error.message : String(error));
  }
}

/** The engine a site's images go to: Cloudflare's when asked for and bound, else the WASM codecs. */
export function engineFor(ctx: Pick<OptimizeContext, "options" | "engines">): ImageEngine {
  return ctx.options.engine === "cloudflare" && ctx.engines.cloudflare ? ctx.engines.cloudflare : ctx.engines.wasm;
}

interface ImagePlan {
  job?: Omit<ImageJob, "input" | "inputFormat">;
  /** The job converts to a format negotiated from Accept (other clients get the source's own format). */
  converted?: boolean;
  varyField?: string;
  /** Why there is no job. */
  reason: string;
}

/**
 * Output format and mode for one image:
 * - the format: an explicit resize `format`, else the best of the site's formats the client accepts
 *   (and the engine writes), else the source's own format (or PNG for a GIF/AVIF source being resized);
 * - the mode: polish `lossless` keeps every pixel; `lossy` (and any resize) encodes at `quality`; with
 *   polish off, a conversion is lossy for JPEG sources (already lossy) and lossless otherwise.
 */
function planImage(ctx: OptimizeContext, info: ImageInfo, engine: ImageEngine): ImagePlan {
  const { options, resize } = ctx;
  const offered = options.formats.filter((format) => engine.formats.includes(format));
  const negotiable = (resize === undefined || resize.format === "auto") && offered.length > 0;
  const varyField = negotiable ? formatField(offered) : undefined;
  const chosen = negotiable ? chooseFormat(offered, ctx.accept) : undefined;
  const same = info.format === "gif" || info.format === "avif" ? undefined : info.format;

  let output: OutputFormat | undefined;
  if (resize && resize.format !== "auto") output = resize.format;
  else output = chosen ?? same;
  if (output === undefined) {
    // A GIF or AVIF source with nothing to convert it to that the engine can write.
    if (!resize) return withVary({ reason: "format-unsupported" }, varyField);
    output = "png";
  }
  if (!engine.formats.includes(output)) {
    throw new OptimizeError("format-unsupported", `The ${engine.name} engine cannot write ${output}`);
  }

  const lossless =
    options.polish === "lossless" ||
    output === "png" ||
    (resize === undefined && options.polish === "off" && info.format !== "jpeg");
  const job: ImagePlan["job"] = {
    output,
    mode: lossless ? "lossless" : "lossy",
    quality: resize?.quality ?? options.quality,
  };
  const converted = chosen !== undefined && output === chosen && chosen !== info.format;
  if (resize) {
    job.resize = { fit: resize.fit };
    if (resize.width !== undefined) job.resize.width = resize.width;
    if (resize.height !== undefined) job.resize.height = resize.height;
    return withVary({ job, converted, reason: "" }, varyField);
  }
  if (output === info.format) {
    // Same format at the same size: only worth it where a real recompression exists.
    if (options.polish === "off") return withVary({ reason: "no-gain" }, varyField);
    if (info.format === "jpeg" && lossless) return withVary({ reason: "lossless-jpeg" }, varyField);
    if (info.format === "webp") return withVary({ reason: "already-webp" }, varyField);
  }
  return withVary({ job, converted, reason: "" }, varyField);
}

function withVary(plan: ImagePlan, varyField: string | undefined): ImagePlan {
  if (varyField) plan.varyField = varyField;
  return plan;
}

function original(reason: string): string {
  return `original, reason=${reason}`;
}

function isImageType(contentType: string | null): boolean {
  const type = contentType?.split(";")[0]?.trim().toLowerCase() ?? "";
  return Object.values(IMAGE_TYPES).includes(type) || type === "image/jpg" || type === "image/pjpeg";
}
