import { describe, expect, it } from "vitest";
import {
  BodyTooLargeError,
  collectAtMost,
  concat,
  LARGE_READ_BYTES,
  LoopTurns,
  largeChunkReader,
  readAll,
  sha256Digest,
  splitPrefix,
  streamOf,
  streamOfChunks,
  YIELD_EVERY_BYTES,
} from "../../src/core/streams";
import { chunkSizes, runtimeStream, source } from "../support/streams";

const bytes = (...values: number[]) => new Uint8Array(values);
const text = (value: string) => new TextEncoder().encode(value);

async function chunksOf(stream: ReadableStream<Uint8Array>): Promise<number[][]> {
  const out: number[][] = [];
  for await (const chunk of stream) out.push([...chunk]);
  return out;
}

describe("readAll", () => {
  it("joins every chunk into one buffer", async () => {
    const { stream } = source([bytes(1, 2), bytes(3), bytes(4, 5, 6)]);
    expect([...(await readAll(stream, 100))]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("reads an empty stream as an empty buffer", async () => {
    expect((await readAll(source([]).stream, 0)).byteLength).toBe(0);
  });

  it("accepts a body of exactly the limit", async () => {
    const { stream } = source([bytes(1, 2), bytes(3, 4)]);
    expect([...(await readAll(stream, 4))]).toEqual([1, 2, 3, 4]);
  });

  it("refuses a body one byte over the limit and cancels the stream", async () => {
    const src = source([bytes(1, 2), bytes(3, 4), bytes(5), bytes(6)]);
    const result = readAll(src.stream, 4);
    await expect(result).rejects.toBeInstanceOf(BodyTooLargeError);
    await expect(result).rejects.toThrow("body exceeds 4 bytes");
    expect(src.cancelled()).toBe("body too large to store");
    // It stopped at the chunk that crossed the limit.
    expect(src.pulls()).toBe(3);
  });

  it("refuses a single chunk larger than the limit", async () => {
    await expect(readAll(source([new Uint8Array(11)]).stream, 10)).rejects.toBeInstanceOf(BodyTooLargeError);
  });

  it("rejects with the stream's error: a body that broke off is never taken as complete", async () => {
    const failure = new Error("connection reset");
    await expect(readAll(source([bytes(1, 2)], failure).stream, 100)).rejects.toBe(failure);
  });
});

describe("splitPrefix", () => {
  it("splits the prefix off inside a chunk and keeps the rest of that chunk", async () => {
    const { prefix, rest } = await splitPrefix(source([bytes(1, 2, 3, 4, 5), bytes(6, 7)]).stream, 2);
    expect([...prefix]).toEqual([1, 2]);
    expect(await chunksOf(rest)).toEqual([
      [3, 4, 5],
      [6, 7],
    ]);
  });

  it("gathers a prefix across chunk boundaries", async () => {
    const { prefix, rest } = await splitPrefix(source([bytes(1), bytes(2, 3), bytes(4, 5, 6), bytes(7)]).stream, 4);
    expect([...prefix]).toEqual([1, 2, 3, 4]);
    expect(await chunksOf(rest)).toEqual([[5, 6], [7]]);
  });

  it("splits exactly at a chunk boundary without an empty chunk in the rest", async () => {
    const { prefix, rest } = await splitPrefix(source([bytes(1, 2), bytes(3, 4), bytes(5)]).stream, 4);
    expect([...prefix]).toEqual([1, 2, 3, 4]);
    expect(await chunksOf(rest)).toEqual([[5]]);
  });

  it("leaves an empty rest when the prefix is the whole stream", async () => {
    const { prefix, rest } = await splitPrefix(source([bytes(1, 2), bytes(3)]).stream, 3);
    expect([...prefix]).toEqual([1, 2, 3]);
    expect(await chunksOf(rest)).toEqual([]);
  });

  it("takes an empty prefix of size zero and leaves the whole stream", async () => {
    const { prefix, rest } = await splitPrefix(source([bytes(1, 2)]).stream, 0);
    expect(prefix.byteLength).toBe(0);
    expect(await chunksOf(rest)).toEqual([[1, 2]]);
  });

  it("rejects and cancels when the stream ends before the prefix", async () => {
    const src = source([bytes(1, 2), bytes(3)]);
    await expect(splitPrefix(src.stream, 5)).rejects.toThrow("stream ended after 3 of 5 prefix bytes");
  });

  it("reads no further than the prefix needs, and the rest only one chunk ahead of its reader", async () => {
    const src = source([bytes(1, 2, 3), bytes(4, 5), bytes(6), bytes(7), bytes(8)]);
    const { rest } = await splitPrefix(src.stream, 2);
    expect(src.pulls()).toBe(1);
    const reader = rest.getReader();
    expect([...((await reader.read()).value ?? [])]).toEqual([3]);
    expect(src.pulls()).toBeLessThanOrEqual(2);
    expect([...((await reader.read()).value ?? [])]).toEqual([4, 5]);
    expect(src.pulls()).toBeLessThanOrEqual(3);
  });

  it("passes a cancel of the rest on to the original stream", async () => {
    const src = source([bytes(1, 2, 3), bytes(4)]);
    const { rest } = await splitPrefix(src.stream, 1);
    await rest.cancel("client went away");
    expect(src.cancelled()).toBe("client went away");
  });

  it("passes an error after the prefix on to the rest", async () => {
    const failure = new Error("connection reset");
    const { prefix, rest } = await splitPrefix(source([bytes(1, 2), bytes(3)], failure).stream, 2);
    expect([...prefix]).toEqual([1, 2]);
    await expect(chunksOf(rest)).rejects.toBe(failure);
  });
});

describe("collectAtMost", () => {
  it("hands back a whole stream within the limit as its chunks and their total", async () => {
    const { stream } = source([bytes(1, 2), bytes(3)]);
    const read = await collectAtMost(stream, 3);
    expect(read).toEqual({ chunks: [bytes(1, 2), bytes(3)], total: 3 });
  });

  it("past the limit, replays what it read and then the rest, without losing a byte", async () => {
    const { stream } = source([bytes(1, 2), bytes(3, 4), bytes(5)]);
    const read = await collectAtMost(stream, 3);
    if (!("over" in read)) throw new Error("expected the stream back");
    expect((await chunksOf(read.over)).flat()).toEqual([1, 2, 3, 4, 5]);
  });

  it("rejects when the stream errors before its end, so a broken body is never taken for a whole one", async () => {
    const { stream } = source([bytes(1, 2)], new Error("origin went away"));
    await expect(collectAtMost(stream, 100)).rejects.toThrow("origin went away");
  });
});

describe("streamOfChunks", () => {
  it("streams the chunks in order, skipping empty ones", async () => {
    expect(await chunksOf(streamOfChunks([bytes(1), new Uint8Array(0), bytes(2, 3)]))).toEqual([[1], [2, 3]]);
  });
});

describe("concat", () => {
  it("joins chunks in order", () => {
    expect([...concat([bytes(1), bytes(2, 3), bytes(), bytes(4)])]).toEqual([1, 2, 3, 4]);
  });

  it("gives an empty buffer for no chunks", () => {
    expect(concat([]).byteLength).toBe(0);
  });
});

describe("streamOf", () => {
  it("streams the buffer as one chunk", async () => {
    expect(await chunksOf(streamOf(bytes(1, 2, 3)))).toEqual([[1, 2, 3]]);
  });

  it("streams an empty buffer as no chunks at all", async () => {
    expect(await chunksOf(streamOf(bytes()))).toEqual([]);
  });
});

describe("sha256Digest (RFC 9530 §2)", () => {
  it("formats the digest as an sf-binary: sha-256=:<base64>: (RFC 9530 §2, RFC 8941 §3.3.5)", async () => {
    expect(await sha256Digest(text("abc"))).toBe("sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:");
  });

  it("digests an empty body (RFC 9530 §2)", async () => {
    expect(await sha256Digest(bytes())).toBe("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
  });

  it("digests every byte value, not only text", async () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const digest = await sha256Digest(all);
    expect(digest).toMatch(/^sha-256=:[A-Za-z0-9+/]{43}=:$/);
    expect(digest).toBe("sha-256=:QK/y6dLYki5Hr9RkjmlnSXFYeF+9Hahw5xECZr+USIA=:");
  });
});

describe("largeChunkReader", () => {
  async function readAllFrom(reader: ReturnType<typeof largeChunkReader>): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 10_000; i++) {
      const { done, value } = await reader.read();
      if (done) return chunks;
      chunks.push(value);
    }
    throw new Error("did not end");
  }

  it("reads a byte stream into large buffers, small reads copied out, every byte in order", async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => new Uint8Array(1000).fill(i));
    let next = 0;
    const source = new ReadableStream({
      type: "bytes",
      pull(controller) {
        const piece = pieces[next++];
        if (piece) controller.enqueue(piece.slice());
        else controller.close();
      },
    });
    const chunks = await readAllFrom(largeChunkReader(source));
    expect(concat(chunks)).toEqual(concat(pieces));
    // A small read holds a buffer of its own size, not the whole read buffer.
    for (const chunk of chunks) expect(chunk.buffer.byteLength).toBe(chunk.byteLength);
  });

  it("reads any other stream chunk by chunk", async () => {
    const source = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array([1, 2]));
        controller.enqueue(new Uint8Array([3]));
        controller.close();
      },
    });
    expect(await readAllFrom(largeChunkReader(source))).toEqual([new Uint8Array([1, 2]), new Uint8Array([3])]);
  });
});

