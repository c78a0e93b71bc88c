import { describe, expect, it } from "vitest";
import { Broadcast, DetachedError, skipBytes } from "../../src/core/shield-broadcast";
import { concat, YIELD_EVERY_BYTES } from "../../src/core/streams";
import { chunkSizes, runtimeStream } from "../support/streams";

/** A source of `count` chunks of `size` bytes, byte i being i % 251, that says how far it has been read. */
function source(count: number, size: number) {
  let produced = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (produced >= count) return controller.close();
        const chunk = new Uint8Array(size);
        for (let i = 0; i < size; i++) chunk[i] = (produced * size + i) % 251;
        produced += 1;
        controller.enqueue(chunk);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, produced: () => produced };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return concat(chunks);
}

function expectPattern(bytes: Uint8Array, length: number, from = 0): void {
  expect(bytes.byteLength).toBe(length);
  let wrong = 0;
  for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] !== (from + i) % 251) wrong += 1;
  expect(wrong).toBe(0);
}

describe("Broadcast", () => {
  it("gives every reader every byte, reading the source once", async () => {
    const { stream, produced } = source(40, 1000);
    const broadcast = new Broadcast(stream, { windowBytes: 8000, stallMs: 10_000 });
    const readers = Array.from({ length: 5 }, () => broadcast.join());
    const bodies = await Promise.all(readers.map(readAll));
    for (const body of bodies) expectPattern(body, 40_000);
    expect(produced()).toBe(40);
  });

  it("holds the body to its declared length: a source that ends short, or runs past it, fails every reader", async () => {
    const failure = async (length: number) => {
      const broadcast = new Broadcast(source(10, 1000).stream, { windowBytes: 100_000, stallMs: 10_000, length });
      const outcomes = await Promise.all(
        [broadcast.join(), broadcast.join()].map((reader) =>
          readAll(reader).then(
            () => null,
            (error) => error,
          ),
        ),
      );
      return outcomes.map((error) => (error ? `${error.code}: ${error.message}` : null));
    };
    expect(await failure(10_000)).toEqual([null, null]);
    expect(await failure(10_001)).toEqual(
      Array(2).fill("origin_bad_response: the origin's body ended after 10000 of 10001 bytes"),
    );
    expect(await failure(9_999)).toEqual(
      Array(2).fill("origin_bad_response: the origin's body ran past its 9999 bytes"),
    );
  });

  it("reads no further than one window ahead of the slowest reader", async () => {
    const { stream, produced } = source(100, 1000);
    const broadcast = new Broadcast(stream, { windowBytes: 5000, stallMs: 10_000 });
    const fast = broadcast.join();
    const slow = broadcast.join().getReader();
    const fastDone = readAll(fast);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The slow reader has read nothing: the source stops about a window in, and little is held.
    expect(produced()).toBeLessThanOrEqual(6);
    expect(broadcast.heldBytes).toBeLessThanOrEqual(6000);
    const rest: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await slow.read();
      if (done) break;
      rest.push(value);
      expect(broadcast.heldBytes).toBeLessThanOrEqual(6000);
    }
    expectPattern(await fastDone, 100_000);
    expect(rest.reduce((n, c) => n + c.byteLength, 0)).toBe(100_000);
  });

  it("lets a reader join from byte 0 while the head is held, and starts a later one detached", async () => {
    const { stream } = source(20, 1000);
    const resumed: number[] = [];
    const broadcast = new Broadcast(stream, {
      windowBytes: 5000,
      stallMs: 10_000,
      resume: async (offset) => {
        resumed.push(offset);
        return skipBytes(source(20, 1000).stream, offset);
      },
    });
    const first = broadcast.join().getReader();
    await first.read();
    await first.read();
    expect(broadcast.holdsAll).toBe(true);
    const joiner = readAll(broadcast.join());
    for (;;) if ((await first.read()).done) break;
    expectPattern(await joiner, 20_000);
    expect(broadcast.holdsAll).toBe(false);
    expectPattern(await readAll(broadcast.join()), 20_000);
    expect(resumed).toEqual([0]);
  });

  it("detaches a reader that holds the source back past the stall bound; it resumes from its offset", async () => {
    const { stream } = source(30, 1000);
    const broadcast = new Broadcast(stream, {
      windowBytes: 4000,
      stallMs: 30,
      resume: async (offset) => skipBytes(source(30, 1000).stream, offset),
    });
    const stuck = broadcast.join().getReader();
    const first = await stuck.read();
    const fast = await readAll(broadcast.join());
    expectPattern(fast, 30_000);
    const rest: Uint8Array[] = [first.value as Uint8Array];
    for (;;) {
      const { done, value } = await stuck.read();
      if (done) break;
      rest.push(value);
    }
    const whole = new Uint8Array(30_000);
    let at = 0;
    for (const chunk of rest) {
      whole.set(chunk, at);
      at += chunk.byteLength;
    }
    expectPattern(whole, 30_000);
  });

  it("keeps the head: a reader joining after the fill passed it reads the head from memory, then resumes at its end", async () => {
    const { stream, produced } = source(40, 1000);
    const resumed: number[] = [];
    const broadcast = new Broadcast(stream, {
      headBytes: 10_000,
      windowBytes: 4000,
      stallMs: 10_000,
      resume: async (offset) => {
        resumed.push(offset);
        return skipBytes(source(40, 1000).stream, offset);
      },
    });
    expectPattern(await readAll(broadcast.join()), 40_000);
    expect(produced()).toBe(40);
    // The head and at most a window past it are held; everything between is gone.
    expect(broadcast.holdsAll).toBe(false);
    expect(broadcast.heldBytes).toBeLessThanOrEqual(14_000);
    const late = broadcast.join().getReader();
    const first = await late.read();
    // Its first byte came from memory: nothing was resumed for it.
    expect(first.value?.[0]).toBe(0);
    expect(resumed).toEqual([]);
    const rest: Uint8Array[] = [first.value as Uint8Array];
    for (;;) {
      const { done, value } = await late.read();
      if (done) break;
      rest.push(value);
    }
    expectPattern(await readAll(new Blob(rest).stream()), 40_000);
    expect(resumed).toEqual([10_000]);
  });

  it("lets the fill run at most a window past the head while a reader is still in it, then stops waiting for it", async () => {
    const { stream, produced } = source(60, 1000);
    const broadcast = new Broadcast(stream, {
      headBytes: 10_000,
      windowBytes: 5000,
      stallMs: 40,
      resume: async (offset) => skipBytes(source(60, 1000).stream, offset),
    });
    const slow = broadcast.join().getReader();
    await slow.read();
    const fast = readAll(broadcast.join());
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Held back by the reader in the head: the head and about a window past it.
    expect(produced()).toBeLessThanOrEqual(16);
    // Past the stall bound the fill goes on without it; it still reads every byte (the head from memory).
    expectPattern(await fast, 60_000);
    const rest: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await slow.read();
      if (done) break;
      rest.push(value);
    }
    expectPattern(await readAll(new Blob(rest).stream()), 59_000, 1000);
  });

  it("lets the event loop turn while it reads a source that always has bytes ready", async () => {
    // Without a turn, a timer set before the read would fire only once all 4 MiB had been read.
    const { stream } = source(64, 64 * 1024);
    const broadcast = new Broadcast(stream, { windowBytes: 8 * 1024 * 1024, stallMs: 5_000 });
    let read = 0;
    let readWhenTimerFired = -1;
    setTimeout(() => {
      readWhenTimerFired = read;
    }, 0);
    for await (const chunk of broadcast.join() as unknown as AsyncIterable<Uint8Array>) read += chunk.byteLength;
    expect(read).toBe(4 * 1024 * 1024);
    expect(readWhenTimerFired).toBeGreaterThanOrEqual(0);
    expect(readWhenTimerFired).toBeLessThanOrEqual(YIELD_EVERY_BYTES);
  });

  it("reads a runtime body in the chunks it was written in, not the few KiB the runtime's reader hands over", async () => {
    // The shield's fill body is a runtime stream; each chunk read here crosses RPC to every data center on its
    // own, so 4 KiB reads made a 30 MiB miss take 6 times the minimal Worker's time.
    const broadcast = new Broadcast(runtimeStream(1024 * 1024, 256 * 1024), {
      windowBytes: 8 * 1024 * 1024,
      stallMs: 5_000,
    });
    const reader = broadcast.join().getReader();
    const sizes = await chunkSizes(() => reader.read());
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1024 * 1024);
    expect(sizes.length).toBeLessThanOrEqual(8);
  });

  it("skips a zero-length source chunk (a reader on it would never move on)", async () => {
    const list = [new Uint8Array(1000), new Uint8Array(0), new Uint8Array(1000), new Uint8Array(1000)];
    let i = 0;
    const source = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (i >= list.length) return controller.close();
          controller.enqueue(list[i++] as Uint8Array);
        },
      },
      { highWaterMark: 0 },
    );
    const broadcast = new Broadcast(source, { windowBytes: 1 << 20, stallMs: 10_000 });
    await broadcast.done;
    const reader = broadcast.join().getReader();
    let bytes = 0;
    let reads = 0;
    for (let next = await reader.read(); !next.done && reads < 100; next = await reader.read(), reads++) {
      bytes += next.value.byteLength;
    }
    expect({ bytes, reads }).toEqual({ bytes: 3000, reads: 3 });
  });

  it("errors a detached reader that has nowhere to resume from", async () => {
    const { stream } = source(30, 1000);
    const broadcast = new Broadcast(stream, { windowBytes: 4000, stallMs: 30 });
    const stuck = broadcast.join().getReader();
    await stuck.read();
    await readAll(broadcast.join());
    await expect(stuck.read()).rejects.toBeInstanceOf(DetachedError);
  });

  it("errors every reader when the source breaks off", async () => {
    let sent = 0;
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += 1;
        if (sent > 3) controller.error(new Error("cut"));
        else controller.enqueue(new Uint8Array(10));
      },
    });
    const broadcast = new Broadcast(broken, { windowBytes: 100, stallMs: 1000 });
    const readers = [broadcast.join(), broadcast.join()];
    for (const reader of readers) await expect(readAll(reader)).rejects.toThrow("cut");
  });
});
