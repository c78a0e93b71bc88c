import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DeadlineError, withDeadline } from "../../src/core/deadline";

describe("withDeadline", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("settles with the work's value when it finishes in time", async () => {
    await expect(withDeadline(Promise.resolve("value"), 1000, "kv get")).resolves.toBe("value");
  });

  it("rejects with the work's own error when it fails in time", async () => {
    const failure = new Error("kv down");
    await expect(withDeadline(Promise.reject(failure), 1000, "kv get")).rejects.toBe(failure);
  });

  it("rejects with a DeadlineError naming the operation once the deadline passes", async () => {
    const never = new Promise<string>(() => {});
    const result = withDeadline(never, 250, "kv get");
    const settled = expect(result).rejects.toThrow(new DeadlineError("kv get took longer than 250 ms"));
    await vi.advanceTimersByTimeAsync(250);
    await settled;
    await expect(result).rejects.toBeInstanceOf(DeadlineError);
    await expect(result).rejects.toMatchObject({ name: "DeadlineError" });
  });

  it("does not reject before the deadline", async () => {
    let settled = false;
    const result = withDeadline(new Promise<string>(() => {}), 250, "kv get").finally(() => {
      settled = true;
    });
    result.catch(() => {});
    await vi.advanceTimersByTimeAsync(249);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toBe(true);
  });

  it("clears its timer once the work settles", async () => {
    await withDeadline(Promise.resolve(1), 1000, "kv get");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("keeps the work's value when the work settles before a later deadline would fire", async () => {
    let finish: (value: string) => void = () => {};
    const work = new Promise<string>((resolve) => {
      finish = resolve;
    });
    const result = withDeadline(work, 250, "kv get");
    await vi.advanceTimersByTimeAsync(100);
    finish("late but in time");
    await expect(result).resolves.toBe("late but in time");
    await vi.advanceTimersByTimeAsync(1000);
    await expect(result).resolves.toBe("late but in time");
  });
});
