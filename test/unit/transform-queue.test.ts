import { describe, expect, it } from "vitest";
import { TRANSFORM_BOUNDS } from "../../src/optimize/optimize";
import { TransformLimiter, TransformQueue } from "../../src/optimize/queue";
import { OptimizeError } from "../../src/optimize/types";

describe("TransformQueue", () => {
  it("runs one transform at a time, in order", async () => {
    const queue = new TransformQueue(10);
    const events: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = queue.run(async () => {
      events.push("first start");
      await gate;
      events.push("first end");
      return 1;
    });
    const second = queue.run(async () => {
      events.push("second start");
      return 2;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual(["first start"]);
    release();
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(events).toEqual(["first start", "first end", "second start"]);
  });

  it("refuses at once ('busy') past its waiting limit, and goes on after a failure", async () => {
    const queue = new TransformQueue(1);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = queue.run(() => gate);
    await new Promise((resolve) => setTimeout(resolve, 0));
    const waiting = queue.run(async () => {
      throw new Error("codec failed");
    });
    const refused = await queue.run(async () => "never").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OptimizeError);
    expect((refused as OptimizeError).reason).toBe("busy");
    release();
    await running;
    await expect(waiting).rejects.toThrow("codec failed");
    expect(await queue.run(async () => "after")).toBe("after");
  });
});

/** Busy-waits: CPU-bound work, as the minifiers and codecs are (no I/O, nothing to yield on). */
function compute(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe("TransformQueue turns", () => {
  it("starts each transform on a new turn of the event loop, so other work runs between two of them", async () => {
    const queue = new TransformQueue(10);
    const events: string[] = [];
    const first = queue.run(async () => {
      compute(20);
      events.push("first");
    });
    const second = queue.run(async () => {
      compute(20);
      events.push("second");
    });
    // Another request's I/O completing: before, both transforms ran back to back ahead of it.
    const other = new Promise<void>((resolve) =>
      setTimeout(() => {
        events.push("other");
        resolve();
      }, 0),
    );
    await Promise.all([first, second, other]);
    expect(events).toEqual(["first", "other", "second"]);
  });
});

describe("TransformLimiter", () => {
  it("bounds one site's transforms and leaves the isolate's other places to other sites", async () => {
    const limiter = new TransformLimiter({ concurrency: 2, maxWaiting: 2 }, { concurrency: 4, maxWaiting: 4 });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const held = Array.from({ length: 4 }, () => limiter.run("a", () => gate));
    await new Promise((resolve) => setTimeout(resolve, 30));
    const refused = await limiter.run("a", async () => "never").catch((error: unknown) => error);
    expect((refused as OptimizeError).reason).toBe("busy");
    // Site a holds 2 of the isolate's 4 running places: site b runs at once.
    expect(await limiter.run("b", async () => "b ran")).toBe("b ran");
    release();
    await Promise.all(held);
    expect(await limiter.run("a", async () => "a again")).toBe("a again");
  });

  it("with the Worker's bounds, admits a page's burst of 8 from one site while another site runs at once", async () => {
    const limiter = new TransformLimiter(TRANSFORM_BOUNDS.perSite, TRANSFORM_BOUNDS.isolate);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const page = Array.from({ length: 8 }, () => limiter.run("a", () => gate.then(() => "transformed")));
    await new Promise((resolve) => setTimeout(resolve, 30));
    // The ninth is past the site's bound.
    const refused = await limiter.run("a", async () => "never").catch((error: unknown) => error);
    expect((refused as OptimizeError).reason).toBe("busy");
    // Site a runs 2 and queues 6 in its own queue: site b runs at once, twice over.
    expect(await Promise.all([limiter.run("b", async () => "b1"), limiter.run("b", async () => "b2")])).toEqual([
      "b1",
      "b2",
    ]);
    release();
    expect(await Promise.all(page)).toEqual(Array(8).fill("transformed"));
  });
});
