import { describe, expect, it } from "vitest";
import { MemoryBudget } from "../../src/core/memory-budget";

describe("memory budget", () => {
  it("grants what fits, refuses what does not, and takes back each grant once", () => {
    const budget = new MemoryBudget(100);
    const a = budget.take(60);
    expect(a).toBeDefined();
    expect(budget.take(41)).toBeUndefined();
    const b = budget.take(40);
    expect(budget.held).toBe(100);
    a?.release();
    a?.release();
    expect(budget.held).toBe(40);
    expect(budget.take(61)).toBeUndefined();
    expect(budget.take(60)).toBeDefined();
    b?.release();
    expect(budget.held).toBe(60);
  });

  it("counts fractions up and never negative sizes", () => {
    const budget = new MemoryBudget(10);
    expect(budget.take(-5)).toBeDefined();
    expect(budget.held).toBe(0);
    budget.take(0.5);
    expect(budget.held).toBe(1);
  });
});
