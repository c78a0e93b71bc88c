import { describe, expect, it } from "vitest";
import { concat, forClient, sha256Digest, teeStream } from "../../src/core/streams";
import { DamagedEntryError, PUMP_BUFFER_BYTES, verifiedPumped } from "../../src/core/verified-body";
import { source } from "../support/streams";

/** Reads a stream as a client would: what arrived, and how it ended. */
async function consume(stream: ReadableStream<Uint8Array>): Promise<{ received: Uint8Array; error?: unknown }> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  const joined = () => concat(chunks);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { received: joined() };
      // Copied: a chunk a runtime stream hands out is the reader's own, but the test keeps no view on a buffer.
      chunks.push(value.slice());
    }
  } catch (error) {
    return { received: joined(), error };
  }
}

/** A body of `size` bytes whose every byte depends on its offset (a reused buffer would show). */
function pattern(size: number, seed = 0): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed + (i >> 12)) & 0xff);
}

/** A runtime byte stream over `bytes` (what a tier hands back: BYOB reads are possible). */
function runtimeBody(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new Response(bytes).body as ReadableStream<Uint8Array>;
}

/** A verifiedPumped stream over `body`, with its damage reports and whether it was checked. */
function pumped(body: ReadableStream<Uint8Array>, expected: { length: number; digest?: string }) {
  const reports: DamagedEntryError[] = [];
  let checked = 0;
  const stream = verifiedPumped(
    body,
    { length: expected.length, digest: expected.digest ?? "" },
    (error) => reports.push(error),
    () => checked++,
  );
  return { stream, reports, checked: () => checked };
}

