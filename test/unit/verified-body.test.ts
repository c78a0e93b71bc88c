import { describe, expect, it } from "vitest";
import { sha256Digest } from "../../src/core/streams";
import { type DamagedEntryError, verifiedBody } from "../../src/core/verified-body";
import { source } from "../support/streams";

/** Reads a checked stream as a client would: what arrived, and how the stream ended. */
async function consume(stream: ReadableStream<Uint8Array>): Promise<{ received: number[]; error?: unknown }> {
  const received: number[] = [];
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { received };
      received.push(...value);
    }
  } catch (error) {
    return { received, error };
  }
}

/** A checked stream over `chunks`, with the damage reports it made. */
function checked(
  chunks: (number[] | Uint8Array)[],
  expected: { length: number; digest?: string },
  sourceError?: Error,
) {
  const reports: DamagedEntryError[] = [];
  const src = source(chunks, sourceError);
  const stream = verifiedBody(src.stream, { length: expected.length, digest: expected.digest ?? "" }, (error) =>
    reports.push(error),
  );
  return { stream, reports, src };
}

const BODY = [1, 2, 3, 4, 5, 6, 7, 8, 9];
const IN_CHUNKS = [
  [1, 2, 3],
  [4, 5, 6],
  [7, 8, 9],
];

describe("verifiedBody", () => {
  it("passes an intact body through unchanged and reports nothing", async () => {
    const { stream, reports } = checked(IN_CHUNKS, { length: 9, digest: await sha256Digest(new Uint8Array(BODY)) });
    expect(await consume(stream)).toEqual({ received: BODY });
    expect(reports).toEqual([]);
  });

  it("passes an intact empty body, with and without its digest", async () => {
    const digest = await sha256Digest(new Uint8Array(0));
    expect(await consume(checked([], { length: 0, digest }).stream)).toEqual({ received: [] });
    expect(await consume(checked([[]], { length: 0 }).stream)).toEqual({ received: [] });
  });

  it("errors a body that ends short of its record, after passing on what there was", async () => {
    const { stream, reports } = checked(IN_CHUNKS.slice(0, 2), { length: 9 });
    const { received, error } = await consume(stream);
    expect(received).toEqual([1, 2, 3, 4, 5, 6]);
    expect(error).toMatchObject({ name: "DamagedEntryError", damage: "short" });
    expect(reports.map((r) => r.damage)).toEqual(["short"]);
  });

  it("errors a longer body on the chunk that overruns, which is not passed on, and cancels the source", async () => {
    const { stream, reports, src } = checked([...IN_CHUNKS, [10], [11]], { length: 9 });
    const { received, error } = await consume(stream);
    // The chunk that completed the 9 bytes was held back: the consumer never saw a whole-looking body.
    expect(received).toEqual([1, 2, 3, 4, 5, 6]);
    expect(error).toMatchObject({ damage: "long" });
    expect(reports).toHaveLength(1);
    expect(src.cancelled()).toBe(error);
    expect(src.pulls()).toBe(4);
  });

  it("errors a body with bytes past a length of zero", async () => {
    const { stream, reports } = checked([[0]], { length: 0 });
    expect(await consume(stream)).toMatchObject({ received: [], error: { damage: "long" } });
    expect(reports).toHaveLength(1);
  });

  it("errors a body of the right length whose bytes do not hash to the recorded digest", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const flipped = [
      [1, 2, 3],
      [4, 0xff, 6],
      [7, 8, 9],
    ];
    const { stream, reports } = checked(flipped, { length: 9, digest });
    const { received, error } = await consume(stream);
    // Never all 9 bytes: the last chunk waits for the digest.
    expect(received).toEqual([1, 2, 3, 4, 0xff, 6]);
    expect(error).toMatchObject({ damage: "digest" });
    expect(reports.map((r) => r.damage)).toEqual(["digest"]);
  });

  it("holds back the completing chunk when the whole body is one chunk", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const wrong = checked([[...BODY.slice(0, 8), 0]], { length: 9, digest });
    expect(await consume(wrong.stream)).toMatchObject({ received: [], error: { damage: "digest" } });
    const right = checked([BODY], { length: 9, digest });
    expect(await consume(right.stream)).toEqual({ received: BODY });
  });

  it("checks the length only when no digest is recorded (or another algorithm is)", async () => {
    const flipped = [
      [1, 2, 3],
      [4, 0xff, 6],
      [7, 8, 9],
    ];
    expect(await consume(checked(flipped, { length: 9 }).stream)).toEqual({ received: [1, 2, 3, 4, 0xff, 6, 7, 8, 9] });
    const other = checked(flipped, { length: 9, digest: "sha-512=:AAAA:" });
    expect(await consume(other.stream)).toEqual({ received: [1, 2, 3, 4, 0xff, 6, 7, 8, 9] });
  });

  it("skips empty chunks without counting or stalling", async () => {
    const { stream } = checked([[1, 2, 3], [], [4, 5, 6], [], [7, 8, 9], []], { length: 9 });
    expect(await consume(stream)).toEqual({ received: BODY });
  });

  it("reports a DamagedEntryError raised by the source itself (a tier's missing part)", async () => {
    const { DamagedEntryError } = await import("../../src/core/verified-body");
    const missing = new DamagedEntryError("missing-part", "chunk 1 of 3 is missing");
    const { stream, reports } = checked(IN_CHUNKS.slice(0, 1), { length: 9 }, missing);
    expect(await consume(stream)).toEqual({ received: [1, 2, 3], error: missing });
    expect(reports).toEqual([missing]);
  });

  it("passes on any other source error without calling it damage", async () => {
    const reset = new Error("connection reset");
    const { stream, reports } = checked(IN_CHUNKS.slice(0, 1), { length: 9 }, reset);
    expect(await consume(stream)).toEqual({ received: [1, 2, 3], error: reset });
    expect(reports).toEqual([]);
  });

  it("cancels the source when the consumer cancels, without calling it damage", async () => {
    const { stream, reports, src } = checked(IN_CHUNKS, { length: 9 });
    const reader = stream.getReader();
    expect([...((await reader.read()).value ?? [])]).toEqual([1, 2, 3]);
    await reader.cancel("client went away");
    expect(src.cancelled()).toBe("client went away");
    expect(reports).toEqual([]);
  });

  it("treats a record whose length is not a length as damage", async () => {
    const { stream, reports } = checked(IN_CHUNKS, { length: -1 });
    expect(await consume(stream)).toMatchObject({ received: [], error: { damage: "bad-record" } });
    expect(reports).toHaveLength(1);
  });

  it("reports once however it is read", async () => {
    const { stream, reports } = checked([[1, 2]], { length: 9 });
    const reader = stream.getReader();
    await reader.read();
    await expect(reader.read()).rejects.toMatchObject({ damage: "short" });
    await expect(reader.read()).rejects.toMatchObject({ damage: "short" });
    expect(reports).toHaveLength(1);
  });

  it("checks a body of many chunks against its digest, byte for byte", async () => {
    const big = new Uint8Array(1024 * 1024 + 7).map((_, i) => (i * 31) & 0xff);
    const digest = await sha256Digest(big);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < big.byteLength; i += 65_536) chunks.push(big.slice(i, i + 65_536));
    const { stream, reports } = checked(chunks, { length: big.byteLength, digest });
    const received = new Uint8Array(await new Response(stream).arrayBuffer());
    expect(received.byteLength).toBe(big.byteLength);
    expect(received.every((byte, i) => byte === big[i])).toBe(true);
    expect(reports).toEqual([]);
  });
});
