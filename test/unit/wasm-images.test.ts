import { beforeAll, describe, expect, it } from "vitest";
import { pixelMeaning, sniffImage } from "../../src/optimize/sniff";
import { OptimizeError } from "../../src/optimize/types";
import { decodePixels, targetSize, wasmImageEngine } from "../../src/optimize/wasm-images";
import { fixture } from "../support/harness";
import { withMetadata } from "../support/images";

/** The WASM engine on real image files (test/fixtures/images), checked by decoding what it writes. */

const files: Record<string, Uint8Array> = {};
beforeAll(async () => {
  // The photo is the demo's own (demo/assets/photo.jpg); the others are test fixtures.
  files["photo.jpg"] = await fixture("demo/photo.jpg");
  for (const name of ["banner.png", "photo.webp", "still.gif"]) files[name] = await fixture(`images/${name}`);
});
const file = (name: string) => files[name] as Uint8Array;

function contains(bytes: Uint8Array, text: string): boolean {
  return new TextDecoder("latin1").decode(bytes).includes(text);
}

describe("sniffImage", () => {
  it("reads the format and dimensions from the headers of each format", () => {
    expect(sniffImage(file("photo.jpg"))).toEqual({ format: "jpeg", width: 640, height: 480, animated: false });
    expect(sniffImage(file("banner.png"))).toEqual({ format: "png", width: 320, height: 200, animated: false });
    expect(sniffImage(file("photo.webp"))).toEqual({ format: "webp", width: 300, height: 200, animated: false });
    expect(sniffImage(file("still.gif"))).toMatchObject({ format: "gif", width: 40, height: 80 });
  });

  it("does not take text, truncated headers or an empty body for an image", () => {
    expect(sniffImage(new TextEncoder().encode("<html><body>not an image</body></html>"))).toBeNull();
    expect(sniffImage(file("banner.png").subarray(0, 20))).toBeNull();
    expect(sniffImage(new Uint8Array())).toBeNull();
  });
});

describe("wasm engine", { timeout: 60_000 }, () => {
  it("recompresses a PNG losslessly: smaller, same dimensions, the very same pixels", async () => {
    const input = file("banner.png");
    const result = await wasmImageEngine.transform({
      input,
      inputFormat: "png",
      output: "png",
      mode: "lossless",
      quality: 100,
    });
    expect(sniffImage(result.bytes)).toMatchObject({ format: "png", width: 320, height: 200 });
    expect(result.bytes.byteLength).toBeLessThan(input.byteLength);
    const before = await decodePixels(input, "png");
    const after = await decodePixels(result.bytes, "png");
    expect(after.data).toEqual(before.data);
  });

  it("converts a PNG to lossless WebP with the same pixels", async () => {
    const input = file("banner.png");
    const result = await wasmImageEngine.transform({
      input,
      inputFormat: "png",
      output: "webp",
      mode: "lossless",
      quality: 100,
    });
    expect(sniffImage(result.bytes)).toMatchObject({ format: "webp", width: 320, height: 200 });
    const before = await decodePixels(input, "png");
    const after = await decodePixels(result.bytes, "webp");
    expect(after.data).toEqual(before.data);
  });

  it("converts a JPEG photo to lossy WebP: much smaller, same dimensions, close to the original", async () => {
    const input = file("photo.jpg");
    const result = await wasmImageEngine.transform({
      input,
      inputFormat: "jpeg",
      output: "webp",
      mode: "lossy",
      quality: 75,
    });
    expect(sniffImage(result.bytes)).toMatchObject({ format: "webp", width: 640, height: 480 });
    expect(result.bytes.byteLength).toBeLessThan(input.byteLength * 0.7);
    const before = await decodePixels(input, "jpeg");
    const after = await decodePixels(result.bytes, "webp");
    expect(meanAbsoluteError(before.data, after.data)).toBeLessThan(8);
  });

  it("recompresses a JPEG at a bounded quality and drops its metadata", async () => {
    const input = file("photo.jpg");
    expect(contains(input, "Exif")).toBe(true);
    const result = await wasmImageEngine.transform({
      input,
      inputFormat: "jpeg",
      output: "jpeg",
      mode: "lossy",
      quality: 70,
    });
    expect(sniffImage(result.bytes)).toMatchObject({ format: "jpeg", width: 640, height: 480 });
    expect(result.bytes.byteLength).toBeLessThan(input.byteLength);
    expect(contains(result.bytes, "Exif")).toBe(false);
    expect(contains(result.bytes, "Tiercel test fixture")).toBe(false);
  });

  it("gives the same bytes for the same job (a variant is the same whoever fills it)", async () => {
    const job = { input: file("photo.webp"), inputFormat: "webp", output: "jpeg", mode: "lossy", quality: 60 } as const;
    const first = await wasmImageEngine.transform(job);
    const second = await wasmImageEngine.transform(job);
    expect(second.bytes).toEqual(first.bytes);
  });

  it("is idempotent for lossless PNG: optimizing the output again keeps the pixels and gains nothing", async () => {
    const job = { inputFormat: "png", output: "png", mode: "lossless", quality: 100 } as const;
    const once = await wasmImageEngine.transform({ ...job, input: file("banner.png") });
    const twice = await wasmImageEngine.transform({ ...job, input: once.bytes });
    expect((await decodePixels(twice.bytes, "png")).data).toEqual((await decodePixels(once.bytes, "png")).data);
    expect(twice.bytes.byteLength).toBeGreaterThanOrEqual(once.bytes.byteLength * 0.98);
  });

  it("resizes to a width keeping the aspect ratio, and to a cropped box with cover", async () => {
    const input = file("photo.jpg");
    const base = { input, inputFormat: "jpeg", output: "webp", mode: "lossy", quality: 75 } as const;
    const narrow = await wasmImageEngine.transform({ ...base, resize: { width: 320, fit: "scale-down" } });
    expect(sniffImage(narrow.bytes)).toMatchObject({ format: "webp", width: 320, height: 240 });
    expect(narrow).toMatchObject({ width: 320, height: 240 });
    const square = await wasmImageEngine.transform({ ...base, resize: { width: 200, height: 200, fit: "cover" } });
    expect(sniffImage(square.bytes)).toMatchObject({ width: 200, height: 200 });
    const short = await wasmImageEngine.transform({ ...base, resize: { height: 120, fit: "scale-down" } });
    expect(sniffImage(short.bytes)).toMatchObject({ width: 160, height: 120 });
  });

  it("never enlarges", async () => {
    const input = file("photo.webp");
    const result = await wasmImageEngine.transform({
      input,
      inputFormat: "webp",
      output: "webp",
      mode: "lossy",
      quality: 75,
      resize: { width: 1200, fit: "scale-down" },
    });
    expect(sniffImage(result.bytes)).toMatchObject({ width: 300, height: 200 });
  });

  it("fails with a stable reason on a corrupt image or a format it cannot read or write", async () => {
    const corrupt = file("photo.jpg").slice(0, 2000);
    corrupt.fill(0x55, 600);
    const attempt = (job: Parameters<typeof wasmImageEngine.transform>[0]) =>
      wasmImageEngine.transform(job).then(
        () => "no error",
        (error: unknown) => (error instanceof OptimizeError ? error.reason : String(error)),
      );
    const base = { mode: "lossy", quality: 75 } as const;
    expect(await attempt({ ...base, input: corrupt, inputFormat: "png", output: "webp" })).toBe("engine-error");
    expect(await attempt({ ...base, input: file("still.gif"), inputFormat: "gif", output: "webp" })).toBe(
      "format-unsupported",
    );
    expect(await attempt({ ...base, input: file("photo.jpg"), inputFormat: "jpeg", output: "avif" })).toBe(
      "format-unsupported",
    );
  });
});

