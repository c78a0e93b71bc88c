import type { MemoryBudget } from "./memory-budget";
import { BodyTooLargeError } from "./streams";

/**
 * Splitting one body between several consumers (the client and the tiers being filled) without holding it
 * in memory, and checking that a body is as long as it said it would be. Web Streams only.
 */

/**
 * Options of `fanOut`. By default every branch sets the pace. With `followers`, those branches (the stores
 * being filled) do not: the source is read at the pace of the other branches (the client's), and each
 * follower that is not ready for a chunk queues it, up to `lookAheadBytes` and as far as `budget` allows. A
 * follower that would need more gives up: its stream errors with a `FellBehindError` (that copy is not
 * stored) and it no longer holds anything. Once no pacing branch is open (the client went away), the
 * followers left pace the source themselves, as plain branches do.
 */
export interface FanOutOptions {
  /** Indexes of the branches that follow instead of pacing. */
  followers?: number[];
  /** The most bytes one follower may queue. */
  lookAheadBytes?: number;
  /** Where queued bytes come from (the isolate's budget); a chunk the budget has no room for ends the follower. */
  budget?: Pick<MemoryBudget, "take">;
  /** Told when a follower gives up (with its index and the bytes it had queued). */
  onFellBehind?: (index: number, queued: number) => void;
  /**
   * Asked before each read: while it says true, the followers pace the source as plain branches do (the
   * pacing branch is open but nobody is waiting on it: the shield's fan-out with no reader left).
   */
  followersPace?: () => boolean;
}

/** A follower branch (a store) that fell further behind the client than its look-ahead allows. */
export class FellBehindError extends Error {
  override readonly name = "FellBehindError";
}

/**
 * Splits `source` into `count` branches that each see every chunk, in order. Unlike `ReadableStream.tee()`,
 * which keeps reading for the fastest branch and queues everything the slowest has not taken yet (a whole
 * 30 MiB object, for a slow client), the source is read only when every pacing branch still open has room:
 * each branch queues at most one chunk, so the slowest pacing reader sets the pace and memory stays at about
 * one chunk per branch whatever the body's size. Followers (`options.followers`) queue a bounded look-ahead
 * instead of holding the others back, and give up past it (see `FanOutOptions`).
 *
 * - Branches share chunks: each gets the same `Uint8Array`, so a consumer must not mutate or transfer one.
 * - A cancelled branch is dropped and no longer holds the others back. The source is cancelled only when
 *   every branch has been cancelled, with the last branch's reason.
 * - If the source errors, every branch still open errors with the same error; when it ends, they all close.
 * - `count` of 1 returns `[source]` itself: one branch has no one to wait for, so wrapping it would only
 *   add a step to every read. As with `tee()`, with a `count` above 1 the source is locked from here on.
 *
 * Because the pace is the slowest pacing branch's, a branch that is never read stalls the others: every
 * branch must be read to its end or cancelled.
 */
export function fanOut(
  source: ReadableStream<Uint8Array>,
  count: number,
  options: FanOutOptions = {},
): ReadableStream<Uint8Array>[] {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`fan-out needs a whole number of branches of at least 1, got ${count}`);
  }
  if (count === 1) return [source];
  const followers = new Set(options.followers ?? []);
  const lookAhead = Math.max(0, options.lookAheadBytes ?? 0);

  const reader = source.getReader();
  const branches: Branch[] = [];
  let reading = false;
  let finished = false; // the source ended, errored or was cancelled: it is never read again

  const open = () => branches.filter((branch) => branch.open);

  /**
   * Reads one chunk once every open pacing branch is waiting for one (a pending `pull` means it has room);
   * with no pacing branch open, once every open follower has drained its queue and is waiting.
   */
  const pump = () => {
    if (reading || finished) return;
    const waiting = open();
    if (waiting.length === 0) return;
    const followersPace = options.followersPace?.() === true;
    const pacing = waiting.filter((branch) => !branch.follower || followersPace);
    const pacers = pacing.length > 0 ? pacing : waiting;
    if (pacers.some((branch) => !branch.release || branch.queue.length > 0)) return;
    reading = true;
    reader.read().then(deliver, fail).catch(fail);
  };

  const deliver = (result: ReadableStreamReadResult<Uint8Array>) => {
    reading = false;
    if (finished) return;
    if (result.done) {
      finished = true;
      for (const branch of open()) {
        branch.ended = true;
        if (branch.queue.length === 0) branch.controller.close();
        wake(branch);
      }
      return;
    }
    for (const branch of open()) {
      if (!branch.follower || (branch.release && branch.queue.length === 0)) {
        branch.controller.enqueue(result.value);
        wake(branch);
      } else {
        queueFor(branch, result.value);
      }
    }
    pump();
  };

  /** A follower not ready for this chunk keeps it, within its look-ahead and the budget, or gives up. */
  const queueFor = (branch: Branch, chunk: Uint8Array) => {
    const grant =
      branch.queued + chunk.byteLength <= lookAhead
        ? options.budget
          ? options.budget.take(chunk.byteLength)
          : { release() {} }
        : undefined;
    if (grant) {
      branch.queue.push({ chunk, grant });
      branch.queued += chunk.byteLength;
      return;
    }
    const queued = branch.queued;
    dropQueue(branch);
    branch.open = false;
    branch.controller.error(
      new FellBehindError(
        `a store fell ${queued + chunk.byteLength} bytes behind the client (look-ahead ${lookAhead})`,
      ),
    );
    wake(branch);
    options.onFellBehind?.(branch.index, queued);
  };

  const fail = (error: unknown) => {
    reading = false;
    if (finished) return;
    finished = true;
    for (const branch of open()) {
      branch.open = false;
      dropQueue(branch);
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
          // A follower's queued chunk goes first.
          const next = branch.queue.shift();
          if (next) {
            branch.queued -= next.chunk.byteLength;
            next.grant.release();
            branch.controller.enqueue(next.chunk);
            if (branch.queue.length === 0 && branch.ended) branch.controller.close();
            else pump(); // with no pacing branch left, a drained follower may let the source be read
            return;
          }
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
          dropQueue(branch);
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
    const branch: Branch = {
      index: i,
      open: true,
      controller,
      release: undefined,
      follower: followers.has(i),
      queue: [],
      queued: 0,
      ended: false,
    };
    branches.push(branch);
    streams.push(stream);
  }
  return streams;
}

