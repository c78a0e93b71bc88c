/**
 * One body read once and streamed to any number of readers, each at its own pace, in bounded memory: the
 * shield's fan-out (src/core/shield.ts). Web Streams only.
 *
 * - The source is read ahead of the slowest attached reader by at most `windowBytes`, so what is held is
 *   at most the window plus one chunk, whatever the body's size and the number of readers.
 * - The head of the body is kept while the whole body read so far fits in the window: a reader that joins
 *   then starts from byte 0 like the others. Once the body outgrows the window the head goes as the slowest
 *   reader passes it, and a later reader is started detached (below).
 * - A reader that holds the source back for `stallMs` (it is a whole window behind the fastest) is
 *   detached: it stops setting the pace, and carries on from its own offset with `resume(offset)` (the
 *   shield's copy in the global tier, once written); without one, its stream errors with `DetachedError`.
 * - With no reader attached the source is still read (and dropped past the head), so whatever else reads
 *   the same body (the global-tier write) is never held up by readers that went away.
 * - A source that errors errors every attached reader once it has had what was read before the error.
 */
export interface BroadcastOptions {
  windowBytes: number;
  stallMs: number;
  /** Where a detached reader continues from `offset`; null when it cannot (then it errors). */
  resume?: (offset: number) => Promise<ReadableStream<Uint8Array> | null>;
}

export class DetachedError extends Error {
  override readonly name = "DetachedError";
}

interface Reader {
  pos: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Resolves the reader's pending pull once there is something for it. */
  wake: (() => void) | undefined;
  /** Once detached: the stream it continues from (undefined while `resume` is pending). */
  detached?: { source: Promise<ReadableStreamDefaultReader<Uint8Array> | null> };
}

export class Broadcast {
  private readonly chunks: { start: number; bytes: Uint8Array }[] = [];
  private readonly readers = new Set<Reader>();
  private base = 0;
  private end = 0;
  private reading = false;
  private finished = false;
  private failure: unknown;
  private stallTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly source: ReadableStreamDefaultReader<Uint8Array>;
  /** Settles once the source has ended or failed. */
  readonly done: Promise<void>;
  private markDone!: () => void;

  constructor(
    source: ReadableStream<Uint8Array>,
    private readonly options: BroadcastOptions,
  ) {
    if (!(options.windowBytes > 0)) throw new RangeError("the window must hold at least one byte");
    this.source = source.getReader();
    this.done = new Promise((resolve) => {
      this.markDone = resolve;
    });
    this.pump();
  }

  /** True while a new reader can still start from byte 0 with the others. */
  get headKept(): boolean {
    return this.base === 0;
  }

  /** Bytes held right now (for tests and logs). */
  get heldBytes(): number {
    return this.end - this.base;
  }

  /** A new reader from byte 0: attached if the head is still held, otherwise detached at once. */
  join(): ReadableStream<Uint8Array> {
    let reader!: Reader;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          reader = { pos: 0, controller, wake: undefined };
        },
        pull: () => this.pull(reader),
        cancel: (reason) => {
          this.readers.delete(reader);
          const detached = reader.detached;
          if (detached) void detached.source.then((source) => source?.cancel(reason).catch(() => {}));
          this.pump();
        },
      },
      { highWaterMark: 0 },
    );
    this.readers.add(reader);
    if (this.base > 0) this.detach(reader);
    return stream;
  }

  private async pull(reader: Reader): Promise<void> {
    for (;;) {
      if (reader.detached) return this.pullDetached(reader);
      const chunk = this.chunkAt(reader.pos);
      if (chunk) {
        reader.pos = chunk.start + chunk.bytes.byteLength;
        reader.controller.enqueue(chunk.bytes);
        this.trim();
        this.pump();
        return;
      }
      if (this.finished) {
        this.readers.delete(reader);
        if (this.failure !== undefined) reader.controller.error(this.failure);
        else reader.controller.close();
        return;
      }
      await new Promise<void>((resolve) => {
        reader.wake = resolve;
        this.pump();
      });
    }
  }

  private async pullDetached(reader: Reader): Promise<void> {
    const source = await reader.detached?.source;
    if (!source) {
      reader.controller.error(new DetachedError("the reader fell a whole window behind and cannot resume"));
      return;
    }
    try {
      const { done, value } = await source.read();
      if (done) reader.controller.close();
      else reader.controller.enqueue(value);
    } catch (error) {
      reader.controller.error(error);
    }
  }

  private chunkAt(pos: number): { start: number; bytes: Uint8Array } | undefined {
    // Attached readers only ever stand on chunk boundaries (they start at 0 and take whole chunks).
    for (const chunk of this.chunks) if (chunk.start === pos) return chunk;
    return undefined;
  }

  private attached(): Reader[] {
    return [...this.readers].filter((reader) => !reader.detached);
  }

  private slowest(): number {
    let min = this.end;
    for (const reader of this.attached()) min = Math.min(min, reader.pos);
    return min;
  }

  /** Drops the chunks every attached reader has passed, keeping the head while it fits in the window. */
  private trim(): void {
    const slowest = this.slowest();
    while (this.chunks.length > 0 && this.end - this.base > this.options.windowBytes) {
      const first = this.chunks[0] as { start: number; bytes: Uint8Array };
      const next = first.start + first.bytes.byteLength;
      if (next > slowest) break;
      this.chunks.shift();
      this.base = next;
    }
  }

  private pump(): void {
    if (this.reading || this.finished) return;
    if (this.end - this.slowest() >= this.options.windowBytes) {
      // The slowest reader holds the source back: past `stallMs`, it is detached.
      this.stallTimer ??= setTimeout(() => this.detachLaggards(), this.options.stallMs);
      return;
    }
    this.clearStall();
    this.reading = true;
    this.source.read().then(
      (result) => {
        this.reading = false;
        if (result.done) return this.finish(undefined);
        this.chunks.push({ start: this.end, bytes: result.value });
        this.end += result.value.byteLength;
        this.trim();
        this.wakeAll();
        this.pump();
      },
      (error: unknown) => {
        this.reading = false;
        this.finish(error ?? new Error("the body failed"));
      },
    );
  }

  private finish(failure: unknown): void {
    this.finished = true;
    this.failure = failure;
    this.clearStall();
    this.wakeAll();
    this.markDone();
  }

  private detachLaggards(): void {
    this.stallTimer = undefined;
    if (this.finished) return;
    const limit = this.end - this.options.windowBytes;
    for (const reader of this.attached()) if (reader.pos <= limit) this.detach(reader);
    this.trim();
    this.pump();
  }

  private detach(reader: Reader): void {
    const resume = this.options.resume;
    const source = resume
      ? resume(reader.pos).then(
          (stream) => stream?.getReader() ?? null,
          () => null,
        )
      : Promise.resolve(null);
    reader.detached = { source };
    const wake = reader.wake;
    reader.wake = undefined;
    wake?.();
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
