/**
 * One isolate-wide budget for the bytes Tiercel buffers on purpose (small bodies buffered once to be stored
 * and shared, the parts of an R2 upload and KV's chunks, image inputs, a store's look-ahead behind the
 * client, a range joiner's bytes): a Worker isolate has 128 MB, and many fills at once each holding a
 * buffer would otherwise add up past it. A buffer is taken before it is filled and given back when it is no
 * longer held. Past the budget nothing waits and nothing fails: the body streams to the client unstored
 * (`store.skipped`, reason `memory`), or that tier's put is skipped.
 */
export class MemoryBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Bytes held now. */
  get held(): number {
    return this.used;
  }

  /** Takes `bytes` if they fit; the grant gives them back once (later calls do nothing). */
  take(bytes: number): { release(): void } | undefined {
    const size = Math.max(0, Math.ceil(bytes));
    if (this.used + size > this.limit) return undefined;
    this.used += size;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.used -= size;
      },
    };
  }
}

/** The isolate's budget: 48 MiB of the 128 MB an isolate has, the rest for the runtime and streams in flight. */
export const isolateBudget = new MemoryBudget(48 * 1024 * 1024);

/**
 * How far a store (a tier being filled alongside the client) may fall behind the client, in queued bytes, by
 * default: past it the store gives up (that copy is not stored), never the client. Out of the isolate budget.
 */
export const STORE_LOOK_AHEAD_BYTES = 8 * 1024 * 1024;
