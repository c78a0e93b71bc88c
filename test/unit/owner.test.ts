import { describe, expect, it } from "vitest";
import { NO_PURGES, purgeState } from "../../src/core/purge";
import {
  claimPlan,
  migrateLegacyPurges,
  nextPublishAt,
  planPurge,
  serialQueue,
  siteFromBody,
} from "../../src/sites/owner";
import {
  EMPTY_META,
  memoryPurgeRows,
  PURGE_LIMITS,
  type PurgeMeta,
  publishedPurges,
  recordPurge,
} from "../../src/sites/purges";
import { applyPurgeDelta, purgeViewOf } from "../../src/sites/store";

const body = { hosts: ["a.example"], origin: { kind: "http", url: "https://origin.tiercel.dev" } };

describe("claimPlan", () => {
  it("claims free hosts, keeps held ones, releases dropped ones", () => {
    const owners = new Map<string, string | null>([
      ["held.example", "s1"],
      ["free.example", null],
    ]);
    expect(
      claimPlan(owners, "s1", ["held.example", "free.example", "new.example"], ["held.example", "old.example"]),
    ).toEqual({
      claim: ["free.example", "new.example"],
      release: ["old.example"],
    });
  });

  it("refuses the whole change when one host belongs to another site", () => {
    const owners = new Map<string, string | null>([["theirs.example", "s2"]]);
    expect(claimPlan(owners, "s1", ["mine.example", "theirs.example"], [])).toEqual({
      taken: { host: "theirs.example", siteId: "s2" },
    });
  });
});

describe("siteFromBody", () => {
  it("keeps the owner's generation and takes no purge records from the body", () => {
    const current = siteFromBody("site-0001", body, null);
    const purged = { ...current, generation: 3 };
    const edited = siteFromBody(
      "site-0001",
      { ...body, generation: 0, purges: { urls: {}, tags: { t: 5 }, softTags: {} } },
      { kind: "site", site: purged, revision: 4 },
    );
    expect(edited.generation).toBe(3);
    expect(edited.purges.tags).toEqual({});
  });

  it("starts a site written over a tombstone past the deleted generation", () => {
    expect(siteFromBody("site-0001", body, { kind: "deleted", generation: 6, revision: 9 }).generation).toBe(7);
  });

  it("refuses an id that is not the URL's and a site without hosts", () => {
    expect(() => siteFromBody("site-0001", { ...body, id: "other-0001" }, null)).toThrow(/id: must be site-0001/);
    expect(() => siteFromBody("site-0001", { ...body, hosts: [] }, null)).toThrow(/hosts: must name at least one/);
  });
});

describe("planPurge", () => {
  it("bumps the generation for all (new settings), records tags and URL keys otherwise", async () => {
    const site = siteFromBody("site-0001", body, null);
    const tagged = await planPurge(site, { urls: ["https://a.example/x"], tags: ["x"], all: false, soft: false });
    expect(tagged.configChanged).toBe(false);
    expect(tagged.site.generation).toBe(0);
    expect(tagged.add).toMatchObject({ tags: ["x"], soft: false, softAll: false });
    expect(tagged.add.urls).toEqual([tagged.keys[0]?.slice(0, 16)]);
    const all = await planPurge(site, { urls: [], tags: [], all: true, soft: false });
    expect(all.configChanged).toBe(true);
    expect(all.site.generation).toBe(1);
    const softAll = await planPurge(site, { urls: [], tags: [], all: true, soft: true });
    expect(softAll.add.softAll).toBe(true);
    expect(softAll.site.generation).toBe(0);
  });

  it("moves a config's legacy purge records out, keeping their times", () => {
    const site = siteFromBody("site-0001", body, null);
    const legacy = {
      ...site,
      purges: { urls: { ["ab".repeat(32)]: 5 }, tags: { t: 6 }, softTags: { s: 7 }, softAll: 8 },
    };
    const rows = memoryPurgeRows();
    const moved = migrateLegacyPurges(legacy, rows, EMPTY_META);
    expect(moved.site.purges).toEqual({ urls: {}, tags: {}, softTags: {} });
    expect(publishedPurges(rows, moved.meta)).toEqual({
      v: 1,
      version: 1,
      floor: 0,
      tagFloor: 0,
      softAll: 8,
      urls: [["ab".repeat(8), 5]],
      tags: [["t", 6]],
      softTags: [["s", 7]],
    });
  });
});

const DAY = 86_400_000;
const HOLD = 3 * DAY;

/** A stored entry fetched at `requestTime`, with tags. */
function fetchedAt(requestTime: number, tags: string[] = []) {
  return { requestTime, tags } as unknown as Parameters<typeof purgeState>[0];
}