interface Branch {
  index: number;
  open: boolean;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Resolves the branch's pending `pull`, if it has one; set while the branch is waiting for a chunk. */
  release: (() => void) | undefined;
  /** Follows the pace instead of setting it (a store), with its look-ahead queue. */
  follower: boolean;
  queue: { chunk: Uint8Array; grant: { release(): void } }[];
  queued: number;
  /** The source ended: the branch closes once its queue is drained. */
  ended: boolean;
}

function dropQueue(branch: Branch): void {
  for (const { grant } of branch.queue) grant.release();
  branch.queue = [];
  branch.queued = 0;
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
  /** The source's own error, or the bound's, once the copy ended because of it (undefined otherwise). */
  broke(): unknown;
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
  let broke: unknown;
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
          failure = broke = new BodyTooLargeError(`body exceeds ${maxBytes} bytes`);
          await reader.cancel(failure).catch(() => {});
          return controller.close();
        }
        controller.enqueue(value);
      } catch (error) {
        failure = broke = error ?? new Error("the body broke off");
        controller.close();
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { stream, bytes: () => received, failure: () => failure, broke: () => broke };
}

/**
 * A body being filled, as later requests for it see it (in-isolate collapsing of large bodies): how far it
 * has arrived, and a way to get a byte range of it as it arrives. Made from a fan-out branch (a follower) that
 * it reads as fast as chunks come, holding nothing itself.
 */
export interface FillTap {
  /** Bytes of the body that have arrived so far. */
  position(): number;
  /**
   * Bytes `start` to `end` (inclusive) of the body as they arrive, if none of them has gone by yet and the
   * budget has room for all of them (they are held for a reader slower than the fill, and given back as
   * they are read); undefined otherwise. Errors if the body breaks off or ends before `end`.
   */
  subscribe(start: number, end: number): ReadableStream<Uint8Array> | undefined;
  /** Settles when the body has ended, broken off or been given up. */
  done: Promise<void>;
}

/** Reads `branch` to its end, handing each subscriber the part of every chunk in its range. */
export function fillTap(branch: ReadableStream<Uint8Array>, budget: Pick<MemoryBudget, "take">): FillTap {
  let position = 0;
  let over = false;
  const subscribers = new Set<Subscriber>();
  const finish = (error?: unknown) => {
    over = true;
    for (const sub of subscribers) {
      // Whoever is still here did not get all of its range.
      sub.failure = error ?? new RangeError(`the body ended at byte ${position}, before byte ${sub.end}`);
      sub.wake?.();
    }
    subscribers.clear();
  };
  const done = (async () => {
    const reader = branch.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return finish();
        const from = position;
        position += value.byteLength;
        for (const sub of subscribers) {
          if (sub.end < from || sub.start >= position) continue;
          sub.pieces.push(
            value.subarray(Math.max(0, sub.start - from), Math.min(value.byteLength, sub.end + 1 - from)),
          );
          if (sub.end < position) {
            sub.complete = true;
            subscribers.delete(sub);
          }
          sub.wake?.();
        }
      }
    } catch (error) {
      finish(error);
    }
  })();
  return {
    position: () => position,
    done,
    subscribe(start, end) {
      if (over || start < position || end < start) return undefined;
      const grant = budget.take(end - start + 1);
      if (!grant) return undefined;
      const sub: Subscriber = { start, end, pieces: [], complete: false, failure: undefined, wake: undefined };
      subscribers.add(sub);
      // The pieces are held until read: the grant (the whole range) is given back when the range has been read.
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          while (sub.pieces.length === 0 && !sub.complete && sub.failure === undefined) {
            await new Promise<void>((resolve) => {
              sub.wake = resolve;
            });
            sub.wake = undefined;
          }
          const piece = sub.pieces.shift();
          if (piece) controller.enqueue(piece);
          else if (sub.failure !== undefined) {
            grant.release();
            controller.error(sub.failure);
          } else if (sub.pieces.length === 0 && sub.complete) {
            grant.release();
            controller.close();
          }
        },
        cancel() {
          subscribers.delete(sub);
          sub.pieces = [];
          grant.release();
        },
      });
    },
  };
}

interface Subscriber {
  start: number;
  end: number;
  pieces: Uint8Array[];
  /** Every piece of the range has arrived. */
  complete: boolean;
  failure: unknown;
  wake: (() => void) | undefined;
}
