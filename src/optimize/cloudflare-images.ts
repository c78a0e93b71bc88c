/**
 * The image engine backed by Cloudflare's own image service, through the Workers Images binding
 * (`"images": { "binding": "IMAGES" }` in wrangler.jsonc). Off by default: the WASM codecs are the default
 * engine; this one is the optional hand-off when deployed.
 *
 * What the binding does, and what this engine adds on top of it:
 * - **Billing.** Every call to the binding counts as one unique transformation (Images Free: 5,000 a month,
 *   then new transformations fail with 9422/9423; Images Paid: $0.50 per 1,000). So the engine makes exactly
 *   one call per transform: it reads dimensions from the image headers itself instead of calling `.info()`,
 *   refuses jobs it can already tell will fail, and skips resizing that would not change anything.
 * - **Never enlarges.** Our `Fit` maps to the binding's never-enlarging modes: "scale-down" → `scale-down`,
 *   "cover" → `crop` with the box clamped to the image (so it can only shrink, then crop around the centre).
 *   Boxes the image already fits are not sent at all. The output's dimensions are checked afterwards.
 * - **Formats.** The output format is sniffed from the bytes, never taken from the binding's content type.
 *   Cloudflare falls back from AVIF to WebP when it cannot encode AVIF (e.g. past 1,200 px); the result then
 *   says `format: "webp"`, and callers must label the bytes with `result.format`, not the requested format.
 * - **Lossy:** `quality` goes to the encoder (JPEG, WebP, AVIF; for PNG it allows the 8-bit palette variant).
 *   **Lossless:** PNG without a quality (full-colour PNG), WebP at quality 100 (Cloudflare's documented
 *   switch to lossless WebP; the output must be a VP8L bitstream or the transform fails), JPEG and AVIF at
 *   quality 100: no visible change, but not pixel-exact (those formats have no lossless mode here).
 * - **Metadata** is stripped: Cloudflare drops it from WebP and PNG output and keeps only the copyright tag
 *   in JPEG; the engine then removes EXIF/XMP/IPTC/comment segments from JPEG output and text/EXIF/time
 *   chunks from PNG output. Colour profiles (JPEG APP2, PNG iCCP) are kept.
 *
 * Locally (`wrangler dev`, the Vitest pool) the binding is a low-fidelity stand-in: Sharp in Node, honouring
 * only width, height, rotate and format. It ignores `fit` (always Sharp's letterboxing "contain", which also
 * enlarges), ignores `quality` (so lossless WebP fails there with `lossless-unavailable`), and answers an
 * unreadable input with an empty body. The checks above turn those into errors rather than wrong variants.
 *
 * Reasons (`OptimizeError.reason`): `format-unsupported` (service codes 9412/9520), `too-large` (input over
 * the binding's 20 MB), `engine-quota` (9422/9423), `engine-error` (any other failure of the call),
 * `engine-bad-output` (bytes that are not a PNG/JPEG/WebP/AVIF image), `engine-bad-dimensions` (larger than
 * the box or the source), `lossless-unavailable`, `invalid-job`.
 */
import { BodyTooLargeError, readAll, streamOf } from "../core/streams";
import { sniffImage } from "./sniff";
import {
  type Fit,
  type ImageEngine,
  type ImageFormat,
  type ImageJob,
  type ImageResult,
  OptimizeError,
  type OutputFormat,
} from "./types";

/**
 * What the engine uses of the binding (`env.IMAGES`, typed `ImagesBinding` by `wrangler types`): `.input()`
 * only. `.info()` is never called, since each call is billed as a transformation.
 */
export type ImagesInput = Pick<ImagesBinding, "input">;

/** The binding accepts inputs up to 20 MB (https://developers.cloudflare.com/images/optimization/binding/). */
export const MAX_INPUT_BYTES = 20 * 1024 * 1024;
/** Output bytes read back at most; a bigger result is an error, not a variant. */
export const MAX_OUTPUT_BYTES = 32 * 1024 * 1024;

const MIME: Record<OutputFormat, ImageOutputOptions["format"]> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
  avif: "image/avif",
};

const OUTPUT_FORMATS: readonly OutputFormat[] = ["png", "jpeg", "webp", "avif"];

export function cloudflareImagesEngine(images: ImagesInput): ImageEngine {
  return {
    name: "cloudflare",
    formats: OUTPUT_FORMATS,
    transform: (job) => transform(images, job),
  };
}

