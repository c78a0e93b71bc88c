import { describe, expect, it } from "vitest";
import { minify } from "../../src/optimize/minify";
import { fixture } from "../support/harness";

/**
 * One HTML document that overflows the stack inside minify-html leaves its WebAssembly instance broken;
 * the minifier must start afresh, or every later page of every site in the isolate would fail.
 */
function deepCall<T>(depth: number, run: () => T): T {
  return depth === 0 ? run() : deepCall(depth - 1, run);
}

describe("minify-html after a stack overflow", { timeout: 60_000 }, () => {
  it("still minifies an ordinary page after a deeply nested one failed", async () => {
    const page = await fixture("demo/index.html");
    const before = await minify("html", page);
    expect(before.changed).toBe(true);
    const deep = new TextEncoder().encode(`<html><body>${"<div>".repeat(150_000)}</body></html>`);
    const errors: string[] = [];
    // The overflow point depends on how deep the JS stack already is (a Worker's fetch handler is deeper
    // than a unit test): try a few.
    for (const depth of [0, 50, 200, 500, 1000, 2000]) {
      await deepCall(depth, () => minify("html", deep)).catch((e: Error) => errors.push(e.message));
      let after: unknown;
      try {
        after = await minify("html", page);
      } catch (error) {
        after = `${(error as Error).message}`;
      }
      expect(after, `after depth ${depth} (${errors.at(-1)}): ${String(after)}`).toEqual(before);
    }
  });
});
