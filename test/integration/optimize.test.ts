import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { TransformLimiter } from "../../src/optimize/queue";
import { sniffImage } from "../../src/optimize/sniff";
import { OptimizeError } from "../../src/optimize/types";
import { decodePixels, wasmImageEngine } from "../../src/optimize/wasm-images";
import type { SiteInput } from "../../src/sites/schema";
import { platformFor } from "../../src/worker";
import { ADMIN_TOKEN, fixture, newSite, origin, putSite, send, testClock, unique } from "../support/harness";
import { rawImageRoute, withMetadata } from "../support/images";

/**
 * Optimizations through the whole Worker: real image files from a real origin, transformed once per
 * variant at fill time, stored, and served back from the tiers.
 */

const CHROME_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const FIREFOX_ACCEPT = "image/avif,image/webp,*/*";
const CACHEABLE = { "cache-control": "public, max-age=3600" };

/** Test images: test/fixtures/images/, except the photo, which is the demo's own (demo/assets/photo.jpg). */
const fixtureFile = (name: string) => (name === "photo.jpg" ? "demo/photo.jpg" : `images/${name}`);

async function imageSite(optimize: SiteInput["optimize"], file: string, type: string, headers = {}) {
  const { host, id } = await newSite({ optimize });
  const path = `/${unique("img")}/${file}`;
  await origin.route(path, { file: fixtureFile(file), headers: { "content-type": type, ...CACHEABLE, ...headers } });
  return { host, id, path, url: `http://${host}${path}`, original: await fixture(fixtureFile(file)) };
}

async function bytesOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