async function transform(images: ImagesInput, job: ImageJob): Promise<ImageResult> {
  checkJob(job);
  const source = sniffImage(job.input);
  const ops = resizeOps(job.resize, source);
  const output = outputOptions(job);

  let bytes: Uint8Array;
  try {
    let chain = images.input(streamOf(job.input));
    for (const op of ops) chain = chain.transform(op);
    const result = await chain.output(output);
    bytes = await readAll(result.image(), MAX_OUTPUT_BYTES);
  } catch (error) {
    throw engineError(error);
  }

  const header = sniffImage(bytes);
  if (!header) {
    // Locally an unreadable input comes back as an empty 200 rather than an error.
    throw new OptimizeError("engine-bad-output", `the image service returned ${bytes.byteLength} unreadable bytes`);
  }
  const format = header.format;
  if (!isOutputFormat(format)) {
    throw new OptimizeError("engine-bad-output", `the image service returned ${format}, not ${job.output}`);
  }
  if (job.mode === "lossless" && format === "webp" && !isLosslessWebp(bytes)) {
    throw new OptimizeError("lossless-unavailable", "the image service encoded lossy WebP for a lossless job");
  }
  checkDimensions(job, source, header);

  const stripped = stripMetadata(format, bytes);
  if (!stripped) throw new OptimizeError("engine-bad-output", `the image service returned a malformed ${format}`);
  return { bytes: stripped, format, width: header.width, height: header.height };
}

function checkJob(job: ImageJob): void {
  if (!OUTPUT_FORMATS.includes(job.output)) throw new OptimizeError("invalid-job", `cannot write ${job.output}`);
  if (job.mode === "lossy" && !(Number.isInteger(job.quality) && job.quality >= 1 && job.quality <= 100)) {
    throw new OptimizeError("invalid-job", `quality ${job.quality} is not an integer from 1 to 100`);
  }
  for (const side of ["width", "height"] as const) {
    const value = job.resize?.[side];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
      throw new OptimizeError("invalid-job", `${side} ${value} is not a positive integer`);
    }
  }
  if (job.input.byteLength === 0) throw new OptimizeError("invalid-job", "empty input");
  if (job.input.byteLength > MAX_INPUT_BYTES) {
    throw new OptimizeError("too-large", `input of ${job.input.byteLength} bytes exceeds ${MAX_INPUT_BYTES}`);
  }
}

/**
 * The binding's transforms for a resize box, never enlarging. With the source's dimensions known, a box the
 * image already fits is dropped, a proportional shrink sends only the limiting side (the same result from
 * Cloudflare and from the local Sharp stand-in), and "cover" with both sides clamps the box to the image so
 * that `crop` shrinks (or not) and crops around the centre but never scales up; a one-sided "cover" is a
 * proportional shrink. Unknown dimensions: the box goes as is, with the binding's never-enlarging fit.
 */
export function resizeOps(resize: ImageJob["resize"], source: Dimensions | null): ImageTransform[] {
  if (!resize || (resize.width === undefined && resize.height === undefined)) return [];
  const { width, height, fit } = resize;
  const bothSides = width !== undefined && height !== undefined;
  if (!source) {
    return [{ ...(width ? { width } : {}), ...(height ? { height } : {}), fit: bindingFit(fit, bothSides) }];
  }
  if (fit === "cover" && bothSides) {
    const w = Math.min(width, source.width);
    const h = Math.min(height, source.height);
    if (w === source.width && h === source.height) return [];
    return [{ width: w, height: h, fit: "crop" }];
  }
  // scale-down, or cover with a single side.
  const scaleW = width === undefined ? Number.POSITIVE_INFINITY : width / source.width;
  const scaleH = height === undefined ? Number.POSITIVE_INFINITY : height / source.height;
  if (Math.min(scaleW, scaleH) >= 1) return [];
  return scaleW <= scaleH ? [{ width, fit: "scale-down" }] : [{ height, fit: "scale-down" }];
}

function bindingFit(fit: Fit, bothSides: boolean): NonNullable<ImageTransform["fit"]> {
  return fit === "cover" && bothSides ? "crop" : "scale-down";
}

function outputOptions(job: ImageJob): ImageOutputOptions {
  const format = MIME[job.output];
  if (job.mode === "lossy") return { format, quality: job.quality };
  // Lossless: PNG with no quality stays full-colour; quality 100 is lossless WebP, and the closest JPEG/AVIF.
  return job.output === "png" ? { format } : { format, quality: 100 };
}

/** The output must fit the box and never be larger than the source in either dimension. */
function checkDimensions(job: ImageJob, source: Dimensions | null, out: Dimensions): void {
  const box = job.resize;
  const tooWide = (box?.width !== undefined && out.width > box.width) || (source !== null && out.width > source.width);
  const tooTall =
    (box?.height !== undefined && out.height > box.height) || (source !== null && out.height > source.height);
  if (tooWide || tooTall) {
    const from = source ? `${source.width}x${source.height}` : "unknown size";
    const to = box ? `${box.width ?? "-"}x${box.height ?? "-"} ${box.fit}` : "no resize";
    throw new OptimizeError("engine-bad-dimensions", `${from} (${to}) came back ${out.width}x${out.height}`);
  }
}

interface ImagesErrorShape {
  code?: unknown;
  message?: unknown;
}

