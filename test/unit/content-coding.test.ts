import { describe, expect, it } from "vitest";
import { decodeContent, isZlibHeader } from "../../src/core/http/content-coding";
import { streamOf } from "../../src/core/streams";

const TEXT = "deflate, either way. ".repeat(500);

async function coded(format: "deflate" | "deflate-raw"): Promise<Uint8Array> {
  const stream = streamOf(new TextEncoder().encode(TEXT)).pipeThrough(new CompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function labelled(bytes: Uint8Array): Response {
  return new Response(bytes, { headers: { "content-encoding": "deflate", "content-length": String(bytes.length) } });
}

describe("Content-Encoding: deflate", () => {
  it("tells a zlib header from raw deflate by its first two bytes", async () => {
    expect(isZlibHeader(await coded("deflate"))).toBe(true);
    expect(isZlibHeader(await coded("deflate-raw"))).toBe(false);
    // CM 8 with a bad header checksum, and a valid checksum with CM 15: neither is zlib.
    expect(isZlibHeader(new Uint8Array([0x78, 0x9d]))).toBe(false);
    expect(isZlibHeader(new Uint8Array([0x7f, 0x22]))).toBe(false);
  });

  for (const format of ["deflate", "deflate-raw"] as const) {
    it(`decodes a ${format} body labelled deflate`, async () => {
      const decoded = decodeContent(labelled(await coded(format)));
      expect(decoded.headers.get("content-encoding")).toBeNull();
      expect(decoded.headers.get("content-length")).toBeNull();
      expect(await decoded.text()).toBe(TEXT);
    });

    it(`errors a ${format} body cut short, never a clean shorter end`, async () => {
      const bytes = await coded(format);
      const decoded = decodeContent(labelled(bytes.subarray(0, Math.floor(bytes.length / 2))));
      await expect(decoded.text()).rejects.toThrow();
    });
  }

  it("errors a body of fewer than two bytes", async () => {
    await expect(decodeContent(labelled(new Uint8Array([0x78]))).text()).rejects.toThrow();
  });
});
