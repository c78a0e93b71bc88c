import { describe, expect, it } from "vitest";
import { createCollapser } from "../../src/core/collapse";
import type { StoredEntry } from "../../src/core/entry";

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

  it("keeps a streaming flight joinable until its store is over, past the longest wait, then forgets it", async () => {
    let now = 1_000;
    const collapser = createCollapser({ maxWaitMs: 5_000, maxStreamMs: 60_000, now: () => now });
    const flight = collapser.begin("k");
    let stored!: (ok: boolean) => void;
    const tap = { position: () => 0, subscribe: () => undefined, done: Promise.resolve() };
    const entry = {} as StoredEntry;
    flight.settle({ kind: "streaming", entry, values: "", tap, stored: new Promise((r) => (stored = r)) });
    now += 20_000;
    const joined = await collapser.waitFor("k");
    expect(joined?.kind).toBe("streaming");
    stored(true);
    await Promise.resolve();
    await Promise.resolve();
    expect(collapser.waitFor("k")).toBeUndefined();
  });
});
