import { describe, expect, it } from "vitest";
import { applyPurge, claimPlan, nextPublishAt, serialQueue, siteFromBody } from "../../src/sites/owner";

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
  it("keeps the owner's generation and purges whatever the body says", () => {
    const current = siteFromBody("site-0001", body, null);
    const purged = { ...current, generation: 3, purges: { ...current.purges, tags: { t: 5 } } };
    const edited = siteFromBody(
      "site-0001",
      { ...body, generation: 0, purges: { urls: {}, tags: {}, softTags: {} } },
      { kind: "site", site: purged, revision: 4 },
    );
    expect(edited.generation).toBe(3);
    expect(edited.purges.tags).toEqual({ t: 5 });
  });

  it("starts a site written over a tombstone past the deleted generation", () => {
    expect(siteFromBody("site-0001", body, { kind: "deleted", generation: 6, revision: 9 }).generation).toBe(7);
  });

  it("refuses an id that is not the URL's and a site without hosts", () => {
    expect(() => siteFromBody("site-0001", { ...body, id: "other-0001" }, null)).toThrow(/id: must be site-0001/);
    expect(() => siteFromBody("site-0001", { ...body, hosts: [] }, null)).toThrow(/hosts: must name at least one/);
  });
});

describe("applyPurge", () => {
  it("records tags and bumps the generation for all, clearing records", async () => {
    const site = siteFromBody("site-0001", body, null);
    const tagged = await applyPurge(site, { urls: [], tags: ["x"], all: false, soft: false }, 1000);
    expect(tagged.site.purges.tags).toEqual({ x: 1000 });
    const all = await applyPurge(tagged.site, { urls: [], tags: [], all: true, soft: false }, 2000);
    expect(all.site.generation).toBe(1);
    expect(all.site.purges.tags).toEqual({});
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
