/** A stream a test can watch: how far a consumer has read it, and whether (and why) it was cancelled. */
export interface Source {
  stream: ReadableStream<Uint8Array>;
  /** How many chunks have been pulled so far. */
  pulls(): number;
  /** The reason the consumer cancelled with, or undefined while it has not. */
  cancelled(): unknown;
}

/**
 * A stream that hands out `chunks` one per pull and never reads ahead (high-water mark 0), so the test can
 * see how far a consumer has read. With `error`, it fails after the last chunk instead of closing.
 */
export function source(chunks: (Uint8Array | number[])[], error?: Error): Source {
  let pulled = 0;
  let reason: unknown;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const chunk = chunks[pulled++];
        if (chunk) controller.enqueue(chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk));
        else if (error) controller.error(error);
        else controller.close();
      },
      cancel(why) {
        reason = why ?? "cancelled";
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulls: () => pulled, cancelled: () => reason };
}

/**
 * A runtime stream (workerd's `IdentityTransformStream`, as a fetch body, a `FixedLengthStream` or a stream
 * received over RPC) that a writer fills with `size` zero bytes in writes of `write` bytes. The runtime's own
 * reader of such a stream hands them over a few KiB at a time, whatever was written.
 */
export function runtimeStream(size: number, write: number): ReadableStream<Uint8Array> {
  const { readable, writable } = new IdentityTransformStream();
  const writer = writable.getWriter();
  void (async () => {
    for (let at = 0; at < size; at += write) await writer.write(new Uint8Array(Math.min(write, size - at)));
    await writer.close();
  })();
  return readable;
}

/** The sizes of the chunks `read` hands over until the end (bounded). */
export async function chunkSizes(read: () => Promise<ReadableStreamReadResult<Uint8Array>>): Promise<number[]> {
  const sizes: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const { done, value } = await read();
    if (done) return sizes;
    sizes.push(value.byteLength);
  }
  throw new Error("the stream did not end");
}
