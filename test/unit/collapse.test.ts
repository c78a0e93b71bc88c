import { describe, expect, it } from "vitest";
import { createCollapser } from "../../src/core/collapse";

describe("request collapsing", () => {
  it("hands every waiter the leader's outcome", async () => {
    const collapser = createCollapser();
    const flight = collapser.begin("k");
    const waiting = [collapser.waitFor("k"), collapser.waitFor("k")];
    flight.settle({ kind: "none" });
    expect(await Promise.all(waiting)).toEqual([{ kind: "none" }, { kind: "none" }]);
    expect(collapser.waitFor("k")).toBeUndefined();
  });

  it("lets no waiter hang when the leader never settles (its client went away)", async () => {
    const collapser = createCollapser({ maxWaitMs: 30 });
    collapser.begin("k");
    const outcome = await collapser.waitFor("k");
    expect(outcome).toEqual({ kind: "none" });
  });

  it("forgets a flight older than the longest wait, so later requests lead their own", () => {
    let now = 1_000;
    const collapser = createCollapser({ maxWaitMs: 5_000, now: () => now });
    collapser.begin("k");
    expect(collapser.waitFor("k")).toBeDefined();
    now += 5_000;
    expect(collapser.waitFor("k")).toBeUndefined();
    const second = collapser.begin("k");
    expect(collapser.waitFor("k")).toBeDefined();
    second.settle({ kind: "none" });
  });
});