/** Waits until `done()` holds (the pump runs on its own): bounded, never a bare sleep. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

const SIZE = 3 * PUMP_BUFFER_BYTES + 12_345;

describe("verifiedPumped", () => {
  it("hands a clean runtime body on byte for byte, through the two reused buffers, with and without a digest", async () => {
    const body = pattern(SIZE);
    for (const digest of ["", await sha256Digest(body)]) {
      const { stream, reports, checked } = pumped(runtimeBody(body), { length: SIZE, digest });
      const { received, error } = await consume(stream);
      expect(error).toBeUndefined();
      expect(received.byteLength).toBe(SIZE);
      expect(received.every((byte, i) => byte === body[i])).toBe(true);
      expect(reports).toEqual([]);
      expect(checked()).toBe(1);
    }
  });

  it("hands a clean body on from a source that is not a byte stream, and an empty one", async () => {
    const body = pattern(100_000, 7);
    const chunks = [body.slice(0, 40_000), new Uint8Array(0), body.slice(40_000)];
    const { stream, reports } = pumped(source(chunks).stream, { length: body.byteLength });
    const { received, error } = await consume(stream);
    expect(error).toBeUndefined();
    expect(received.every((byte, i) => byte === body[i]) && received.byteLength === body.byteLength).toBe(true);
    expect(reports).toEqual([]);
    const empty = pumped(source([]).stream, { length: 0, digest: await sha256Digest(new Uint8Array(0)) });
    expect(await consume(empty.stream)).toEqual({ received: new Uint8Array(0) });
    expect(empty.checked()).toBe(1);
  });

  it("reads ahead of a slow consumer by at most the buffers it reuses, and never overwrites a chunk not yet taken", async () => {
    const body = pattern(SIZE, 3);
    const { stream, reports } = pumped(runtimeBody(body), { length: SIZE });
    const reader = stream.getReader();
    const chunks: Uint8Array[] = [];
    for (;;) {
      // The consumer lags: each chunk is kept as the runtime handed it and compared only at the end.
      await new Promise((resolve) => setTimeout(resolve, 2));
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const received = new Uint8Array(SIZE);
    let at = 0;
    for (const chunk of chunks) {
      received.set(chunk, at);
      at += chunk.byteLength;
    }
    expect(at).toBe(SIZE);
    expect(received.every((byte, i) => byte === body[i])).toBe(true);
    expect(reports).toEqual([]);
  });

  it("errors a short body at its end, after handing on what there was, and reports it", async () => {
    const body = pattern(SIZE);
    const { stream, reports, checked } = pumped(runtimeBody(body.slice(0, SIZE - 1000)), { length: SIZE });
    const { received, error } = await consume(stream);
    expect(String(error)).toMatch(/stored body ended after/);
    expect(received.byteLength).toBeLessThan(SIZE);
    expect(reports.map((r) => r.damage)).toEqual(["short"]);
    expect(reports[0]).toBeInstanceOf(DamagedEntryError);
    expect(checked()).toBe(0);
  });

  it("errors a long body without ever handing on the whole length, and reports it", async () => {
    const body = pattern(SIZE);
    // The source's first chunk completes the length, the next overruns it: the completing chunk is held back.
    const exact = source([body, new Uint8Array([1])]);
    const one = pumped(exact.stream, { length: SIZE });
    const first = await consume(one.stream);
    expect(first.error).toBeDefined();
    expect(first.received.byteLength).toBe(0);
    expect(one.reports.map((r) => r.damage)).toEqual(["long"]);
    expect(exact.cancelled()).toBeInstanceOf(DamagedEntryError);
    const runtime = pumped(runtimeBody(pattern(SIZE + 5)), { length: SIZE });
    const second = await consume(runtime.stream);
    expect(second.error).toBeDefined();
    expect(second.received.byteLength).toBeLessThan(SIZE);
    expect(runtime.reports.map((r) => r.damage)).toEqual(["long"]);
  });

  it("errors a body of the right length that does not hash to its digest, holding back its last chunk", async () => {
    const body = pattern(SIZE);
    const digest = await sha256Digest(body);
    const flipped = body.slice();
    flipped[SIZE - 10] = (flipped[SIZE - 10] ?? 0) ^ 0xff;
    const { stream, reports, checked } = pumped(runtimeBody(flipped), { length: SIZE, digest });
    const { received, error } = await consume(stream);
    expect(error).toBeDefined();
    expect(received.byteLength).toBeLessThan(SIZE);
    expect(reports.map((r) => r.damage)).toEqual(["digest"]);
    expect(checked()).toBe(0);
  });

  it("reports a source's DamagedEntryError, passes on any other source error without calling it damage", async () => {
    const missing = new DamagedEntryError("missing-part", "chunk 1 of 3 is missing");
    const a = pumped(source([[1, 2, 3]], missing).stream, { length: 9 });
    const gotA = await consume(a.stream);
    expect(gotA.error).toBeDefined();
    // A chunk still in flight when the runtime stream is aborted may be dropped: never more than what came.
    expect([...gotA.received]).toEqual([1, 2, 3].slice(0, gotA.received.byteLength));
    // The runtime's error, carrying the damage's message.
    expect(String(gotA.error)).toMatch(/chunk 1 of 3 is missing/);
    expect(a.reports).toEqual([missing]);
    const b = pumped(source([[1, 2, 3]], new Error("connection reset")).stream, { length: 9 });
    const gotB = await consume(b.stream);
    expect(gotB.error).toBeDefined();
    expect(b.reports).toEqual([]);
  });

  it("cancels the source when the consumer cancels, without calling it damage", async () => {
    const chunks = Array.from({ length: 8 }, (_, i) => pattern(1000, i));
    const src = source(chunks);
    const { stream, reports } = pumped(src.stream, { length: 8000 });
    const reader = stream.getReader();
    expect((await reader.read()).done).toBe(false);
    await reader.cancel("client went away");
    await until(() => src.cancelled() !== undefined);
    expect(src.cancelled()).toBeDefined();
    expect(src.pulls()).toBeLessThan(8);
    expect(reports).toEqual([]);
  });

  it("reads no more than its first chunk of a body whose answer never reads it (HEAD, 304)", async () => {
    // A short body: read to its end, it would be reported; cancelled unread, it is not.
    const src = source([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const { stream, reports } = pumped(src.stream, { length: 9 });
    await stream.cancel("HEAD");
    await until(() => src.cancelled() !== undefined);
    expect(src.cancelled()).toBeDefined();
    expect(src.pulls()).toBeLessThanOrEqual(1);
    expect(reports).toEqual([]);
  });

  it("goes to a client's answer as it is, and so do its branches (the runtime pipes none into a FixedLengthStream)", async () => {
    const body = pattern(SIZE, 5);
    const whole = pumped(runtimeBody(body), { length: SIZE });
    expect(forClient(whole.stream, SIZE)).toBe(whole.stream);
    const split = pumped(runtimeBody(body), { length: SIZE });
    const [client, copy] = teeStream(split.stream);
    expect(forClient(client, SIZE)).toBe(client);
    const [a, b] = await Promise.all([consume(forClient(client, SIZE)), consume(copy)]);
    for (const { received, error } of [a, b]) {
      expect(error).toBeUndefined();
      expect(received.byteLength === SIZE && received.every((byte, i) => byte === body[i])).toBe(true);
    }
  });

  it("treats a record whose length is not a length as damage", async () => {
    const { stream, reports } = pumped(source([[1, 2, 3]]).stream, { length: -1 });
    expect(await consume(stream)).toMatchObject({ error: { damage: "bad-record" } });
    expect(reports.map((r) => r.damage)).toEqual(["bad-record"]);
  });

  it("hands every byte right to a consumer reading small BYOB views slowly, and to tee branches", async () => {
    const size = SIZE;
    const body = pattern(size);
    /** Reads with a BYOB reader into `view`-byte buffers, pausing every `lagEvery` reads. */
    const byob = async (stream: ReadableStream<Uint8Array>, view: number, lagEvery: number) => {
      const reader = stream.getReader({ mode: "byob" });
      const out = new Uint8Array(size);
      let at = 0;
      let buffer = new ArrayBuffer(view);
      for (let reads = 1; ; reads++) {
        if (reads % lagEvery === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        const { done, value } = await reader.read(new Uint8Array(buffer));
        if (done || !value) break;
        out.set(value, at);
        at += value.byteLength;
        buffer = value.buffer as ArrayBuffer;
      }
      return out.subarray(0, at);
    };
    // Compared byte by byte (a deep equality of large arrays is slow to fail and to pass).
    const same = (bytes: Uint8Array) => bytes.byteLength === size && bytes.every((byte, i) => byte === body[i]);
    expect(same(await byob(pumped(runtimeBody(body), { length: size }).stream, 1000, 50))).toBe(true);
    const [a, b] = teeStream(pumped(runtimeBody(body), { length: size }).stream);
    const [fromA, fromB] = await Promise.all([byob(a, 4096, 5), new Response(b).arrayBuffer()]);
    expect(same(fromA)).toBe(true);
    expect(same(new Uint8Array(fromB))).toBe(true);
  });
});
