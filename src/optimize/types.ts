import type { MinifyKind } from "./minify-kind";

/**
 * What the optimizers take and give. The pipeline decides *whether* and *how* a response is transformed
 * (src/optimize/optimize.ts); an engine only turns bytes into bytes.
 */

/**
 * The optimizer's output version, part of every optimized variant's key. Bump it with any change that
 * changes what the optimizer writes (a codec, a setting, how the winner is chosen): every stored variant
 * then moves to a fresh key on deploy, as a settings change does, with nobody purging by hand.
 */
export const OPTIMIZER_VERSION = 1;

/** Image formats Tiercel reads. */
export type ImageFormat = "png" | "jpeg" | "webp" | "gif" | "avif";

/** Image formats an engine may be asked to write. */
export type OutputFormat = "png" | "jpeg" | "webp" | "avif";

/**
 * How a resized image fills the requested box (names as in Cloudflare's image service): `scale-down` fits
 * inside it keeping the aspect ratio; `cover` fills it, cropping the overflow around the centre. Neither
 * ever enlarges: upscaling adds bytes, not detail.
 */
export type Fit = "scale-down" | "cover";

export interface ImageJob {
  input: Uint8Array;
  /** The format the bytes are in (sniffed from the bytes, never trusted from Content-Type alone). */
  inputFormat: ImageFormat;
  output: OutputFormat;
  /** lossless: no visible change (pixels kept where the output format allows); lossy: `quality`. */
  mode: "lossless" | "lossy";
  /** 1–100, used when `mode` is lossy. */
  quality: number;
  /** Target box (either side may be absent); absent: the image keeps its dimensions. */
  resize?: { width?: number; height?: number; fit: Fit };
}

export interface ImageResult {
  bytes: Uint8Array;
  format: OutputFormat;
  width: number;
  height: number;
}

/** An engine that transforms images: the WASM codecs, or Cloudflare's image service when deployed. */
export interface ImageEngine {
  readonly name: string;
  /** Which output formats it can write. */
  readonly formats: readonly OutputFormat[];
  /** `site` names whose job it is, for engines that share their work fairly between sites. */
  transform(job: ImageJob, site?: string): Promise<ImageResult>;
}

export interface MinifyResult {
  bytes: Uint8Array;
  /** False when the input comes back as it was (minifying would not make it smaller). */
  changed: boolean;
}

/** Minifies HTML, CSS and JavaScript: src/optimize/minify.ts, run by the optimizer Worker. */
export interface Minifier {
  minify(kind: MinifyKind, source: Uint8Array, site?: string): Promise<MinifyResult>;
}

/** A transform that could not be done; `reason` is a stable token shown in Cache-Status. */
export class OptimizeError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "OptimizeError";
  }
}
