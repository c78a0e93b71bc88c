import { BodyTooLargeError } from "./streams";

/**
 * Splitting one body between several consumers (the client and the tiers being filled) without holding it
 * in memory, and checking that a body is as long as it said it would be. Web Streams only.
 */

/**
 * Splits `source` into `count` branches that each see every chunk, in order. Unlike `ReadableStream.tee()`,
 * which keeps reading for the fastest branch and queues everything the slowest has not taken yet (a whole
 * 30 MiB object, for a slow client), the source is read only when every branch still open has room: each
 * branch queues at most one chunk, so the slowest reader sets the pace and memory stays at about one chunk
 * per branch whatever the body's size.
 *
 * - Branches share chunks: each gets the same `Uint8Array`, so a consumer must not mutate or transfer one.
 * - A cancelled branch is dropped and no longer holds the others back. The source is cancelled only when
 *   every branch has been cancelled, with the last branch's reason.
 * - If the source errors, every branch still open errors with the same error; when it ends, they all close.
 * - `count` of 1 returns `[source]` itself: one branch has no one to wait for, so wrapping it would only
 *   add a step to every read. As with `tee()`, with a `count` above 1 the source is locked from here on.
 *
 * Because the pace is the slowest branch's, a branch that is never read stalls the others: every branch
 * must be read to its end or cancelled.
 */
export function fanOut(source: ReadableStream<Uint8Array>, count: number): ReadableStream<Uint8Array>[] {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`fan-out needs a whole number of branches of at least 1, got ${count}`);
  }
  if (count === 1) return [source];

  const reader = source.getReader();
  const branches: Branch[] = [];
  let reading = false;
  let finished = false; // the source ended, errored or was cancelled: it is never read again

  const open = () => branches.filter((branch) => branch.open);

  /** Reads one chunk once every open branch is waiting for one (a pending `pull` means it has room). */
  const pump = () => {
    if (reading || finished) return;
    const waiting = open();
    if (waiting.length === 0 || waiting.some((branch) => !branch.release)) return;
    reading = true;
    reader.read().then(deliver, fail).catch(fail);
  };

  const deliver = (result: ReadableStreamReadResult<Uint8Array>) => {
    reading = false;
    if (finished) return;
    if (result.done) {
      finished = true;
      for (const branch of open()) {
        branch.controller.close();
        wake(branch);
      }
      return;
    }
    for (const branch of open()) {
      branch.controller.enqueue(result.value);
      wake(branch);
    }
    pump();
  };

  const fail = (error: unknown) => {
    reading = false;
    if (finished) return;
    finished = true;
    for (const branch of open()) {
      branch.open = false;
      branch.controller.error(error);
      wake(branch);
    }
    // After a source error this does nothing; after a throw in `deliver` it releases the source.
    reader.cancel(error).catch(() => {});
  };

  const streams: ReadableStream<Uint8Array>[] = [];
  for (let i = 0; i < count; i++) {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>(
      {
        start(c) {
          controller = c; // runs inside the constructor, before `branch` below is built
        },
        pull() {
          // Settles once this branch has been given a chunk (or the end); until then the stream does not
          // pull again, so a branch never asks for more than one chunk beyond its one-chunk queue.
          const given = new Promise<void>((resolve) => {
            branch.release = resolve;
          });
          pump();
          return given;
        },
        cancel(reason) {
          branch.open = false;
          wake(branch);
          if (finished) return;
          if (open().length === 0) {
            finished = true;
            return reader.cancel(reason);
          }
          pump(); // the branch that was holding the others back may have been this one
        },
      },
      { highWaterMark: 1 },
    );
    const branch: Branch = { open: true, controller, release: undefined };
    branches.push(branch);
    streams.push(stream);
  }
  return streams;
}

interface Branch {
  open: boolean;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Resolves the branch's pending `pull`, if it has one; set while the branch is waiting for a chunk. */
  release: (() => void) | undefined;
}

function wake(branch: Branch): void {
  const release = branch.release;
  branch.release = undefined;
  release?.();
}

/** A body that did not have the length it declared: too long (as soon as it overran) or too short (at its end). */
export class BodyLengthMismatchError extends Error {
  override readonly name = "BodyLengthMismatchError";

  constructor(
    readonly expected: number,
    /** Bytes seen when the mismatch was found; for a body that was too long, the rest was never read. */
    readonly received: number,
  ) {
    super(
      received > expected
        ? `body is longer than the expected ${expected} bytes (${received} so far)`
        : `body ended after ${received} of the expected ${expected} bytes`,
    );
  }
}

/**
 * A pass-through check made for `pipeThrough`: a `{ readable, writable }` pair (not a `TransformStream`
 * instance) plus `bytes()`, the number of bytes that have passed so far, which a caller can read once the
 * readable side is done (to record a body's length, or to log how far a broken one got).
 */
export interface LengthCheck extends ReadableWritablePair<Uint8Array, Uint8Array> {
  bytes(): number;
}

/**
 * Passes chunks through, counting bytes, and errors both sides with a `BodyLengthMismatchError` if more
 * than `expected` bytes arrive (on the chunk that overruns, which is not passed on) or if the body ends
 * with fewer. A consumer that needs the whole body, such as a cache put, then fails and stores nothing, and
 * a `pipeThrough` into the check cancels its source. With `expected` undefined it only counts.
 */
export function verifyLength(expected: number | undefined): LengthCheck {
  if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
    throw new RangeError(`expected length must be a whole number of bytes, got ${expected}`);
  }
  let received = 0;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      received += chunk.byteLength;
      if (expected !== undefined && received > expected) throw new BodyLengthMismatchError(expected, received);
      controller.enqueue(chunk);
    },
    flush() {
      if (expected !== undefined && received < expected) throw new BodyLengthMismatchError(expected, received);
    },
  });
  return { readable, writable, bytes: () => received };
}

/** A counted copy of a body of unknown length, and how it went. */
export interface CountedBody {
  /** Ends cleanly, even where the source broke off or ran past the bound: ask `failure()` afterwards. */
  stream: ReadableStream<Uint8Array>;
  bytes(): number;
  /** Undefined once the source ended cleanly within the bound; otherwise why it did not. */
  failure(): unknown;
}

/**
 * Copies `source` chunk by chunk, counting bytes, up to `maxBytes` (a `BodyTooLargeError` past it, and the
 * source is cancelled). The copy never errors: where the source breaks off it simply ends, and `failure()`
 * says why. Made for a consumer (the Cache API) that may keep part of a body whatever happens, and that
 * would report an errored stream as an uncaught rejection: the caller decides from `failure()` whether what
 * was written may become reachable.
 */
export function countUpTo(source: ReadableStream<Uint8Array>, maxBytes: number): CountedBody {
  const reader = source.getReader();
  let received = 0;
  let failure: unknown = new Error("the body was not read to its end");
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          failure = undefined;
          return controller.close();
        }
        received += value.byteLength;
        if (received > maxBytes) {
          failure = new BodyTooLargeError(`body exceeds ${maxBytes} bytes`);
          await reader.cancel(failure).catch(() => {});
          return controller.close();
        }
        controller.enqueue(value);
      } catch (error) {
        failure = error;
        controller.close();
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { stream, bytes: () => received, failure: () => failure };
}