describe("LoopTurns", () => {
  const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

  it("asks for a turn of the event loop once a yield's worth of bytes passed without one", async () => {
    const turns = new LoopTurns();
    expect(turns.after(YIELD_EVERY_BYTES - 1)).toBeUndefined();
    const wait = turns.after(1);
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    // The loop turned: the count starts again.
    expect(turns.after(YIELD_EVERY_BYTES - 1)).toBeUndefined();
  });

  it("never asks a reader whose reads let the loop turn by themselves", async () => {
    const turns = new LoopTurns();
    for (let i = 0; i < 20; i++) {
      expect(turns.after(YIELD_EVERY_BYTES / 2)).toBeUndefined();
      // A read that waited on I/O: the loop turned meanwhile.
      await turn();
    }
  });
});

describe("largeChunkReader of a runtime stream", () => {
  it("takes what a writer wrote in one read, where the runtime's own reader hands over a few KiB at a time", async () => {
    const size = 4 * LARGE_READ_BYTES;
    const plain = runtimeStream(size, LARGE_READ_BYTES).getReader();
    const native = await chunkSizes(() => plain.read());
    const large = largeChunkReader(runtimeStream(size, LARGE_READ_BYTES));
    const sizes = await chunkSizes(() => large.read());
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(size);
    expect(native.reduce((a, b) => a + b, 0)).toBe(size);
    // What this reader is for: the runtime's own reads are far smaller than what was written.
    expect(native.length).toBeGreaterThan(sizes.length * 8);
    expect(sizes.length).toBeLessThanOrEqual(8);
  });
});
