import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  cloudflareImagesEngine,
  type ImagesInput,
  isLosslessWebp,
  resizeOps,
  stripMetadata,
} from "../../src/optimize/cloudflare-images";
import { sniffImage } from "../../src/optimize/sniff";
import { type ImageJob, OptimizeError } from "../../src/optimize/types";
import { fixture } from "../support/harness";

/**
 * The Images binding here is Miniflare's offline stand-in (Sharp in Node, see vitest.config.ts): real
 * encoders, but only width/height/rotate/format are honoured. Assertions about dimensions and formats hold
 * for Cloudflare's service too; the ones marked "local" pin down the stand-in's gaps.
 */
const IMAGES = (env as unknown as { IMAGES: ImagesBinding }).IMAGES;
const engine = cloudflareImagesEngine(IMAGES);

/** demo/assets/tiercel.png: a 320x200 RGB PNG of 113,131 bytes (served by the loopback origin). */
let demoPng: Uint8Array;
beforeAll(async () => {
  demoPng = await fixture("demo/tiercel.png");
});

const ascii = (bytes: Uint8Array, at: number, length: number) =>
  String.fromCharCode(...bytes.subarray(at, at + length));
const contains = (bytes: Uint8Array, text: string) => new TextDecoder("latin1").decode(bytes).includes(text);

function job(overrides: Partial<ImageJob>): ImageJob {
  return { input: demoPng, inputFormat: "png", output: "webp", mode: "lossy", quality: 75, ...overrides };
}

async function failure(promise: Promise<unknown>): Promise<OptimizeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OptimizeError);
  return error as OptimizeError;
}

async function info(bytes: Uint8Array) {
  return IMAGES.info(new Blob([bytes.slice()]).stream());
}

// --- A small PNG encoder, so tests can make images of any shape --------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function deflate(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes.slice()]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** An RGB PNG with a smooth pattern, optionally carrying a tEXt chunk. */
async function makePng(width: number, height: number, text?: string): Promise<Uint8Array> {
  const raw = new Uint8Array((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / width;
      raw[row + 2 + x * 3] = (y * 255) / height;
      raw[row + 3 + x * 3] = ((x + y) * 7) & 0xff;
    }
  }
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    ...(text ? [chunk("tEXt", new TextEncoder().encode(`Comment\0${text}`))] : []),
    chunk("IDAT", await deflate(raw)),
    chunk("IEND", new Uint8Array()),
  ];
  return new Uint8Array(await new Blob(parts).arrayBuffer());
}

// --- The engine through the binding -------------------------------------------------------------------------

