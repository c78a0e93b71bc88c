import { OptimizeError } from "./types";

/**
 * Runs CPU-bound transforms (WASM codecs, minifiers) one at a time in an isolate. They run synchronously on
 * the isolate's one thread anyway, so taking turns costs no throughput; what it bounds is memory: one
 * decoded image at a time, and at most `maxWaiting` buffered inputs waiting. Past that a transform is
 * refused at once ("busy"), which the optimizer treats as a failure: the original is served and stands in
 * briefly.
 */
export class TransformQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly maxWaiting = 4) {}

  run<T>(work: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.maxWaiting) {
      return Promise.reject(new OptimizeError("busy", `${this.waiting} transforms are already waiting`));
    }
    this.waiting += 1;
    const result = this.tail.then(() => {
      this.waiting -= 1;
      return work();
    });
    this.tail = result.catch(() => {});
    return result;
  }
}
