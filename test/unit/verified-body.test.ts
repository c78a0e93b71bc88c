import { describe, expect, it } from "vitest";
import { sha256Digest } from "../../src/core/streams";
import {
  checkedBody,
  DamagedEntryError,
  takeWhole,
  verifiedBody,
  verifiedWhole,
  WHOLE_CHECK_MAX_BYTES,
} from "../../src/core/verified-body";
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

/** Like `checked`, through `verifiedWhole`. */
function checkedWhole(
  chunks: (number[] | Uint8Array)[],
  expected: { length: number; digest?: string },
  sourceError?: Error,
) {
  const reports: DamagedEntryError[] = [];
  const src = source(chunks, sourceError);
  const stream = verifiedWhole(src.stream, { length: expected.length, digest: expected.digest ?? "" }, (error) =>
    reports.push(error),
  );
  return { stream, reports, src };
}

describe("verifiedWhole", () => {
  it("hands an intact body on as one chunk, after the source has ended and the digest matched", async () => {
    const { stream, reports, src } = checkedWhole(IN_CHUNKS, {
      length: 9,
      digest: await sha256Digest(new Uint8Array(BODY)),
    });
    expect(src.pulls()).toBe(0);
    const reader = stream.getReader();
    const first = await reader.read();
    expect([...(first.value ?? [])]).toEqual(BODY);
    expect(src.pulls()).toBeGreaterThanOrEqual(4);
    expect((await reader.read()).done).toBe(true);
    expect(reports).toEqual([]);
  });

  it("passes nothing on from a body whose bytes do not hash to its digest", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const { stream, reports } = checkedWhole(
      [
        [1, 2, 3],
        [4, 0xff, 6],
        [7, 8, 9],
      ],
      { length: 9, digest },
    );
    const { received, error } = await consume(stream);
    expect(received).toEqual([]);
    expect(error).toMatchObject({ name: "DamagedEntryError", damage: "digest" });
    expect(String((error as Error).message)).toMatch(/hashes to/);
    expect(reports.map((r) => r.damage)).toEqual(["digest"]);
  });

  it("errors a short body and a long one, passing nothing on", async () => {
    const short = checkedWhole(IN_CHUNKS.slice(0, 2), { length: 9 });
    expect(await consume(short.stream)).toMatchObject({ received: [], error: { damage: "short" } });
    expect(short.reports.map((r) => r.damage)).toEqual(["short"]);
    const long = checkedWhole([...IN_CHUNKS, [10], [11]], { length: 9 });
    const { received, error } = await consume(long.stream);
    expect(received).toEqual([]);
    expect(error).toMatchObject({ damage: "long" });
    expect(long.reports.map((r) => r.damage)).toEqual(["long"]);
  });

  it("reports a source's DamagedEntryError, passes on any other source error as it is", async () => {
    const missing = new DamagedEntryError("missing-part", "chunk 1 of 3 is missing");
    const a = checkedWhole(IN_CHUNKS.slice(0, 1), { length: 9 }, missing);
    expect(await consume(a.stream)).toEqual({ received: [], error: missing });
    expect(a.reports).toEqual([missing]);
    const reset = new Error("connection reset");
    const b = checkedWhole(IN_CHUNKS.slice(0, 1), { length: 9 }, reset);
    expect(await consume(b.stream)).toEqual({ received: [], error: reset });
    expect(b.reports).toEqual([]);
  });

  it("passes an empty body, skips empty chunks, and treats a length that is not one as damage", async () => {
    const digest = await sha256Digest(new Uint8Array(0));
    expect(await consume(checkedWhole([], { length: 0, digest }).stream)).toEqual({ received: [] });
    expect(await consume(checkedWhole([[1, 2, 3], [], [4, 5, 6, 7, 8, 9]], { length: 9 }).stream)).toEqual({
      received: BODY,
    });
    const bad = checkedWhole(IN_CHUNKS, { length: -1 });
    expect(await consume(bad.stream)).toMatchObject({ received: [], error: { damage: "bad-record" } });
    expect(bad.reports).toHaveLength(1);
  });

  it("cancels the source when cancelled, read or not, without calling it damage", async () => {
    const unread = checkedWhole(IN_CHUNKS, { length: 9 });
    await unread.stream.cancel("HEAD");
    expect(unread.src.cancelled()).toBe("HEAD");
    expect(unread.src.pulls()).toBe(0);
    expect(unread.reports).toEqual([]);
  });
});

describe("checkedBody", () => {
  it("checks a small digested body whole, and streams a body without a digest or past the bound", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const flipped = [
      [1, 2, 3],
      [4, 0xff, 6],
      [7, 8, 9],
    ];
    const run = (expected: { length: number; digest: string }) =>
      consume(checkedBody(source(flipped).stream, expected, () => {}));
    // Whole: nothing of a damaged body goes on. Streamed: what came before the last chunk does.
    expect((await run({ length: 9, digest })).received).toEqual([]);
    expect((await run({ length: 9, digest: "" })).received).toEqual([1, 2, 3, 4, 0xff, 6, 7, 8, 9]);
    const large = await run({ length: WHOLE_CHECK_MAX_BYTES + 1, digest });
    expect(large.received).toEqual([1, 2, 3, 4, 0xff, 6, 7, 8, 9]);
    expect(large.error).toMatchObject({ damage: "short" });
  });
});

describe("takeWhole", () => {
  it("gives an unread verifiedWhole stream's checked bytes once, and nothing for any other stream", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const { stream, reports } = checkedWhole(IN_CHUNKS, { length: 9, digest });
    const read = takeWhole(stream);
    expect(read).toBeDefined();
    expect(takeWhole(stream)).toBeUndefined();
    expect([...((await read?.()) ?? [])]).toEqual(BODY);
    expect(reports).toEqual([]);
    expect(takeWhole(source(IN_CHUNKS).stream)).toBeUndefined();
    const streamed = checked(IN_CHUNKS, { length: 9, digest });
    expect(takeWhole(streamed.stream)).toBeUndefined();
  });

  it("rejects with the damage, reported once, and is not offered for a stream already being read", async () => {
    const digest = await sha256Digest(new Uint8Array(BODY));
    const damagedOne = checkedWhole(
      [
        [1, 2, 3],
        [4, 0xff, 6],
        [7, 8, 9],
      ],
      { length: 9, digest },
    );
    await expect(takeWhole(damagedOne.stream)?.()).rejects.toMatchObject({ damage: "digest" });
    expect(damagedOne.reports.map((r) => r.damage)).toEqual(["digest"]);
    const reading = checkedWhole(IN_CHUNKS, { length: 9, digest });
    const reader = reading.stream.getReader();
    expect(takeWhole(reading.stream)).toBeUndefined();
    expect([...((await reader.read()).value ?? [])]).toEqual(BODY);
  });
});
