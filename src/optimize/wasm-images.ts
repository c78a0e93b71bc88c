import jpegDecWasm from "@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm";
import jpegEncWasm from "@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm";
import decodeJpeg, { init as initJpegDecode } from "@jsquash/jpeg/decode.js";
import encodeJpeg, { init as initJpegEncode } from "@jsquash/jpeg/encode.js";
import oxipngWasm from "@jsquash/oxipng/codec/pkg/squoosh_oxipng_bg.wasm";
import optimisePng, { init as initOxipng } from "@jsquash/oxipng/optimise.js";
import pngWasm from "@jsquash/png/codec/pkg/squoosh_png_bg.wasm";
import decodePng, { init as initPngDecode } from "@jsquash/png/decode.js";
import encodePng, { init as initPngEncode } from "@jsquash/png/encode.js";
import resizeImage, { initResize } from "@jsquash/resize";
import resizeWasm from "@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm";
import webpDecWasm from "@jsquash/webp/codec/dec/webp_dec.wasm";
import webpEncWasm from "@jsquash/webp/codec/enc/webp_enc_simd.wasm";
import decodeWebp, { init as initWebpDecode } from "@jsquash/webp/decode.js";
import encodeWebp, { init as initWebpEncode } from "@jsquash/webp/encode.js";
import {
  type ImageEngine,
  type ImageFormat,
  type ImageJob,
  type ImageResult,
  OptimizeError,
  type OutputFormat,
} from "./types";

/**
 * The default image engine: Squoosh's codecs compiled to WebAssembly (the jSquash packages), run in the
 * Worker itself, so it works the same under `wrangler dev` and on every Cloudflare plan. Decoders: PNG,
 * JPEG (MozJPEG), WebP; encoders: PNG (+ oxipng), JPEG (MozJPEG), WebP (libwebp, SIMD build). AVIF is not
 * built in: its encoder alone adds 1.1 MB compressed to the Worker and ~0.6 s of CPU per 2 MP image;
 * sites that want AVIF use the `cloudflare` engine.
 *
 * WebAssembly runs synchronously and a Worker's clock does not advance while it computes, so a transform
 * cannot be timed out from inside; its cost is bounded before it starts, by the caller's pixel limits.
 */

/** Decoded pixels: RGBA, 8 bits per channel, row by row (the shape of the DOM's `ImageData`). */
export interface ImageData {
  readonly data: Uint8ClampedArray;
  readonly width: number;
  readonly height: number;
}

/** The codecs construct `ImageData`, which workerd does not have: a minimal stand-in with the same shape. */
class PixelData implements ImageData {
  readonly data: Uint8ClampedArray;
  readonly width: number;
  readonly height: number;
  readonly colorSpace = "srgb";
  constructor(dataOrWidth: Uint8ClampedArray | number, widthOrHeight: number, height?: number) {
    if (typeof dataOrWidth === "number") {
      this.width = dataOrWidth;
      this.height = widthOrHeight;
      this.data = new Uint8ClampedArray(this.width * this.height * 4);
    } else {
      this.data = dataOrWidth;
      this.width = widthOrHeight;
      this.height = height ?? dataOrWidth.length / 4 / widthOrHeight;
    }
  }
}

/**
 * How each codec is instantiated, from the modules bundled with the Worker (no fetch). Instances are made
 * on first use, one codec at a time: the MozJPEG and libwebp builds each start with 16 MiB of memory, so
 * making all of them up front would take 67 MiB of a Worker's 128 MB before the first pixel.
 */
const INITS = {
  "png decode": () => initPngDecode(pngWasm),
  "png encode": () => initPngEncode(pngWasm),
  "jpeg decode": () => initJpegDecode(jpegDecWasm),
  "jpeg encode": () => initJpegEncode(jpegEncWasm),
  "webp decode": () => initWebpDecode(webpDecWasm),
  "webp encode": () => initWebpEncode(webpEncWasm),
  oxipng: () => initOxipng(oxipngWasm),
  resize: () => initResize(resizeWasm),
} satisfies Record<string, () => unknown>;

type Step = keyof typeof INITS;

const ready = new Map<Step, Promise<unknown>>();

function codecReady(step: Step): Promise<unknown> {
  let init = ready.get(step);
  if (!init) {
    const scope = globalThis as { ImageData?: unknown };
    scope.ImageData ??= PixelData;
    init = Promise.resolve(INITS[step]()).catch((error: unknown) => {
      ready.delete(step);
      throw error;
    });
    ready.set(step, init);
  }
  return init;
}

export const wasmImageEngine: ImageEngine = {
  name: "wasm",
  formats: ["png", "jpeg", "webp"],
  async transform(job: ImageJob): Promise<ImageResult> {
    if (!this.formats.includes(job.output)) {
      throw new OptimizeError("format-unsupported", `The wasm engine cannot write ${job.output}`);
    }
    // A PNG kept as PNG at its size needs no decoding at all: oxipng recompresses the file losslessly.
    if (job.inputFormat === "png" && job.output === "png" && !job.resize) {
      const bytes = new Uint8Array(await codec("oxipng", () => optimisePng(exact(job.input), { level: 2 })));
      const info = await codec("png decode", () => decodePng(exact(bytes)));
      return { bytes, format: "png", width: info.width, height: info.height };
    }
    let image = await decode(job);
    if (job.resize) image = await resize(image, job.resize);
    const bytes = await encode(image, job.output, job);
    return { bytes, format: job.output, width: image.width, height: image.height };
  },
};