// Codecs run unoptimized WebAssembly under the test runner: give each test room (CPU, not waiting).
describe("polish and format negotiation", { timeout: 60_000 }, () => {
  it("serves a JPEG as WebP to browsers that accept it, smaller, once per variant", async () => {
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg", {
      etag: '"photo-v1"',
    });
    const first = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    const webp = await bytesOf(first);
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toBe("image/webp");
    expect(sniffImage(webp)).toMatchObject({ format: "webp", width: 640, height: 480 });
    expect(webp.byteLength).toBeLessThan(site.original.byteLength * 0.7);
    expect(first.headers.get("content-length")).toBe(String(webp.byteLength));
    expect(first.headers.get("vary")).toBe("Accept");
    expect(first.headers.get("etag")).toBe('W/"photo-v1~tc.webp"');
    expect(first.headers.get("tiercel-optimize")).toMatch(/^format=webp, from=jpeg, quality=80, original=87992/);
    expect(first.headers.get("cache-status")).toContain("detail=storing");

    // Another browser's Accept line that also lists WebP shares the variant: a hit, the same bytes.
    const second = await send(site.url, { headers: { accept: FIREFOX_ACCEPT } });
    expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await bytesOf(second)).toEqual(webp);
    expect((await origin.hits(site.path)).hits).toBe(1);

    // A client without WebP gets its own variant: the JPEG recompressed at the site's quality.
    const plain = await send(site.url, { headers: { accept: "*/*" } });
    const jpeg = await bytesOf(plain);
    expect(plain.headers.get("content-type")).toBe("image/jpeg");
    expect(sniffImage(jpeg)).toMatchObject({ format: "jpeg", width: 640, height: 480 });
    expect(jpeg.byteLength).toBeLessThan(site.original.byteLength);
    expect(plain.headers.get("vary")).toBe("Accept");
    expect(plain.headers.get("etag")).toBe('W/"photo-v1"');
    // A validator held for the WebP (a downstream cache revalidating for a client without WebP) does not
    // validate the JPEG: each format variant has its own.
    const crossed = await send(site.url, { headers: { accept: "*/*", "if-none-match": 'W/"photo-v1~tc.webp"' } });
    expect(crossed.status).toBe(200);
    expect(crossed.headers.get("content-type")).toBe("image/jpeg");
    const same = await send(site.url, { headers: { accept: "*/*", "if-none-match": 'W/"photo-v1"' } });
    expect(same.status).toBe(304);
    expect((await origin.hits(site.path)).hits).toBe(2);
    const again = await send(site.url);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await bytesOf(again)).toEqual(jpeg);
    expect((await origin.hits(site.path)).hits).toBe(2);
  });

  it("gives a browser that takes WebP the polished PNG when that is smaller than any WebP", async () => {
    // The demo's graphic: 113 KB in the bucket, well under 1 KB as a recompressed PNG.
    const { host } = await newSite({ optimize: { polish: "lossy", formats: ["webp"] } });
    const path = `/${unique("graphic")}/tiercel.png`;
    await origin.route(path, { file: "demo/tiercel.png", headers: { "content-type": "image/png", ...CACHEABLE } });
    const response = await send(`http://${host}${path}`, { headers: { accept: CHROME_ACCEPT } });
    const bytes = await bytesOf(response);
    expect(response.headers.get("content-type")).toBe("image/png");
    expect(sniffImage(bytes)).toMatchObject({ format: "png", width: 320, height: 200 });
    expect(bytes.byteLength).toBeLessThan(2000);
    expect(response.headers.get("vary")).toBe("Accept");
    // The variant for clients without WebP is the same recompressed PNG.
    const plain = await send(`http://${host}${path}`, { headers: { accept: "*/*" } });
    expect(await bytesOf(plain)).toEqual(bytes);
  });

  it("recompresses a PNG losslessly: smaller, every pixel kept", async () => {
    const site = await imageSite({ polish: "lossless" }, "banner.png", "image/png");
    const response = await send(site.url);
    const png = await bytesOf(response);
    expect(response.headers.get("content-type")).toBe("image/png");
    expect(png.byteLength).toBeLessThan(site.original.byteLength);
    expect((await decodePixels(png, "png")).data).toEqual((await decodePixels(site.original, "png")).data);
    expect(response.headers.get("tiercel-optimize")).toContain("lossless");
    // Nothing here depends on Accept: no Vary.
    expect(response.headers.get("vary")).toBeNull();
  });

  it("converts a PNG to lossless WebP with polish lossless", async () => {
    const site = await imageSite({ polish: "lossless", formats: ["webp"] }, "banner.png", "image/png");
    const response = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    const webp = await bytesOf(response);
    expect(response.headers.get("content-type")).toBe("image/webp");
    expect((await decodePixels(webp, "webp")).data).toEqual((await decodePixels(site.original, "png")).data);
  });

  it("serves a range of the optimized bytes from the stored variant", async () => {
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg");
    const whole = await bytesOf(await send(site.url, { headers: { accept: CHROME_ACCEPT } }));
    const part = await send(site.url, { headers: { accept: CHROME_ACCEPT, range: "bytes=0-99" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 0-99/${whole.byteLength}`);
    expect(await bytesOf(part)).toEqual(whole.subarray(0, 100));
  });

  it("leaves bytes alone, with no header, when the site optimizes nothing", async () => {
    const site = await imageSite(undefined, "photo.jpg", "image/jpeg");
    const response = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    expect(await bytesOf(response)).toEqual(site.original);
    expect(response.headers.get("tiercel-optimize")).toBeNull();
    expect(response.headers.get("content-type")).toBe("image/jpeg");
  });

  it("keeps the optimized type and a weak ETag when a 304 freshens the stored variant", async () => {
    const clock = testClock();
    const site = await imageSite({ formats: ["webp"] }, "photo.jpg", "image/jpeg");
    await origin.route(site.path, {
      file: "demo/photo.jpg",
      conditional: true,
      headers: { "content-type": "image/jpeg", "cache-control": "max-age=10", etag: '"p1"' },
      // The 304 speaks of the original: its type must not replace the stored variant's.
      notModifiedHeaders: { "content-type": "image/jpeg" },
    });
    const first = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, { now: clock.now });
    const webp = await bytesOf(first);
    clock.advance(20);
    const revalidated = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, { now: clock.now });
    expect(revalidated.headers.get("cache-status")).toContain("fwd=stale; fwd-status=304");
    expect(revalidated.headers.get("content-type")).toBe("image/webp");
    expect(revalidated.headers.get("etag")).toBe('W/"p1~tc.webp"');
    expect(await bytesOf(revalidated)).toEqual(webp);
    const seen = await origin.hits(site.path);
    expect(seen.last?.headers["if-none-match"]).toBe('W/"p1"');
  });
});

describe("the original, and why", { timeout: 60_000 }, () => {
  it("serves an image that would not get smaller as it is, stored, and says so", async () => {
    // WebP source with polish on and no other format to offer: nothing to gain.
    const site = await imageSite({ polish: "lossy" }, "photo.webp", "image/webp");
    const response = await send(site.url);
    expect(await bytesOf(response)).toEqual(site.original);
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=already-webp");
    const again = await send(site.url);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await origin.hits(site.path)).hits).toBe(1);
  });

  it("serves the original when the transform is larger, stored as that variant", async () => {
    // A JPEG re-encoded at quality 95 from one saved at 92 comes out larger.
    const site = await imageSite({ polish: "lossy", quality: 95 }, "photo.jpg", "image/jpeg");
    const response = await send(site.url);
    expect(await bytesOf(response)).toEqual(site.original);
    expect(response.headers.get("cache-status")).toContain("detail=optimize-larger");
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=larger");
    expect((await send(site.url)).headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });

  it("on an engine failure serves the original, says so, and lets it stand in for a minute only", async () => {
    const clock = testClock();
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg", {
      etag: '"fail-1"',
    });
    const failing = {
      ...wasmImageEngine,
      transform: async () => {
        throw new OptimizeError("engine-error", "out of memory (simulated)");
      },
    };
    const broken = { engines: { ...platformFor(env).engines, wasm: failing }, now: clock.now };
    const first = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, broken);
    expect(first.status).toBe(200);
    expect(await bytesOf(first)).toEqual(site.original);
    expect(first.headers.get("content-type")).toBe("image/jpeg");
    expect(first.headers.get("etag")).toBe('"fail-1"');
    expect(first.headers.get("cache-status")).toContain("detail=optimize-failed");
    expect(first.headers.get("tiercel-optimize")).toBe("original, reason=engine-error, retry=60");
    // Within the minute the stand-in answers: no origin request, no new attempt.
    clock.advance(30);
    const again = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, broken);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit; ttl=30/);
    expect((await origin.hits(site.path)).hits).toBe(1);
    // After it, the variant is fetched again whole (not revalidated, which would keep the stand-in) and,
    // with the engine working, transformed.
    clock.advance(31);
    const later = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, { now: clock.now });
    expect(later.headers.get("content-type")).toBe("image/webp");
    const seen = await origin.hits(site.path);
    expect(seen.hits).toBe(2);
    expect(seen.last?.headers["if-none-match"]).toBeUndefined();
  });

  it("serves the original when too many transforms are already waiting in the isolate", async () => {
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg");
    const full = new TransformLimiter({ concurrency: 1, maxWaiting: 0 }, { concurrency: 0, maxWaiting: 0 });
    const response = await send(site.url, { headers: { accept: CHROME_ACCEPT } }, { transformLimiter: full });
    expect(await bytesOf(response)).toEqual(site.original);
    // Refused for load, not for the input: it stands in for 10 s, not a minute.
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=busy, retry=10");
    expect(response.headers.get("cache-status")).toContain("detail=optimize-failed");
  });

  it("leaves a response marked no-transform as the origin sent it (RFC 9111 §5.2.2.6)", async () => {
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg", {
      "cache-control": "public, max-age=3600, no-transform",
    });
    const response = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    expect(await bytesOf(response)).toEqual(site.original);
    expect(response.headers.get("tiercel-optimize")).toBeNull();
    expect(response.headers.get("cache-status")).toContain("detail=storing");
  });

  it("serves a photo the WASM codecs would turn sideways or discolour as it is", async () => {
    const { host } = await newSite({ optimize: { polish: "lossy", formats: ["webp"] } });
    const photo = await fixture("demo/photo.jpg");
    for (const [name, bytes, reason] of [
      ["rotated", withMetadata(photo, 6), "orientation"],
      ["p3", withMetadata(photo, 1, "Display P3"), "color-profile"],
    ] as const) {
      const path = `/${unique(name)}.jpg`;
      await rawImageRoute(path, "image/jpeg", bytes);
      const response = await send(`http://${host}${path}`, { headers: { accept: CHROME_ACCEPT } });
      expect(await bytesOf(response), name).toEqual(bytes);
      expect(response.headers.get("tiercel-optimize"), name).toBe(`original, reason=${reason}`);
    }
  });

  it("serves images above the size limit as they are", async () => {
    const site = await imageSite({ polish: "lossy" }, "photo.jpg", "image/jpeg");
    const limits = { maxImageBytes: 10_000, maxImagePixels: 4_194_304, maxTextBytes: 1024, engineTimeoutMs: 1000 };
    const response = await send(site.url, undefined, { optimizeLimits: limits });
    expect(await bytesOf(response)).toEqual(site.original);
    expect(response.headers.get("cache-status")).toContain("detail=optimize-too-large");
    const pixels = await imageSite({ polish: "lossy" }, "photo.jpg", "image/jpeg");
    const fewPixels = { ...limits, maxImageBytes: 10_000_000, maxImagePixels: 100_000 };
    const big = await send(pixels.url, undefined, { optimizeLimits: fewPixels });
    expect(await bytesOf(big)).toEqual(pixels.original);
    expect(big.headers.get("tiercel-optimize")).toBe("original, reason=too-large");
  });

  it("does not trust an image Content-Type on bytes that are not an image, nor touch animations", async () => {
    const { host } = await newSite({ optimize: { polish: "lossy", formats: ["webp"] } });
    const path = `/${unique("fake")}.png`;
    await origin.route(path, {
      body: "<html>not a picture</html>",
      headers: { "content-type": "image/png", ...CACHEABLE },
    });
    const fake = await send(`http://${host}${path}`, { headers: { accept: CHROME_ACCEPT } });
    expect(await fake.text()).toBe("<html>not a picture</html>");
    expect(fake.headers.get("tiercel-optimize")).toBe("original, reason=not-an-image");
    const gif = `/${unique("anim")}.gif`;
    await origin.route(gif, { file: "images/still.gif", headers: { "content-type": "image/gif", ...CACHEABLE } });
    const animation = await send(`http://${host}${gif}`, { headers: { accept: CHROME_ACCEPT } });
    expect(await bytesOf(animation)).toEqual(await fixture("images/still.gif"));
    expect(animation.headers.get("tiercel-optimize")).toBe("original, reason=animated");
  });
});

