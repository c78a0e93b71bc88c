import { TiercelError } from "./errors";
import { LoopTurns, largeChunkReader } from "./streams";
/**
 * One body read once and streamed to any number of readers, each at its own pace, in bounded memory: the
 * shield's fan-out (src/core/shield.ts). Web Streams only.
 *
 * - The first `headBytes` of the body (the head) are kept until the owner drops what is held (`dropHeld`): a
 *   reader that joins meanwhile reads them from memory, so its first byte never waits for the fill.
 * - Past the head, the source is read ahead of the slowest pacing reader by at most `windowBytes`, so what
 *   is held is at most the head, the window and one chunk, whatever the body's size and the number of readers.
 *   A reader still in the head paces as if it stood at the head's end: the fill goes at most a window past
 *   the head while it reads.
 * - A reader that holds the source back for `stallMs` (it is a whole window behind the fastest) stops pacing:
 *   it reads on from what is still held. A reader whose next bytes are no longer held (they were between the
 *   head and the window when it got there, or it joined once they were gone) carries on from its own offset
 *   with `resume(offset)` (the shield's copy in the global tier), called once it gets there; without one, its
 *   stream errors with `DetachedError`.
 * - With no reader pacing the source is still read (and dropped past the head and window), so whatever else
 *   reads the same body (the global-tier write) is never held up by readers that went away.
 * - A source that errors errors every reader once it has had what was read before the error.
 */
export interface BroadcastOptions {
  windowBytes: number;
  /** The first bytes kept until `dropHeld` (default 0: none). */
  headBytes?: number;
  stallMs: number;
  /**
   * The body's length, when declared: a source that ends before it, or runs past it, fails every reader
   * (`origin_bad_response`) rather than handing on a body of another length.
   */
  length?: number;
  /** Where a reader whose next bytes are gone continues from `offset`; null when it cannot (then it errors). */
  resume?: (offset: number) => Promise<ReadableStream<Uint8Array> | null>;
}

export class DetachedError extends Error {
  override readonly name = "DetachedError";
}

interface Chunk {
  start: number;
  bytes: Uint8Array;
}

interface Reader {
  pos: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Resolves the reader's pending pull once there is something for it. */
  wake: (() => void) | undefined;
  /** Holds the source back; false once it held it back past `stallMs`, or if it joined after a gap. */
  pacing: boolean;
  /** Once its next bytes were gone: the stream it continues from (null: nowhere). */
  resumed?: Promise<ReadableStreamDefaultReader<Uint8Array> | null>;
}

/** A reader that holds the source back: it paces, and reads from what is held rather than a stored copy. */
function paces(reader: Reader): boolean {
  return reader.pacing && !reader.resumed;
}

export class Broadcast {
  /** The kept head: chunks from byte 0, contiguous, read before anything past it. */
  private readonly head: Chunk[] = [];
  private headEnd = 0;
  /** Chunks past the head still held, contiguous, ending at `end`. */
  private readonly window: Chunk[] = [];
  private readonly readers = new Set<Reader>();
  private end = 0;
  private reading = false;
  /** Lets the event loop turn while the source always has bytes ready (see `LoopTurns`). */
  private readonly turns = new LoopTurns();
  private finished = false;
  /** `dropHeld` was called: nothing is held from then on. */
  private dropped = false;
  private failure: unknown;
  private stallTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly source: ReturnType<typeof largeChunkReader>;
  private readonly headBytes: number;
  /** Settles once the source has ended or failed. */
  readonly done: Promise<void>;
  private markDone!: () => void;

  constructor(
    source: ReadableStream<Uint8Array>,
    private readonly options: BroadcastOptions,
  ) {
    if (!(options.windowBytes > 0)) throw new RangeError("the window must hold at least one byte");
    this.headBytes = Math.max(0, options.headBytes ?? 0);
    this.source = largeChunkReader(source);
    this.done = new Promise((resolve) => {
      this.markDone = resolve;
    });
    this.idle = new Promise((resolve) => {
      this.markIdle = resolve;
    });
    this.pump();
  }

  /** Settles once the source has ended (or failed) and every reader has gone: nothing is held for anyone. */
  readonly idle: Promise<void>;
  private markIdle!: () => void;

  /**
   * Drops every byte held (the head and the window): a reader that still needs them goes on from `resume`
   * (or errors without one). For the owner to stop holding memory for readers that take too long.
   */
  dropHeld(): void {
    this.dropped = true;
    this.head.length = 0;
    this.window.length = 0;
    for (const reader of this.readers) reader.pacing = false;
    this.wakeAll();
  }