describe("targetSize", () => {
  it("fits inside the box keeping the aspect ratio, never above 1:1", () => {
    expect(targetSize(640, 480, { width: 320, fit: "scale-down" })).toEqual({ width: 320, height: 240 });
    expect(targetSize(640, 480, { width: 320, height: 100, fit: "scale-down" })).toEqual({ width: 133, height: 100 });
    expect(targetSize(640, 480, { width: 4000, fit: "scale-down" })).toEqual({ width: 640, height: 480 });
  });

  it("covers the box by cropping the centre, and shrinks the box for a smaller image", () => {
    expect(targetSize(640, 480, { width: 200, height: 200, fit: "cover" })).toEqual({
      width: 200,
      height: 200,
      crop: { x: 80, y: 0, width: 480, height: 480 },
    });
    // A 640×480 image cannot cover 1000×1000 without enlarging: the largest 1:1 crop is kept as it is.
    expect(targetSize(640, 480, { width: 1000, height: 1000, fit: "cover" })).toEqual({
      width: 640,
      height: 480,
    });
  });
});

function meanAbsoluteError(a: Uint8ClampedArray, b: Uint8ClampedArray): number {
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) sum += Math.abs((a[i] ?? 0) - (b[i] ?? 0));
  return sum / a.length;
}

describe("pixelMeaning", () => {
  it("reads EXIF orientation and tells an sRGB profile from another", () => {
    const photo = file("photo.jpg");
    expect(pixelMeaning(photo, "jpeg")).toEqual({ orientation: 1, foreignProfile: false });
    expect(pixelMeaning(withMetadata(photo, 6), "jpeg")).toEqual({ orientation: 6, foreignProfile: false });
    expect(pixelMeaning(withMetadata(photo, 1, "Display P3"), "jpeg")).toEqual({
      orientation: 1,
      foreignProfile: true,
    });
    expect(pixelMeaning(withMetadata(photo, 1, "sRGB IEC61966-2.1"), "jpeg").foreignProfile).toBe(false);
    expect(pixelMeaning(file("banner.png"), "png")).toEqual({ orientation: 1, foreignProfile: false });
  });
});