describe("resize URLs", { timeout: 60_000 }, () => {
  const resize = { widths: [200, 320], heights: [200], qualities: [50] };

  it("resizes to an allowed width, keeping the aspect ratio, and caches the result", async () => {
    const site = await imageSite({ resize }, "photo.jpg", "image/jpeg");
    const url = `http://${site.host}/_tiercel/image/width=320${site.path}`;
    const response = await send(url);
    const bytes = await bytesOf(response);
    expect(response.status).toBe(200);
    expect(sniffImage(bytes)).toMatchObject({ format: "jpeg", width: 320, height: 240 });
    expect(response.headers.get("tiercel-optimize")).toContain("width=320, height=240");
    const again = await send(url);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await bytesOf(again)).toEqual(bytes);
    // The source URL itself is its own entry, untouched.
    expect(await bytesOf(await send(site.url))).toEqual(site.original);
    expect((await origin.hits(site.path)).hits).toBe(2);
  });

  it("covers a box, converts on request, and negotiates format=auto", async () => {
    const site = await imageSite({ resize, formats: ["webp"] }, "photo.jpg", "image/jpeg");
    const cover = await send(`http://${site.host}/_tiercel/image/w=200,h=200,fit=cover,q=50,f=webp${site.path}`);
    expect(sniffImage(await bytesOf(cover))).toMatchObject({ format: "webp", width: 200, height: 200 });
    const auto = `http://${site.host}/_tiercel/image/w=200${site.path}`;
    const forChrome = await send(auto, { headers: { accept: CHROME_ACCEPT } });
    expect(sniffImage(await bytesOf(forChrome))).toMatchObject({ format: "webp", width: 200, height: 150 });
    expect(forChrome.headers.get("vary")).toBe("Accept");
    const forCurl = await send(auto, { headers: { accept: "*/*" } });
    expect(sniffImage(await bytesOf(forCurl))).toMatchObject({ format: "jpeg", width: 200, height: 150 });
  });

  it("refuses sizes and qualities off the allow-lists before asking the origin", async () => {
    const site = await imageSite({ resize }, "photo.jpg", "image/jpeg");
    const cases: [string, number, string][] = [
      ["width=321", 400, "resize_not_allowed"],
      ["width=320,q=51", 400, "resize_not_allowed"],
      ["height=100", 400, "resize_not_allowed"],
      ["width=abc", 400, "bad_resize_options"],
      ["zoom=2", 400, "bad_resize_options"],
      ["width=320,fit=cover", 400, "bad_resize_options"],
      ["width=320,width=200", 400, "bad_resize_options"],
    ];
    for (const [options, status, code] of cases) {
      const response = await send(`http://${site.host}/_tiercel/image/${options}${site.path}`);
      expect(response.status, options).toBe(status);
      expect(((await response.json()) as ErrorBody).error.code, options).toBe(code);
    }
    // A format the site's engine cannot write is refused too (the wasm engine has no AVIF encoder).
    const avif = await send(`http://${site.host}/_tiercel/image/width=320,f=avif${site.path}`);
    expect(avif.status).toBe(400);
    expect(((await avif.json()) as ErrorBody).error.message).toContain("format=avif");
    const noPath = await send(`http://${site.host}/_tiercel/image/width=320`);
    expect(noPath.status).toBe(400);
    expect((await origin.hits(site.path)).hits).toBe(0);
  });

  it("answers HEAD with the resized variant's headers, making it on a miss", async () => {
    const site = await imageSite({ resize }, "photo.jpg", "image/jpeg");
    const url = `http://${site.host}/_tiercel/image/width=200${site.path}`;
    const head = await send(url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("tiercel-optimize")).toContain("width=200, height=150");
    const get = await send(url);
    const bytes = await bytesOf(get);
    expect(get.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(head.headers.get("content-length")).toBe(String(bytes.byteLength));
    expect((await origin.hits(site.path)).hits).toBe(1);
  });

  it("is refused on a site that has not enabled it", async () => {
    const site = await imageSite(undefined, "photo.jpg", "image/jpeg");
    const response = await send(`http://${site.host}/_tiercel/image/width=320${site.path}`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as ErrorBody).error.code).toBe("resize_not_enabled");
  });

  it("allows the default widths with resize: true", async () => {
    const site = await imageSite({ resize: true }, "photo.jpg", "image/jpeg");
    const response = await send(`http://${site.host}/_tiercel/image/width=160${site.path}`);
    expect(sniffImage(await bytesOf(response))).toMatchObject({ width: 160, height: 120 });
    expect((await send(`http://${site.host}/_tiercel/image/width=161${site.path}`)).status).toBe(400);
  });
});

