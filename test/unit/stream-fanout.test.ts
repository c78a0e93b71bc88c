import { describe, expect, it } from "vitest";
import { MemoryBudget } from "../../src/core/memory-budget";
import { BodyLengthMismatchError, FellBehindError, fanOut, verifyLength } from "../../src/core/stream-fanout";
import { concat, readAll } from "../../src/core/streams";

const LIMIT = 1 << 24;

/** `count` chunks of `size` bytes, each filled with its own index so that order and identity show. */
function chunksOf(count: number, size: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(size).fill(i % 256));
}

interface CountingSource {
  stream: ReadableStream<Uint8Array>;
  /** Chunks handed out so far: with a high-water mark of 0 the source reads nothing ahead of its reader. */
  pulls(): number;
  cancels: unknown[];
}

/** A source that produces `chunks` one per pull and then ends, or errors with `failWith` instead of ending. */
function countingSource(chunks: Uint8Array[], failWith?: unknown): CountingSource {
  let pulls = 0;
  const cancels: unknown[] = [];
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const chunk = chunks[pulls];
        if (chunk) {
          pulls++;
          controller.enqueue(chunk);
        } else if (failWith === undefined) controller.close();
        else controller.error(failWith);
      },
      cancel(reason) {
        cancels.push(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulls: () => pulls, cancels };
}

/** Lets pending promise chains run; bounded, and no timers. */
async function settle(): Promise<void> {
  for (let i = 0; i < 200; i++) await Promise.resolve();
}

type Read = Promise<ReadableStreamReadResult<Uint8Array>>;

/**
 * Reads until the stream ends or a read is still pending once everything has settled (starting with
 * `carried`, a read left pending by an earlier call). Returns the chunks read and the pending read, if any.
 */