/** Binding error codes (https://developers.cloudflare.com/images/reference/errors/) as stable reasons. */
function engineError(error: unknown): OptimizeError {
  if (error instanceof OptimizeError) return error;
  if (error instanceof BodyTooLargeError) return new OptimizeError("engine-bad-output", error.message);
  const { code, message } = (typeof error === "object" && error !== null ? error : {}) as ImagesErrorShape;
  const text = `${typeof message === "string" ? message.split("\n")[0] : String(error)}`;
  switch (code) {
    case 9422: // free unique transformations exhausted
    case 9423: // free transformation rejected
      return new OptimizeError("engine-quota", text);
    case 9412: // not an image, or a format the service does not read (HEIC, TIFF, AVIF off Enterprise)
    case 9520: // unsupported format (locally also: GIF/raw output)
      return new OptimizeError("format-unsupported", text);
    default:
      return new OptimizeError("engine-error", text);
  }
}

function isOutputFormat(format: ImageFormat): format is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(format);
}

// --- Container helpers -------------------------------------------------------------------------------------

export interface Dimensions {
  width: number;
  height: number;
}

const ascii = (bytes: Uint8Array, at: number, length: number) =>
  String.fromCharCode(...bytes.subarray(at, at + length));
const u16be = (b: Uint8Array, at: number) => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
const u16le = (b: Uint8Array, at: number) => (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8);
const u32be = (b: Uint8Array, at: number) => ((u16be(b, at) << 16) >>> 0) + u16be(b, at + 2);
const u32le = (b: Uint8Array, at: number) => (u16le(b, at) + u16le(b, at + 2) * 0x10000) >>> 0;

/** Whether a WebP holds a lossless (VP8L) bitstream: the first chunk, or the image chunk of an extended file. */
export function isLosslessWebp(bytes: Uint8Array): boolean {
  for (let at = 12; at + 8 <= bytes.length; ) {
    const type = ascii(bytes, at, 4);
    if (type === "VP8L") return true;
    if (type === "VP8 ") return false;
    at += 8 + u32le(bytes, at + 4) + (u32le(bytes, at + 4) & 1);
  }
  return false;
}

/**
 * Walks a JPEG's marker segments up to the start of scan, calling `visit(marker, segmentStart, segmentEnd)`
 * for each one with a length (segmentStart is the 0xFF of the marker). Stops when `visit` returns false.
 * Returns the offset of the SOS marker, or null if the bytes are not a well-formed JPEG up to there.
 */
function walkJpeg(bytes: Uint8Array, visit: (marker: number, start: number, end: number) => boolean): number | null {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1] ?? 0;
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // standalone markers
      continue;
    }
    if (marker === 0xd9) return null; // end of image before any scan
    const end = at + 2 + u16be(bytes, at + 2);
    if (end > bytes.length || end < at + 4) return null;
    if (marker === 0xda) return at;
    if (!visit(marker, at, end)) return at;
    at = end;
  }
  return null;
}

// --- Metadata --------------------------------------------------------------------------------------------

/** JPEG segments dropped from the output: APP1 (EXIF, XMP), APP13 (IPTC/Photoshop), COM. */
const JPEG_METADATA = new Set([0xe1, 0xed, 0xfe]);
/** PNG chunks dropped from the output: text, EXIF and modification time. */
const PNG_METADATA = new Set(["tEXt", "zTXt", "iTXt", "eXIf", "tIME"]);
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Removes invisible metadata from an encoded image, leaving pixels and colour profiles alone. Returns the
 * same bytes when there is nothing to remove, and null when the container is malformed. WebP and AVIF pass
 * through: Cloudflare writes no metadata into WebP, and neither the service nor the local stand-in adds any
 * to AVIF.
 */
export function stripMetadata(format: OutputFormat, bytes: Uint8Array): Uint8Array | null {
  if (format === "jpeg") return stripJpeg(bytes);
  if (format === "png") return stripPng(bytes);
  return bytes;
}

function stripJpeg(bytes: Uint8Array): Uint8Array | null {
  const keep: Array<[number, number]> = [];
  let from = 0;
  const scan = walkJpeg(bytes, (marker, start, end) => {
    if (JPEG_METADATA.has(marker)) {
      keep.push([from, start]);
      from = end;
    }
    return true;
  });
  if (scan === null) return null;
  if (keep.length === 0) return bytes;
  keep.push([from, bytes.length]);
  return join(bytes, keep);
}

function stripPng(bytes: Uint8Array): Uint8Array | null {
  if (!PNG_SIGNATURE.every((value, i) => bytes[i] === value)) return null;
  const keep: Array<[number, number]> = [];
  let from = 0;
  for (let at = 8; ; ) {
    if (at + 12 > bytes.length) return null; // no IEND
    const end = at + 12 + u32be(bytes, at);
    if (end > bytes.length) return null;
    const type = ascii(bytes, at + 4, 4);
    if (PNG_METADATA.has(type)) {
      keep.push([from, at]);
      from = end;
    }
    if (type === "IEND") break;
    at = end;
  }
  if (keep.length === 0) return bytes;
  keep.push([from, bytes.length]);
  return join(bytes, keep);
}

function join(bytes: Uint8Array, ranges: Array<[number, number]>): Uint8Array {
  const out = new Uint8Array(ranges.reduce((n, [a, b]) => n + (b - a), 0));
  let at = 0;
  for (const [a, b] of ranges) {
    out.set(bytes.subarray(a, b), at);
    at += b - a;
  }
  return out;
}
