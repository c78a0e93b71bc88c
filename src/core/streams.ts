/** Small stream helpers the tiers and the store path share. Web Streams only. */

export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
}

/**
 * Reads a whole stream into one buffer, refusing (and cancelling the stream) past `limit` bytes. A stream
 * that errors rejects: a body that broke off is never mistaken for a complete one.
 */
export async function readAll(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel("body too large to store");
      throw new BodyTooLargeError(`body exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  return concat(chunks, total);
}

/**
 * Splits the first `size` bytes off a stream: returns them and a stream of the rest, which still reads
 * lazily from the original (nothing beyond the prefix is buffered).
 */
export async function splitPrefix(
  stream: ReadableStream<Uint8Array>,
  size: number,
): Promise<{ prefix: Uint8Array; rest: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let leftover: Uint8Array | undefined;
  while (total < size) {
    const { done, value } = await reader.read();
    if (done) {
      await reader.cancel();
      throw new Error(`stream ended after ${total} of ${size} prefix bytes`);
    }
    const need = size - total;
    if (value.byteLength > need) {
      chunks.push(value.subarray(0, need));
      leftover = value.subarray(need);
      total = size;
    } else {
      chunks.push(value);
      total += value.byteLength;
    }
  }
  const rest = new ReadableStream<Uint8Array>({
    start(controller) {
      if (leftover?.byteLength) controller.enqueue(leftover);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { prefix: concat(chunks, size), rest };
}

export function concat(chunks: Uint8Array[], total = chunks.reduce((n, c) => n + c.byteLength, 0)): Uint8Array {
  if (chunks.length === 1 && chunks[0]) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** A stream of one buffer. */
export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (bytes.byteLength) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** `sha-256=:<base64>:` (RFC 9530 §2 syntax) of a buffer. */
export async function sha256Digest(bytes: Uint8Array): Promise<string> {
  return sha256Field(await crypto.subtle.digest("SHA-256", bytes));
}

/** A raw SHA-256 digest as `sha-256=:<base64>:` (RFC 9530 §2, an sf-binary). */
export function sha256Field(raw: ArrayBuffer): string {
  const digest = new Uint8Array(raw);
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return `sha-256=:${btoa(binary)}:`;
}

/** Raised in a stream whose consumer stopped reading. */
export class StalledConsumerError extends Error {
  override readonly name = "StalledConsumerError";
}

/**
 * Wraps a stream so that a consumer that stops reading for `ms` does not hold it forever: the source is
 * cancelled and the wrapper errors. Used on the branches of a fan-out that feed tiers, so a hung tier
 * cannot stall the client's branch (the fan-out moves at the pace of its slowest branch).
 */
export function cancelIfStalled(source: ReadableStream<Uint8Array>, ms: number): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wrapper: ReadableStreamDefaultController<Uint8Array>;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const error = new StalledConsumerError(`consumer did not read for ${ms} ms`);
      reader.cancel(error).catch(() => {});
      wrapper.error(error);
    }, ms);
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        wrapper = controller;
        arm();
      },
      async pull(controller) {
        clearTimeout(timer);
        try {
          const { done, value } = await reader.read();
          if (done) return controller.close();
          controller.enqueue(value);
          arm();
        } catch (error) {
          controller.error(error);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Reads a stream whole if it is at most `limit` bytes. Past that, hands back a stream that replays what was
 * read and then the rest, untouched, so a caller can fall back to streaming without losing a byte.
 */
export async function readAtMost(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ whole: Uint8Array } | { over: ReadableStream<Uint8Array> }> {
  const read = await collectAtMost(stream, limit);
  return "over" in read ? read : { whole: concat(read.chunks, read.total) };
}

/**
 * `readAtMost` without joining the chunks: the whole stream as the chunks it came in (no copy), or past
 * `limit` a stream that replays them and then the rest. A stream that errors before its end rejects.
 */
export async function collectAtMost(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ chunks: Uint8Array[]; total: number } | { over: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { chunks, total };
    chunks.push(value);
    total += value.byteLength;
    if (total > limit) break;
  }
  const over = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = chunks.shift();
      if (next) return controller.enqueue(next);
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { over };
}

/** A stream of the given chunks, in order (they are not copied). */
export function streamOfChunks(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      // An empty chunk is skipped here: a pull that enqueues nothing would leave a pending read waiting.
      while (chunks[i]?.byteLength === 0) i++;
      const next = chunks[i++];
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

/** Readable sides of runtime `FixedLengthStream`s, with their lengths (see `sizedStream`). */
const sizedStreams = new WeakMap<ReadableStream<Uint8Array>, number>();

/**
 * Marks `stream` as the readable side of a runtime `FixedLengthStream(length)`: `forClient` hands it on as it
 * is for an answer of that length (it already declares its length and errors on a short body).
 */
export function sizedStream(stream: ReadableStream<Uint8Array>, length: number): ReadableStream<Uint8Array> {
  sizedStreams.set(stream, length);
  return stream;
}

/**
 * The stream a client's answer is sent from (issue 11 §3). workerd sends a JS `ReadableStream` without its
 * `Content-Length`, chunked, and a client cannot tell a shorter body from the whole one. Piped into a
 * `FixedLengthStream(length)` the answer declares its length (RFC 9112 §6.3: a client then sees a shorter
 * body as incomplete) and workerd aborts the connection if fewer bytes arrive or the source errors. A stream
 * that already is such a runtime stream of `length` (`sizedStream`) is returned as it is, with no copy; so is
 * any stream when no length is known, or outside workerd.
 */
export function forClient(body: ReadableStream<Uint8Array>, length: number | undefined): ReadableStream<Uint8Array> {
  const runtime = globalThis as { FixedLengthStream?: new (length: number) => TransformStream<Uint8Array, Uint8Array> };
  if (length === undefined || !runtime.FixedLengthStream) return body;
  // Also a must, not only a saving: workerd refuses to pipe one of its transform streams (or a branch of one)
  // into another ("Inter-TransformStream ReadableStream.pipeTo() is not implemented").
  if (sizedStreams.get(body) === length && !body.locked) return body;
  return body.pipeThrough(new runtime.FixedLengthStream(length));
}

/**
 * `body.tee()`, whose branches of a `sizedStream` are marked with its length too: a branch of a runtime
 * stream is a runtime stream that declares the same length (and cannot be piped into a `FixedLengthStream`).
 */
export function teeStream(body: ReadableStream<Uint8Array>): [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>] {
  const length = sizedStreams.get(body);
  const branches = body.tee();
  if (length !== undefined) for (const branch of branches) sizedStreams.set(branch, length);
  return branches;
}

/**
 * The most bytes one read of a runtime body takes (`largeChunkReader`). The runtime's own reads hand over a
 * few KiB at a time; a read into a buffer this large takes whatever has arrived (never waiting for more than
 * one byte), so a fast body moves in large chunks and every step after it (the client, each store, each
 * check) runs once per chunk rather than once per few KiB.
 */
export const LARGE_READ_BYTES = 256 * 1024;

/** A BYOB reader of `stream` where it is a byte stream (the runtime's own bodies), else undefined (unlocked). */
export function byobReaderOf(stream: ReadableStream<Uint8Array>): ReadableStreamBYOBReader | undefined {
  try {
    return stream.getReader({ mode: "byob" });
  } catch {
    return undefined;
  }
}

/**
 * A reader of `body` in chunks as large as what has arrived (up to `LARGE_READ_BYTES`), through a BYOB reader
 * where the body is a byte stream (the runtime's own bodies: fetch, Cache API, R2), else chunk by chunk as it
 * comes. A small read is copied out, so that it does not hold the whole read buffer while it is queued, and
 * the buffer is reused for the next read (no 256 KiB of garbage per few KiB read).
 */
export function largeChunkReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
} {
  const reader = byobReaderOf(body);
  if (!reader) return body.getReader();
  /** The buffer of the last small read, handed back by the runtime: reused rather than made anew. */
  let spare: ArrayBuffer | undefined;
  return {
    cancel: (reason) => reader.cancel(reason),
    async read() {
      // Bounded: a read of nothing that is not the end is read again, a few times at most.
      for (let i = 0; i < 1000; i++) {
        const buffer = spare ?? new ArrayBuffer(LARGE_READ_BYTES);
        spare = undefined;
        const result = await reader.read(new Uint8Array(buffer));
        if (result.done || !result.value) return { done: true, value: undefined };
        const value = result.value as Uint8Array;
        if (value.byteLength >= LARGE_READ_BYTES / 2) return { done: false, value };
        // A read under half the buffer is copied out and the buffer reused: a chunk handed on never holds more
        // than twice its own size while it is queued (a fan-out's look-ahead counts only its size).
        spare = value.buffer as ArrayBuffer;
        if (value.byteLength === 0) continue;
        return { done: false, value: value.slice() };
      }
      throw new Error("the body gave empty reads only");
    },
  };
}

/**
 * How many bytes a stream may pass while the event loop does not turn (`LoopTurns`): about a millisecond of
 * work, so no other request of the isolate waits longer than that for its turn.
 */
export const YIELD_EVERY_BYTES = 256 * 1024;

/**
 * Lets the event loop turn while a stream is read in a chain that never waits. A source that always has bytes
 * ready (a fast origin, a stored copy, another isolate's stream) is read in a chain of promise callbacks in
 * which workerd runs no timer and reads no other socket until it ends (measured locally: a 20 ms timer waited
 * 3 s while 200 MiB were piped). `after(bytes)` counts the bytes passed since the loop last turned, which a
 * timer of 0 ms (set at the first of them) tells; once they reach `YIELD_EVERY_BYTES` it returns that timer
 * for the reader to wait on. Small reads that wait on I/O let the loop turn by themselves and never wait
 * here; a read of a whole `YIELD_EVERY_BYTES` or more waits for a turn of its own, even right after one.
 * That is kept on purpose: waiting only past two such reads made a 30 MiB miss through the shield slower
 * locally (868–972 ms against 394–641 with the global tier off), as did a turn every 8 MiB; with no turns
 * at all it was fastest, but stores then starved (a 100 MiB burst wrote no KV record).
 */
export class LoopTurns {
  private bytes = 0;
  private turn: Promise<void> | undefined;

  after(bytes: number): Promise<void> | undefined {
    this.bytes += bytes;
    this.turn ??= new Promise<void>((resolve) => {
      setTimeout(() => {
        this.turn = undefined;
        this.bytes = 0;
        resolve();
      }, 0);
    });
    return this.bytes >= YIELD_EVERY_BYTES ? this.turn : undefined;
  }
}