async function readUntilStalled(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  carried?: Read,
): Promise<{ got: Uint8Array[]; ended: boolean; pending: Read | undefined }> {
  const got: Uint8Array[] = [];
  let read = carried ?? reader.read();
  for (;;) {
    let result: ReadableStreamReadResult<Uint8Array> | undefined;
    read.then(
      (r) => {
        result = r;
      },
      () => {}, // a rejection is the caller's to see, through `pending`
    );
    await settle();
    if (!result) return { got, ended: false, pending: read };
    if (result.done) return { got, ended: true, pending: undefined };
    got.push(result.value);
    read = reader.read();
  }
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("fanOut", () => {
  it.each([0, -1, 1.5, Number.NaN])("refuses %s branches", (count) => {
    expect(() => fanOut(countingSource([]).stream, count)).toThrow(RangeError);
  });

  it("returns the source itself for one branch", async () => {
    const source = countingSource(chunksOf(3, 4));
    const branches = fanOut(source.stream, 1);
    expect(branches).toHaveLength(1);
    expect(branches[0]).toBe(source.stream);
    expect(await readAll(source.stream, LIMIT)).toEqual(concat(chunksOf(3, 4)));
  });

  it("gives each of three branches the same bytes, chunk by chunk in order", async () => {
    const chunks = chunksOf(20, 64);
    const source = countingSource(chunks);
    const branches = fanOut(source.stream, 3);
    expect(branches).toHaveLength(3);
    expect(source.stream.locked).toBe(true);

    const bodies = await Promise.all(branches.map((branch) => readAll(branch, LIMIT)));
    for (const body of bodies) expect(body).toEqual(concat(chunks));
    expect(source.pulls()).toBe(20);
    expect(source.cancels).toEqual([]);
  });

  it("feeds branches that the runtime itself consumes as response bodies", async () => {
    const chunks = chunksOf(50, 64);
    const [a, b] = fanOut(countingSource(chunks).stream, 2);
    const [bodyA, bodyB] = await Promise.all([new Response(a).arrayBuffer(), new Response(b).arrayBuffer()]);
    expect(new Uint8Array(bodyA)).toEqual(concat(chunks));
    expect(new Uint8Array(bodyB)).toEqual(concat(chunks));
  });

  it("closes every branch at once for an empty source", async () => {
    const branches = fanOut(countingSource([]).stream, 3);
    const results = await Promise.all(branches.map((branch) => branch.getReader().read()));
    expect(results).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
  });

  describe("bounded buffering", () => {
    it("reads the source no more than one chunk ahead of a branch that is never read", async () => {
      const source = countingSource(chunksOf(100, 1024));
      const [fast] = fanOut(source.stream, 2) as [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>];

      const { got, ended } = await readUntilStalled(fast.getReader());
      // The unread branch holds chunk 0 in its one-chunk queue; nothing more is read until it takes it.
      expect(ended).toBe(false);
      expect(got).toEqual([new Uint8Array(1024).fill(0)]);
      expect(source.pulls()).toBe(1);
    });

    it("guards against what ReadableStream.tee does: read the whole body for the fast branch", async () => {
      // The same source and reading, through tee: the fast branch finishes and the unread one holds it all.
      const source = countingSource(chunksOf(100, 1024));
      const [fast] = source.stream.tee();
      const { got, ended } = await readUntilStalled(fast.getReader());
      expect(ended).toBe(true);
      expect(got).toHaveLength(100);
      expect(source.pulls()).toBe(100);
    });

    it("lets the fast branch go on only as the slow one catches up, one chunk ahead at most", async () => {
      const chunks = chunksOf(30, 64);
      const source = countingSource(chunks);
      const [fast, slow] = fanOut(source.stream, 2) as [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>];
      const fastReader = fast.getReader();
      const slowReader = slow.getReader();

      let step = await readUntilStalled(fastReader);
      const fastGot = [...step.got];
      let slowRead = 0;
      for (;;) {
        const { done, value } = await slowReader.read();
        if (done) break;
        expect(value).toBe(chunks[slowRead]);
        slowRead++;
        step = await readUntilStalled(fastReader, step.pending);
        fastGot.push(...step.got);
        expect(fastGot.length - slowRead).toBeLessThanOrEqual(1);
        expect(source.pulls() - slowRead).toBeLessThanOrEqual(1);
      }
      expect(slowRead).toBe(30);
      expect(step.ended).toBe(true);
      expect(fastGot).toEqual(chunks);
      expect(source.pulls()).toBe(30);
    });
  });

  describe("cancelling", () => {
    it("drops a cancelled branch and lets the others finish without cancelling the source", async () => {
      const chunks = chunksOf(10, 100);
      const source = countingSource(chunks);
      const [a, b, c] = fanOut(source.stream, 3) as ReadableStream<Uint8Array>[];
      const aReader = (a as ReadableStream<Uint8Array>).getReader();
      await aReader.read();
      await aReader.cancel("client went away");

      const [bodyB, bodyC] = await Promise.all([
        readAll(b as ReadableStream<Uint8Array>, LIMIT),
        readAll(c as ReadableStream<Uint8Array>, LIMIT),
      ]);
      expect(bodyB).toEqual(concat(chunks));
      expect(bodyC).toEqual(concat(chunks));
      expect(source.cancels).toEqual([]);
    });

    it("un-stalls the others when the branch holding them back is cancelled", async () => {
      const chunks = chunksOf(10, 100);
      const source = countingSource(chunks);
      const [fast, slow] = fanOut(source.stream, 2) as [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>];
      const fastReader = fast.getReader();
      const { got, ended, pending } = await readUntilStalled(fastReader);
      expect(ended).toBe(false);
      await slow.cancel("store gave up");

      const rest: Uint8Array[] = [];
      let result = await (pending as Read);
      while (!result.done) {
        rest.push(result.value);
        result = await fastReader.read();
      }
      expect([...got, ...rest]).toEqual(chunks);
      expect(source.cancels).toEqual([]);
    });

    it("cancels the source once, with the last reason, when every branch is cancelled", async () => {
      const source = countingSource(chunksOf(10, 100));
      const [a, b, c] = fanOut(source.stream, 3) as [
        ReadableStream<Uint8Array>,
        ReadableStream<Uint8Array>,
        ReadableStream<Uint8Array>,
      ];
      await a.cancel("first");
      await b.cancel("second");
      await settle();
      expect(source.cancels).toEqual([]);
      await c.cancel("last");
      expect(source.cancels).toEqual(["last"]);
    });
  });

  describe("source errors", () => {
    it("errors every open branch with the source's error", async () => {
      const boom = new Error("origin reset");
      const source = countingSource(chunksOf(3, 10), boom);
      const [a, b, c] = fanOut(source.stream, 3) as [
        ReadableStream<Uint8Array>,
        ReadableStream<Uint8Array>,
        ReadableStream<Uint8Array>,
      ];
      await c.cancel("not needed");
      const errors = await Promise.all([errorOf(readAll(a, LIMIT)), errorOf(readAll(b, LIMIT))]);
      expect(errors).toEqual([boom, boom]);
      expect(errors[0]).toBe(boom);
      expect(source.pulls()).toBe(3);
      expect(source.cancels).toEqual([]);
    });

    it("errors branches that nobody has started reading", async () => {
      const boom = new Error("origin reset");
      const branches = fanOut(countingSource([], boom).stream, 2);
      const errors = await Promise.all(branches.map((branch) => errorOf(branch.getReader().closed)));
      expect(errors).toEqual([boom, boom]);
    });
  });
});

describe("fanOut with followers (stores behind the client)", () => {
  it("reads at the client's pace while a follower that does not read queues within its look-ahead", async () => {
    const source = countingSource(chunksOf(4, 10));
    const budget = new MemoryBudget(1000);
    const [client, store] = fanOut(source.stream, 2, { followers: [1], lookAheadBytes: 40, budget }) as [
      ReadableStream<Uint8Array>,
      ReadableStream<Uint8Array>,
    ];
    const read = await readUntilStalled(client.getReader());
    // The client got everything though the store read nothing: the store holds it all, its stream's own
    // one-chunk queue plus 30 queued bytes out of the budget.
    expect(read.ended).toBe(true);
    expect(read.got.length).toBe(4);
    expect(budget.held).toBe(30);
    const stored = await readAll(store, LIMIT);
    expect(stored).toEqual(concat(chunksOf(4, 10)));
    expect(budget.held).toBe(0);
  });

  it("gives up a follower past its look-ahead, never the client, and frees what it held", async () => {
    const source = countingSource(chunksOf(6, 10));
    const budget = new MemoryBudget(1000);
    const behind: number[] = [];
    const [client, store] = fanOut(source.stream, 2, {
      followers: [1],
      lookAheadBytes: 25,
      budget,
      onFellBehind: (index) => behind.push(index),
    }) as [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>];
    expect(await readAll(client, LIMIT)).toEqual(concat(chunksOf(6, 10)));
    expect(behind).toEqual([1]);
    expect(budget.held).toBe(0);
    expect(await errorOf(readAll(store, LIMIT))).toBeInstanceOf(FellBehindError);
  });

  it("lets the followers pace the source while followersPace says so (nobody waits on the pacing branch)", async () => {
    const source = countingSource(chunksOf(6, 10));
    const behind: number[] = [];
    const [client, store] = fanOut(source.stream, 2, {
      followers: [1],
      lookAheadBytes: 25,
      onFellBehind: (index) => behind.push(index),
      followersPace: () => true,
    }) as [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>];
    // The pacing branch reads as fast as it can, the follower not yet: the source waits for the follower.
    const clientReader = client.getReader();
    const first = await readUntilStalled(clientReader);
    expect(first.got.length).toBe(1);
    expect(source.pulls()).toBe(1);
    // Once the follower reads, both get every byte and the follower never gives up (past its look-ahead).
    const [rest, stored] = await Promise.all([readUntilStalled(clientReader, first.pending), readAll(store, LIMIT)]);
    expect(stored).toEqual(concat(chunksOf(6, 10)));
    expect(concat([...first.got, ...rest.got]).byteLength).toBeGreaterThan(10);
    expect(behind).toEqual([]);
  });

  it("gives up a follower when the budget has no room, even within its look-ahead", async () => {
    const source = countingSource(chunksOf(3, 10));
    const budget = new MemoryBudget(15);
    const [client, store] = fanOut(source.stream, 2, { followers: [1], lookAheadBytes: 1000, budget }) as [
      ReadableStream<Uint8Array>,
      ReadableStream<Uint8Array>,
    ];
    expect((await readAll(client, LIMIT)).byteLength).toBe(30);
    expect(await errorOf(readAll(store, LIMIT))).toBeInstanceOf(FellBehindError);
    expect(budget.held).toBe(0);
  });

  it("lets the followers pace the source once the client is gone", async () => {
    const source = countingSource(chunksOf(50, 10));
    const [client, store] = fanOut(source.stream, 2, { followers: [1], lookAheadBytes: 20 }) as [
      ReadableStream<Uint8Array>,
      ReadableStream<Uint8Array>,
    ];
    const reader = client.getReader();
    await reader.read();
    await reader.cancel("client went away");
    // The store was never more than its look-ahead behind, and now reads the rest at its own pace.
    expect(await readAll(store, LIMIT)).toEqual(concat(chunksOf(50, 10)));
    expect(source.cancels).toEqual([]);
  });
});

describe("verifyLength", () => {
  it.each([-1, 1.5, Number.NaN])("refuses an expected length of %s", (expected) => {
    expect(() => verifyLength(expected)).toThrow(RangeError);
  });

  it("passes a body of exactly the expected length through and counts it", async () => {
    const chunks = chunksOf(4, 25);
    const check = verifyLength(100);
    const body = await readAll(countingSource(chunks).stream.pipeThrough(check), LIMIT);
    expect(body).toEqual(concat(chunks));
    expect(check.bytes()).toBe(100);
  });

  it("accepts an empty body when it expects none", async () => {
    const check = verifyLength(0);
    expect(await readAll(countingSource([]).stream.pipeThrough(check), LIMIT)).toEqual(new Uint8Array(0));
    expect(check.bytes()).toBe(0);
  });

  it("only counts when no length is expected", async () => {
    const check = verifyLength(undefined);
    const body = await readAll(countingSource(chunksOf(7, 13)).stream.pipeThrough(check), LIMIT);
    expect(body.byteLength).toBe(91);
    expect(check.bytes()).toBe(91);
  });

  it("errors at the end of a body that is too short", async () => {
    const check = verifyLength(100);
    const reader = countingSource(chunksOf(3, 25)).stream.pipeThrough(check).getReader();
    for (let i = 0; i < 3; i++) expect((await reader.read()).done).toBe(false);
    const error = await errorOf(reader.read());
    expect(error).toBeInstanceOf(BodyLengthMismatchError);
    expect(error).toMatchObject({ expected: 100, received: 75 });
    expect(check.bytes()).toBe(75);
  });

  it("errors on the chunk that overruns, withholds it, and cancels the source", async () => {
    const source = countingSource(chunksOf(10, 4));
    const check = verifyLength(6);
    const reader = source.stream.pipeThrough(check).getReader();
    const first = await reader.read();
    expect(first.value).toEqual(new Uint8Array(4).fill(0));
    const error = await errorOf(reader.read());
    expect(error).toBeInstanceOf(BodyLengthMismatchError);
    expect(error).toMatchObject({ expected: 6, received: 8 });
    await settle();
    expect(source.cancels).toEqual([error]);
    expect(source.pulls()).toBeLessThanOrEqual(3);
  });

  it("makes a consumer that needs the whole body fail, short or long", async () => {
    const short = countingSource(chunksOf(3, 25)).stream.pipeThrough(verifyLength(100));
    const long = countingSource(chunksOf(5, 25)).stream.pipeThrough(verifyLength(100));
    expect(await errorOf(readAll(short, LIMIT))).toBeInstanceOf(BodyLengthMismatchError);
    expect(await errorOf(new Response(long).arrayBuffer())).toBeDefined();
  });
});