describe("cloudflareImagesEngine", () => {
  it("turns the demo PNG into a smaller WebP of the requested width", async () => {
    const result = await engine.transform(job({ resize: { width: 160, fit: "scale-down" } }));

    expect(ascii(result.bytes, 0, 4)).toBe("RIFF");
    expect(ascii(result.bytes, 8, 4)).toBe("WEBP");
    expect(result).toMatchObject({ format: "webp", width: 160, height: 100 });
    expect(await info(result.bytes)).toMatchObject({ format: "image/webp", width: 160, height: 100 });
    expect(result.bytes.byteLength).toBeLessThan(demoPng.byteLength / 10);
  });

  it("converts without resizing when no box is given", async () => {
    const result = await engine.transform(job({}));
    expect(result).toMatchObject({ format: "webp", width: 320, height: 200 });
    expect(result.bytes.byteLength).toBeLessThan(demoPng.byteLength);
  });

  it("never enlarges: a box the image already fits is not sent", async () => {
    // (The local stand-in would scale 320x200 up to 640x400 if asked.)
    for (const fit of ["scale-down", "cover"] as const) {
      const result = await engine.transform(job({ resize: { width: 640, height: 640, fit } }));
      expect([fit, result.width, result.height]).toEqual([fit, 320, 200]);
    }
  });

  it("scale-down shrinks proportionally to the limiting side", async () => {
    const byWidth = await engine.transform(job({ resize: { width: 100, height: 100, fit: "scale-down" } }));
    expect(byWidth.width).toBe(100);
    expect([62, 63]).toContain(byWidth.height);

    const byHeight = await engine.transform(job({ resize: { width: 300, height: 50, fit: "scale-down" } }));
    expect(byHeight).toMatchObject({ width: 80, height: 50 });
  });

  it("cover fills the box (clamped to the image) without enlarging", async () => {
    const square = await engine.transform(job({ output: "png", resize: { width: 160, height: 160, fit: "cover" } }));
    expect(square).toMatchObject({ format: "png", width: 160, height: 160 });

    // 1000x100 cannot be covered without enlarging 320x200: it is cropped to 320x100 instead.
    const strip = await engine.transform(job({ output: "png", resize: { width: 1000, height: 100, fit: "cover" } }));
    expect(strip).toMatchObject({ width: 320, height: 100 });
  });

  it("writes JPEG and AVIF, reporting dimensions read from their headers", async () => {
    const jpeg = await engine.transform(
      job({ output: "jpeg", quality: 60, resize: { width: 200, fit: "scale-down" } }),
    );
    expect([jpeg.bytes[0], jpeg.bytes[1]]).toEqual([0xff, 0xd8]);
    expect(jpeg).toMatchObject({ format: "jpeg", width: 200, height: 125 });
    expect(await info(jpeg.bytes)).toMatchObject({ width: 200, height: 125 });

    const avif = await engine.transform(
      job({ output: "avif", quality: 50, resize: { width: 100, fit: "scale-down" } }),
    );
    expect(ascii(avif.bytes, 4, 8)).toBe("ftypavif");
    expect(avif).toMatchObject({ format: "avif", width: 100, height: 63 });
  });

  it("keeps a lossless PNG a PNG, of the same dimensions, without its text chunks", async () => {
    const input = await makePng(64, 48, "secret location");
    const result = await engine.transform(job({ input, output: "png", mode: "lossless" }));
    expect(result).toMatchObject({ format: "png", width: 64, height: 48 });
    expect(contains(result.bytes, "secret location")).toBe(false);
  });

  it("refuses lossy WebP for a lossless job (local: the stand-in ignores quality 100)", async () => {
    const error = await failure(engine.transform(job({ mode: "lossless" })));
    expect(error.reason).toBe("lossless-unavailable");
  });

  it("reports an unreadable input as engine-bad-output (local: an empty body, not an error)", async () => {
    const bogus = new TextEncoder().encode("<html>not an image</html>");
    const error = await failure(engine.transform(job({ input: bogus })));
    expect(error.reason).toBe("engine-bad-output");
  });

  it("rejects invalid jobs before calling the binding", async () => {
    for (const bad of [
      job({ quality: 0 }),
      job({ quality: 101 }),
      job({ quality: 7.5 }),
      job({ resize: { width: 0, fit: "scale-down" } }),
      job({ resize: { height: -3, fit: "scale-down" } }),
      job({ input: new Uint8Array() }),
    ]) {
      expect((await failure(engine.transform(bad))).reason).toBe("invalid-job");
    }
    const huge = job({ input: new Uint8Array(20 * 1024 * 1024 + 1) });
    expect((await failure(engine.transform(huge))).reason).toBe("too-large");
  });
});

// --- The binding's errors and fallbacks, through a stand-in -------------------------------------------------

/** A binding whose output() resolves with `bytes` or rejects with `error`, recording what it was asked. */
function fakeBinding(outcome: { bytes?: Uint8Array; error?: unknown }) {
  const calls: { transforms: ImageTransform[]; output?: ImageOutputOptions }[] = [];
  const binding = {
    input() {
      const call: (typeof calls)[number] = { transforms: [] };
      calls.push(call);
      const transformer = {
        transform(t: ImageTransform) {
          call.transforms.push(t);
          return transformer;
        },
        async output(options: ImageOutputOptions) {
          call.output = options;
          if (outcome.error) throw outcome.error;
          return { image: () => new Blob([(outcome.bytes ?? new Uint8Array()).slice()]).stream() };
        },
      };
      return transformer;
    },
  };
  return { binding: binding as unknown as ImagesInput, calls };
}

