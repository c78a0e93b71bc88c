import { describe, expect, it } from "vitest";
import { TransformQueue } from "../../src/optimize/queue";
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