async function decode(job: ImageJob): Promise<ImageData> {
  return decodePixels(job.input, job.inputFormat);
}

/** Decodes PNG, JPEG or WebP bytes to RGBA pixels (also what tests compare outputs with). */
export async function decodePixels(bytes: Uint8Array, format: ImageFormat): Promise<ImageData> {
  switch (format) {
    case "png":
      return codec("png decode", () => decodePng(exact(bytes)));
    case "jpeg":
      return codec("jpeg decode", () => decodeJpeg(exact(bytes)));
    case "webp":
      return codec("webp decode", () => decodeWebp(exact(bytes)));
    default:
      throw new OptimizeError("format-unsupported", `The wasm engine cannot read ${format}`);
  }
}

async function encode(image: ImageData, format: OutputFormat, job: ImageJob): Promise<Uint8Array> {
  const lossless = job.mode === "lossless";
  switch (format) {
    case "png": {
      const png = await codec("png encode", () => encodePng(image));
      return new Uint8Array(await codec("oxipng", () => optimisePng(png, { level: 2 })));
    }
    case "jpeg":
      // JPEG has no lossless mode in MozJPEG's encoder; the planner never asks for one.
      return new Uint8Array(await codec("jpeg encode", () => encodeJpeg(image, { quality: job.quality })));
    case "webp": {
      const options = lossless ? { lossless: 1, exact: 1, quality: 100, method: 4 } : { quality: job.quality };
      return new Uint8Array(await codec("webp encode", () => encodeWebp(image, options)));
    }
    default:
      throw new OptimizeError("format-unsupported", `The wasm engine cannot write ${format}`);
  }
}

/** Scales (and for `cover`, crops around the centre) to the job's box; never enlarges. */
async function resize(image: ImageData, box: NonNullable<ImageJob["resize"]>): Promise<ImageData> {
  const target = targetSize(image.width, image.height, box);
  if (target.width === image.width && target.height === image.height && !target.crop) return image;
  const source = target.crop ? crop(image, target.crop) : image;
  if (source.width === target.width && source.height === target.height) return source;
  return codec("resize", () =>
    resizeImage(source, { width: target.width, height: target.height, method: "lanczos3", fitMethod: "stretch" }),
  );
}

export interface TargetSize {
  width: number;
  height: number;
  /** For `cover`: the centred region of the source (same aspect ratio as the target) that is kept. */
  crop?: { x: number; y: number; width: number; height: number };
}

/** The output size for a box: exported for tests, since every engine must agree on it. */
export function targetSize(width: number, height: number, box: NonNullable<ImageJob["resize"]>): TargetSize {
  const boxWidth = box.width ?? Number.POSITIVE_INFINITY;
  const boxHeight = box.height ?? Number.POSITIVE_INFINITY;
  if (box.fit === "cover" && box.width !== undefined && box.height !== undefined) {
    // Fill the box; the scale is capped at 1, so a small image gets a smaller box of the same shape.
    const scale = Math.min(1, Math.max(boxWidth / width, boxHeight / height));
    const outWidth = Math.max(1, Math.min(Math.round(width * scale), boxWidth));
    const outHeight = Math.max(1, Math.min(Math.round(height * scale), boxHeight));
    const cropWidth = Math.min(width, Math.round(outWidth / scale));
    const cropHeight = Math.min(height, Math.round(outHeight / scale));
    const crop = {
      x: Math.floor((width - cropWidth) / 2),
      y: Math.floor((height - cropHeight) / 2),
      width: cropWidth,
      height: cropHeight,
    };
    const cropped = crop.width !== width || crop.height !== height;
    return cropped ? { width: outWidth, height: outHeight, crop } : { width: outWidth, height: outHeight };
  }
  const scale = Math.min(1, boxWidth / width, boxHeight / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

function crop(image: ImageData, region: NonNullable<TargetSize["crop"]>): ImageData {
  const out = new Uint8ClampedArray(region.width * region.height * 4);
  for (let row = 0; row < region.height; row += 1) {
    const start = ((region.y + row) * image.width + region.x) * 4;
    out.set(image.data.subarray(start, start + region.width * 4), row * region.width * 4);
  }
  return new PixelData(out, region.width, region.height);
}

/**
 * Runs one codec step, instantiating its codec first if need be; a codec's own exception (corrupt input,
 * out of memory) becomes an OptimizeError.
 */
async function codec<T>(step: Step, run: () => Promise<T>): Promise<T> {
  try {
    await codecReady(step);
    return await run();
  } catch (error) {
    if (error instanceof OptimizeError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new OptimizeError("engine-error", `${step} failed: ${message}`);
  }
}

/** The codecs take an ArrayBuffer: the view's own buffer when it spans it all, else a copy. */
function exact(bytes: Uint8Array): ArrayBuffer {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  return whole && bytes.buffer instanceof ArrayBuffer ? bytes.buffer : bytes.slice().buffer;
}
