import { describe, expect, it } from "vitest";
import { answerSince, ControlClient, FEED_INLINE_RECORDS, purgeChange } from "../../src/sites/control";
import type { ControlledStore, FeedAnswer, FeedChange, PurgeDelta } from "../../src/sites/store";

const change = (seq: number): FeedChange => ({ seq, at: seq * 1000, siteId: `site-${seq}` });

describe("answerSince", () => {
  const log = [change(5), change(6), change(7)];
  it("answers the changes after N, or reset when N is older than the log or newer than the feed", () => {
    expect(answerSince(log, 5, 7, 6)).toEqual({ seq: 7, changes: [change(7)] });
    expect(answerSince(log, 5, 7, 4)).toEqual({ seq: 7, changes: log });
    expect(answerSince(log, 5, 7, 7)).toEqual({ seq: 7, changes: [] });
    expect(answerSince(log, 5, 7, 3)).toEqual({ seq: 7, reset: true });
    expect(answerSince(log, 5, 7, 9)).toEqual({ seq: 7, reset: true });
    // A new isolate gets what the feed picked for it (the recent changes).
    expect(answerSince([change(7)], 5, 7, 0)).toEqual({ seq: 7, changes: [change(7)] });
  });
});

describe("purgeChange", () => {
  it("carries a small delta inline and only the version of a large one", () => {
    const delta = (n: number): PurgeDelta => ({
      version: 3,
      floor: 0,
      tagFloor: 0,
      urls: Array.from({ length: n }, (_, i): [string, number] => [`k${i}`, 1]),
      tags: [],
      softTags: [],
    });
    expect(purgeChange(delta(FEED_INLINE_RECORDS)).delta).toBeDefined();
    expect(purgeChange(delta(FEED_INLINE_RECORDS + 1))).toEqual({ version: 3 });
  });
});

describe("ControlClient", () => {
  function client(answers: FeedAnswer[]) {
    const seen: string[] = [];
    let now = 10_000;
    const store: ControlledStore = {
      note: (c) => seen.push(`note ${c.seq}`),
      reset: () => seen.push("reset"),
      attach: () => {},
    };
    const asked: number[] = [];
    const control = new ControlClient({
      store,
      feed: async (since) => {
        asked.push(since);
        return answers.shift() ?? { seq: since, changes: [] };
      },
      now: () => now,
      windowMs: 1000,
    });
    return { control, seen, asked, advance: (ms: number) => (now += ms) };
  }

  it("asks at most once per window, applies changes in order, and resets when told", async () => {
    const { control, seen, asked, advance } = client([
      { seq: 2, changes: [change(1), change(2)] },
      { seq: 9, reset: true },
      { seq: 10, changes: [change(10)] },
    ]);
    await control.beforeRequest();
    await control.beforeRequest();
    expect(asked).toEqual([0]);
    expect(control.current()).toBe(true);
    advance(1000);
    await control.beforeRequest();
    advance(1000);
    await control.beforeRequest();
    expect(asked).toEqual([0, 2, 9]);
    expect(seen).toEqual(["note 1", "note 2", "reset", "note 10"]);
    expect(control.seq).toBe(10);
    // No answer for more than two windows: not current any more (the store falls back to its TTLs).
    advance(2001);
    expect(control.current()).toBe(false);
  });

  it("does not wait for a feed that does not answer longer than its bound", async () => {
    const control = new ControlClient({
      store: { note: () => {}, reset: () => {}, attach: () => {} },
      feed: () => new Promise(() => {}),
      now: Date.now,
      windowMs: 1000,
      waitMs: 30,
      timeoutMs: 100,
    });
    const started = Date.now();
    await control.beforeRequest();
    expect(Date.now() - started).toBeLessThan(500);
    expect(control.current()).toBe(false);
  });
});