describe("purges reach resized variants", { timeout: 60_000 }, () => {
  it("a URL purge of the source image also purges its resized variants, and a resize URL purges itself", async () => {
    const host = `${unique("purge-resize")}.test`;
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
    const created = await send("http://admin.test/_tiercel/api/v1/sites", {
      method: "POST",
      headers,
      body: JSON.stringify({
        hosts: [host],
        origin: { kind: "http", url: origin.url, allowPrivate: true },
        optimize: { resize: true },
      }),
    });
    expect(created.status).toBe(201);
    const { site } = (await created.json()) as { site: { id: string } };
    const path = `/${unique("src")}/photo.jpg`;
    await origin.route(path, { file: "demo/photo.jpg", headers: { "content-type": "image/jpeg", ...CACHEABLE } });
    const resized = `http://${host}/_tiercel/image/width=320${path}`;
    await send(resized);
    expect((await send(resized)).headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);

    const purged = await send(`http://admin.test/_tiercel/api/v1/sites/${site.id}/purge`, {
      method: "POST",
      headers,
      body: JSON.stringify({ urls: [`http://${host}${path}`] }),
    });
    expect(purged.status).toBe(202);
    const after = await send(resized);
    expect(after.headers.get("cache-status")).toContain("detail=purged");
    expect(after.headers.get("cache-status")).toContain("fwd-status=200");

    // A resize URL can be purged by itself too (in any spelling of its options), leaving the others.
    const other = `http://${host}/_tiercel/image/width=160${path}`;
    await send(other);
    expect((await send(resized)).headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    const byItself = await send(`http://admin.test/_tiercel/api/v1/sites/${site.id}/purge`, {
      method: "POST",
      headers,
      body: JSON.stringify({ urls: [`http://${host}/_tiercel/image/w=320,fit=scale-down${path}`] }),
    });
    expect(byItself.status).toBe(202);
    // (This data center also deletes the purged key at once: a plain miss here, "purged" elsewhere.)
    expect((await send(resized)).headers.get("cache-status")).toMatch(
      /^Tiercel-Shield; fwd=miss.*, Tiercel-KV; fwd=miss/,
    );
    expect((await send(other)).headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });
});

describe("the cloudflare engine", { timeout: 60_000 }, () => {
  it("hands images to the Images binding (offline Sharp here) and offers AVIF through it", async () => {
    const site = await imageSite(
      { polish: "lossy", formats: ["webp", "avif"], engine: "cloudflare" },
      "photo.jpg",
      "image/jpeg",
    );
    const avif = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    const bytes = await bytesOf(avif);
    expect(avif.headers.get("content-type")).toBe("image/avif");
    expect(sniffImage(bytes)).toMatchObject({ format: "avif" });
    expect(bytes.byteLength).toBeLessThan(site.original.byteLength);
    expect(avif.headers.get("tiercel-optimize")).toContain("engine=cloudflare");
    // A client that lists only WebP gets the WebP variant, from the same engine.
    const webp = await send(site.url, { headers: { accept: "image/webp,*/*" } });
    expect(webp.headers.get("content-type")).toBe("image/webp");
    expect((await origin.hits(site.path)).hits).toBe(2);
  });

  it("keys the engine: switching a site's engine gives fresh variants, no purge", async () => {
    const site = await imageSite({ polish: "lossy", formats: ["webp"] }, "photo.jpg", "image/jpeg");
    const before = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    expect(before.headers.get("tiercel-optimize")).toContain("engine=wasm");
    expect((await send(site.url, { headers: { accept: CHROME_ACCEPT } })).headers.get("cache-status")).toMatch(/hit/);
    await putSite(site.host, {
      id: site.id,
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      optimize: { polish: "lossy", formats: ["webp"], engine: "cloudflare" },
    });
    const after = await send(site.url, { headers: { accept: CHROME_ACCEPT } });
    expect(after.headers.get("cache-status")).toContain("fwd=miss");
    expect(after.headers.get("tiercel-optimize")).toContain("engine=cloudflare");
  });
});