describe("cloudflareImagesEngine with a stand-in binding", () => {
  it("maps the service's error codes to stable reasons", async () => {
    const cases: [number, string][] = [
      [9422, "engine-quota"],
      [9423, "engine-quota"],
      [9412, "format-unsupported"],
      [9520, "format-unsupported"],
      [9523, "engine-error"],
      [9529, "engine-error"],
    ];
    for (const [code, reason] of cases) {
      const error = Object.assign(new Error(`IMAGES_TRANSFORM_ERROR ${code}: nope`), { code });
      const { binding } = fakeBinding({ error });
      const failed = await failure(cloudflareImagesEngine(binding).transform(job({})));
      expect([code, failed.reason]).toEqual([code, reason]);
      expect(failed.message).toContain(String(code));
    }
  });

  it("reports the format it got: Cloudflare may answer an AVIF request with WebP", async () => {
    const webp = (await engine.transform(job({ resize: { width: 100, fit: "scale-down" } }))).bytes;
    const { binding, calls } = fakeBinding({ bytes: webp });
    const result = await cloudflareImagesEngine(binding).transform(job({ output: "avif", quality: 40 }));
    expect(result).toMatchObject({ format: "webp", width: 100, height: 63 });
    expect(calls[0]?.output).toEqual({ format: "image/avif", quality: 40 });
  });

  it("refuses output larger than the source or the box", async () => {
    const big = await makePng(400, 250);
    const { binding } = fakeBinding({ bytes: big });
    const error = await failure(cloudflareImagesEngine(binding).transform(job({ output: "png" })));
    expect(error.reason).toBe("engine-bad-dimensions");
  });

  it("asks for quality by mode and format", async () => {
    const png = await makePng(8, 8);
    const ask = async (overrides: Partial<ImageJob>) => {
      const { binding, calls } = fakeBinding({ bytes: png });
      await cloudflareImagesEngine(binding)
        .transform(job({ input: png, ...overrides }))
        .catch(() => undefined);
      return calls[0]?.output;
    };
    expect(await ask({ output: "png", mode: "lossless" })).toEqual({ format: "image/png" });
    expect(await ask({ output: "png", mode: "lossy", quality: 60 })).toEqual({ format: "image/png", quality: 60 });
    expect(await ask({ output: "webp", mode: "lossless" })).toEqual({ format: "image/webp", quality: 100 });
    expect(await ask({ output: "jpeg", mode: "lossy", quality: 70 })).toEqual({ format: "image/jpeg", quality: 70 });
    expect(await ask({ output: "avif", mode: "lossless" })).toEqual({ format: "image/avif", quality: 100 });
  });
});

// --- Pieces ---------------------------------------------------------------------------------------------------