  /** True while every byte read so far is held: a new reader reads it all from memory. */
  get holdsAll(): boolean {
    return !this.dropped && this.base() <= this.headEnd;
  }

  /** Some reader paces the source (it is waiting on the bytes as they come). */
  get paced(): boolean {
    for (const reader of this.readers) if (paces(reader)) return true;
    return false;
  }

  /** Bytes held right now (for tests and logs). */
  get heldBytes(): number {
    return this.dropped ? 0 : this.headEnd + (this.end - this.base());
  }

  /** A new reader from byte 0: it reads the head from memory, and paces the fill if nothing is gone yet. */
  join(): ReadableStream<Uint8Array> {
    let reader!: Reader;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          reader = { pos: 0, controller, wake: undefined, pacing: this.holdsAll };
        },
        pull: () => this.pull(reader),
        cancel: (reason) => {
          this.leave(reader);
          void reader.resumed?.then((source) => source?.cancel(reason).catch(() => {}));
          this.trim();
          this.pump();
        },
      },
      { highWaterMark: 0 },
    );
    this.readers.add(reader);
    return stream;
  }

  /** Where the held bytes past the head start (`end` when none are held). */
  private base(): number {
    return this.window[0]?.start ?? this.end;
  }

  private async pull(reader: Reader): Promise<void> {
    for (;;) {
      if (reader.resumed) return this.pullResumed(reader);
      const chunk = this.chunkAt(reader.pos);
      if (chunk) {
        reader.pos = chunk.start + chunk.bytes.byteLength;
        reader.controller.enqueue(chunk.bytes);
        this.trim();
        this.pump();
        return;
      }
      if (this.finished && this.failure !== undefined) {
        this.leave(reader);
        reader.controller.error(this.failure);
        return;
      }
      if (reader.pos < this.end) {
        // Its next bytes are no longer held: it goes on from the stored copy.
        this.resumeAt(reader);
        continue;
      }
      if (this.finished) {
        this.leave(reader);
        reader.controller.close();
        return;
      }
      await new Promise<void>((resolve) => {
        reader.wake = resolve;
        this.pump();
      });
    }
  }

  private resumeAt(reader: Reader): void {
    const resume = this.options.resume;
    reader.pacing = false;
    reader.resumed = resume
      ? resume(reader.pos).then(
          (stream) => stream?.getReader() ?? null,
          () => null,
        )
      : Promise.resolve(null);
    this.trim();
    this.pump();
  }

  private async pullResumed(reader: Reader): Promise<void> {
    const source = await reader.resumed;
    if (!source) {
      this.leave(reader);
      reader.controller.error(new DetachedError("the reader fell behind what is held and cannot resume"));
      return;
    }
    try {
      const { done, value } = await source.read();
      if (done) {
        this.leave(reader);
        reader.controller.close();
      } else reader.controller.enqueue(value);
    } catch (error) {
      this.leave(reader);
      reader.controller.error(error);
    }
  }

  private chunkAt(pos: number): Chunk | undefined {
    // Readers only ever stand on chunk boundaries (they start at 0 and take whole chunks).
    const chunks = pos < this.headEnd ? this.head : this.window;
    let low = 0;
    let high = chunks.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const chunk = chunks[middle] as Chunk;
      if (chunk.start === pos) return chunk;
      if (chunk.start < pos) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }

  /** How far the slowest pacing reader stands, a reader in the head counting as at its end. */
  private slowest(): number {
    let min = this.end;
    for (const reader of this.readers) {
      if (paces(reader)) min = Math.min(min, Math.max(reader.pos, this.headEnd));
    }
    return min;
  }

  /** Drops the chunks past the head every pacing reader has passed, keeping at most a window of them. */
  private trim(): void {
    const slowest = this.slowest();
    while (this.window.length > 0 && this.end - this.base() > this.options.windowBytes) {
      const first = this.window[0] as Chunk;
      if (first.start + first.bytes.byteLength > slowest) break;
      this.window.shift();
    }
  }

  private pump(): void {
    if (this.reading || this.finished) return;
    if (this.end - this.slowest() >= this.options.windowBytes) {
      // The slowest reader holds the source back: past `stallMs`, it stops pacing.
      this.stallTimer ??= setTimeout(() => this.unpaceLaggards(), this.options.stallMs);
      return;
    }
    this.clearStall();
    this.reading = true;
    this.source.read().then(
      (result) => {
        this.reading = false;
        const { length } = this.options;
        if (result.done) {
          if (length === undefined || this.end === length) return this.finish(undefined);
          return this.finish(lengthError(`the origin's body ended after ${this.end} of ${length} bytes`));
        }
        // An empty chunk would share its start with the next one (and a reader on it would never move on).
        if (result.value.byteLength === 0) return this.pump();
        if (length !== undefined && this.end + result.value.byteLength > length) {
          const error = lengthError(`the origin's body ran past its ${length} bytes`);
          this.source.cancel(error).catch(() => {});
          return this.finish(error);
        }
        const chunk = { start: this.end, bytes: result.value };
        // The head is read before anything past it, so it stays contiguous from byte 0.
        if (chunk.start < this.headBytes) {
          this.head.push(chunk);
          this.headEnd = chunk.start + chunk.bytes.byteLength;
        } else this.window.push(chunk);
        this.end += result.value.byteLength;
        this.trim();
        this.wakeAll();
        const turn = this.turns.after(result.value.byteLength);
        if (!turn) return this.pump();
        // The next read waits for a turn of the event loop (see LoopTurns).
        this.reading = true;
        void turn.then(() => {
          this.reading = false;
          this.pump();
        });
      },
      (error: unknown) => {
        this.reading = false;
        this.finish(error ?? new Error("the body failed"));
      },
    );
  }

  /** A reader is done (ended, errored or cancelled). */
  private leave(reader: Reader): void {
    this.readers.delete(reader);
    if (this.finished && this.readers.size === 0) this.markIdle();
  }

  private finish(failure: unknown): void {
    this.finished = true;
    this.failure = failure;
    this.clearStall();
    this.wakeAll();
    this.markDone();
    if (this.readers.size === 0) this.markIdle();
  }

  private unpaceLaggards(): void {
    this.stallTimer = undefined;
    if (this.finished) return;
    const limit = this.end - this.options.windowBytes;
    for (const reader of this.readers) {
      if (paces(reader) && Math.max(reader.pos, this.headEnd) <= limit) reader.pacing = false;
    }
    this.trim();
    this.pump();
    // A reader that stopped pacing and now stands on dropped bytes resumes when it next reads.
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const reader of this.readers) {
      const wake = reader.wake;
      reader.wake = undefined;
      wake?.();
    }
  }

  private clearStall(): void {
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }
}

