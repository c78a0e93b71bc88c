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