describe("recordPurge: bounded purge state", () => {
  it("purges 1,000 URLs a day for a year with at most (hold + 1 day) × 1,000 records, and purged URLs stay purged", () => {
    const rows = memoryPurgeRows();
    let meta: PurgeMeta = EMPTY_META;
    let view = NO_PURGES;
    const start = Date.UTC(2026, 0, 1);
    let largest = 0;
    for (let day = 0; day < 365; day++) {
      const now = start + day * DAY;
      const urls = Array.from(
        { length: 1000 },
        (_, i) => `${day.toString(16).padStart(8, "0")}${i.toString(16).padStart(8, "0")}`,
      );
      const result = recordPurge(rows, meta, { urls, tags: [], soft: false, softAll: false }, now, HOLD);
      meta = result.meta;
      // An isolate following along by deltas holds no more than the owner.
      view = applyPurgeDelta(view, result.delta);
      largest = Math.max(largest, rows.size(), view.urls.size);
      // Yesterday's purged URL, fetched just before its purge, is purged; one fetched after it is not.
      if (day > 0) {
        const key = `${(day - 1).toString(16).padStart(8, "0")}${"7".padStart(8, "0")}`.padEnd(64, "0");
        const hold = { now, maxHoldMs: HOLD };
        expect(purgeState(fetchedAt(now - DAY - 1), view, undefined, hold, key)).toBe("purged");
        expect(purgeState(fetchedAt(now - DAY + 1), view, undefined, hold, key)).toBe("none");
      }
    }
    // Records live for the hold plus a clock margin: 4 days' worth at most.
    expect(largest).toBeLessThanOrEqual(4 * 1000);
    expect(meta.version).toBe(365);
    // The whole state, as published, stays small (the figure the docs give).
    expect(JSON.stringify(publishedPurges(rows, meta)).length).toBeLessThan(150_000);
    // Dropped records raised the floor: nothing fetched at or before it counts, which the hold says anyway.
    expect(meta.floor).toBeGreaterThan(start + 360 * DAY - HOLD - 2 * DAY);
  });

  it("refuses URL purges past the cap with 429 purge_limit, never a purge of everything", () => {
    const rows = memoryPurgeRows();
    const limits = { ...PURGE_LIMITS, maxUrlRecords: 10 };
    const add = (urls: string[]) => ({ urls, tags: [], soft: false, softAll: false });
    const first = recordPurge(rows, EMPTY_META, add(["a", "b", "c", "d", "e", "f", "g", "h"]), 1000, HOLD, limits);
    expect(() => recordPurge(rows, first.meta, add(["i", "j", "k"]), 2000, HOLD, limits)).toThrow(
      expect.objectContaining({ code: "purge_limit", status: 429 }),
    );
    expect(rows.size()).toBe(8);
    // Once the first records pass the hold, there is room again.
    const later = recordPurge(rows, first.meta, add(["i", "j", "k"]), 1000 + HOLD + DAY, HOLD, limits);
    expect(rows.size()).toBe(3);
    expect(later.meta.floor).toBe(1000);
  });

  it("keeps at most maxTagRecords tags, dropping the oldest and raising the tag floor (tagged entries only)", () => {
    const rows = memoryPurgeRows();
    const limits = { ...PURGE_LIMITS, maxTagRecords: 3 };
    let meta: PurgeMeta = EMPTY_META;
    let evicted = 0;
    for (const [i, tag] of ["a", "b", "c", "d", "e"].entries()) {
      const result = recordPurge(
        rows,
        meta,
        { urls: [], tags: [tag], soft: false, softAll: false },
        1000 + i,
        HOLD,
        limits,
      );
      meta = result.meta;
      evicted += result.evictedTags;
    }
    expect(evicted).toBe(2);
    expect(rows.size()).toBe(3);
    expect(meta.tagFloor).toBe(1001);
    const view = purgeViewOf(publishedPurges(rows, meta));
    const hold = { now: 2000, maxHoldMs: HOLD };
    expect(purgeState(fetchedAt(1000, ["a"]), view, undefined, hold)).toBe("purged");
    expect(purgeState(fetchedAt(1000, []), view, undefined, hold)).toBe("none");
    expect(purgeState(fetchedAt(1002, ["a"]), view, undefined, hold)).toBe("none");
  });

  it("treats an entry fetched longer ago than the hold as absent", () => {
    const hold = { now: 10 * DAY, maxHoldMs: HOLD };
    expect(purgeState(fetchedAt(10 * DAY - HOLD - 1), NO_PURGES, undefined, hold)).toBe("purged");
    expect(purgeState(fetchedAt(10 * DAY - HOLD + 1), NO_PURGES, undefined, hold)).toBe("none");
  });
});

describe("nextPublishAt", () => {
  it("publishes at once after a second, else when the second is over", () => {
    expect(nextPublishAt(0, 5_000)).toBe(5_000);
    expect(nextPublishAt(4_500, 5_000)).toBe(5_500);
    expect(nextPublishAt(4_000, 5_000)).toBe(5_000);
  });
});

describe("serialQueue", () => {
  it("runs work one at a time in call order, and a failure does not stop the queue", async () => {
    const run = serialQueue();
    const seen: string[] = [];
    const step = (name: string, ms: number, fail = false) =>
      run(async () => {
        seen.push(`${name}+`);
        await new Promise((resolve) => setTimeout(resolve, ms));
        seen.push(`${name}-`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([step("a", 20), step("b", 1, true), step("c", 5)]);
    expect(seen).toEqual(["a+", "a-", "b+", "b-", "c+", "c-"]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  });
});