function lengthError(message: string): TiercelError {
  return new TiercelError("origin_bad_response", 502, message);
}

/** `source` without its first `offset` bytes (for a reader resuming from a stored copy). */
export function skipBytes(source: ReadableStream<Uint8Array>, offset: number): ReadableStream<Uint8Array> {
  if (offset <= 0) return source;
  const reader = source.getReader();
  let toSkip = offset;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            if (toSkip > 0) controller.error(new DetachedError(`the stored copy ends before byte ${offset}`));
            else controller.close();
            return;
          }
          if (toSkip >= value.byteLength) {
            toSkip -= value.byteLength;
            continue;
          }
          controller.enqueue(toSkip > 0 ? value.subarray(toSkip) : value);
          toSkip = 0;
          return;
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Why a body sent over RPC ended short (the shield's answer carries it beside the body). */
export interface BodyBreak {
  code?: string;
  status?: number;
  message: string;
}

/**
 * `source` for sending over RPC, where a stream that errors is never errored: it is closed, and `ended()`
 * says whether that close is the body's end (null) or a break (what broke it). A ReadableStream that errors
 * while workerd pumps it over RPC makes workerd's own pump reject a promise that no JavaScript can handle
 * (printed as an uncaught exception in the sending isolate), and the receiver only learns "disconnected
 * prematurely". So the receiver reads the body to its close, asks `ended()` before passing the close on, and
 * errors its own copy on a break (src/core/shield-client.ts): the client still sees the break, nothing is
 * stored, and no isolate prints an error it could not catch.
 */
export function closingOnError(source: ReadableStream<Uint8Array>): {
  body: ReadableStream<Uint8Array>;
  ended: () => Promise<BodyBreak | null>;
} {
  const reader = source.getReader();
  let settle!: (outcome: BodyBreak | null) => void;
  const outcome = new Promise<BodyBreak | null>((resolve) => {
    settle = resolve;
  });
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          settle(breakOf(error));
          controller.close();
          return;
        }
        if (result.done) {
          settle(null);
          controller.close();
        } else controller.enqueue(result.value);
      },
      cancel(reason) {
        settle(breakOf(reason ?? new Error("the reader went away")));
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  return { body, ended: () => outcome };
}

function breakOf(error: unknown): BodyBreak {
  if (!(error instanceof Error)) return { message: String(error) };
  const { code, status } = error as Error & { code?: unknown; status?: unknown };
  // An error that crossed a native stream comes back a plain Error named in its message: not named twice.
  const message = error.name === "Error" ? error.message.replace(/^TiercelError: /, "") : error.message;
  return {
    message,
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof status === "number" ? { status } : {}),
  };
}