describe("resizeOps", () => {
  const source = { width: 320, height: 200 };

  it("maps our fits to the binding's never-enlarging ones", () => {
    expect(resizeOps({ width: 100, height: 100, fit: "scale-down" }, source)).toEqual([
      { width: 100, fit: "scale-down" },
    ]);
    expect(resizeOps({ width: 300, height: 50, fit: "scale-down" }, source)).toEqual([
      { height: 50, fit: "scale-down" },
    ]);
    expect(resizeOps({ width: 100, height: 100, fit: "cover" }, source)).toEqual([
      { width: 100, height: 100, fit: "crop" },
    ]);
    expect(resizeOps({ width: 100, fit: "cover" }, source)).toEqual([{ width: 100, fit: "scale-down" }]);
  });

  it("clamps a cover box to the image and drops boxes that change nothing", () => {
    expect(resizeOps({ width: 1000, height: 100, fit: "cover" }, source)).toEqual([
      { width: 320, height: 100, fit: "crop" },
    ]);
    expect(resizeOps({ width: 320, height: 400, fit: "cover" }, source)).toEqual([]);
    expect(resizeOps({ width: 320, fit: "scale-down" }, source)).toEqual([]);
    expect(resizeOps(undefined, source)).toEqual([]);
  });

  it("passes the box through when the source's size is unknown", () => {
    expect(resizeOps({ width: 100, height: 80, fit: "cover" }, null)).toEqual([
      { width: 100, height: 80, fit: "crop" },
    ]);
    expect(resizeOps({ width: 100, height: 80, fit: "scale-down" }, null)).toEqual([
      { width: 100, height: 80, fit: "scale-down" },
    ]);
  });
});

describe("isLosslessWebp", () => {
  it("tells a VP8L bitstream from a VP8 one", async () => {
    // VP8L: 20 bytes of RIFF/WEBP/chunk header, signature 0x2f, 14+14 bits of width-1 and height-1.
    const vp8l = new Uint8Array(40);
    vp8l.set(new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8L"), 0);
    vp8l[16] = 20;
    vp8l[20] = 0x2f;
    new DataView(vp8l.buffer).setUint32(21, (499 | (249 << 14)) >>> 0, true);
    expect(isLosslessWebp(vp8l)).toBe(true);

    // Extended (VP8X) file whose image chunk, after an ICCP chunk, is VP8L.
    const vp8x = new Uint8Array([
      ...new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8X"),
      ...[10, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      ...new TextEncoder().encode("ICCP"),
      ...[3, 0, 0, 0, 1, 2, 3, 0],
      ...new TextEncoder().encode("VP8L"),
      ...[5, 0, 0, 0, 0x2f, 0, 0, 0, 0, 0],
    ]);
    expect(isLosslessWebp(vp8x)).toBe(true);

    const lossy = (await engine.transform(job({ resize: { width: 100, fit: "scale-down" } }))).bytes;
    expect(sniffImage(lossy)).toMatchObject({ format: "webp", width: 100, height: 63 });
    expect(isLosslessWebp(lossy)).toBe(false);
    expect(isLosslessWebp(demoPng)).toBe(false);
  });
});

describe("stripMetadata", () => {
  it("removes EXIF/XMP (APP1) and comments from JPEG, leaving the image as it was", async () => {
    const clean = (await engine.transform(job({ output: "jpeg", resize: { width: 64, fit: "scale-down" } }))).bytes;
    const exif = new Uint8Array([0xff, 0xe1, 0x00, 0x10, ...new TextEncoder().encode("Exif\0\0GPS-here")]);
    const comment = new Uint8Array([0xff, 0xfe, 0x00, 0x07, ...new TextEncoder().encode("hello")]);
    const tagged = new Uint8Array([...clean.subarray(0, 2), ...exif, ...comment, ...clean.subarray(2)]);
    expect((await info(tagged)).format).toBe("image/jpeg");

    const stripped = stripMetadata("jpeg", tagged);
    expect(stripped).toEqual(clean);
    expect(stripMetadata("jpeg", clean)).toBe(clean);
    expect(stripMetadata("jpeg", new Uint8Array([0xff, 0xd8, 0x12]))).toBeNull();
  });

  it("removes text chunks from PNG", async () => {
    const tagged = await makePng(4, 4, "camera serial 1234");
    const stripped = stripMetadata("png", tagged);
    expect(stripped).not.toBeNull();
    expect(contains(stripped ?? new Uint8Array(), "camera serial")).toBe(false);
    expect(stripped).toEqual(await makePng(4, 4));
    expect(await info(stripped ?? new Uint8Array())).toMatchObject({ format: "image/png", width: 4, height: 4 });
  });
});
