import { describe, expect, it } from "vitest";
import { newSite, origin, send, unique } from "../support/harness";

/** The site's `cache.maxVariants`: one URL cannot fill the tiers with variants under Vary. */

describe("variants per URL (cache.maxVariants)", () => {
  it("stops storing new variants of a URL at the cap, under a concurrent flood of distinct values", async () => {
    const { host } = await newSite({ cache: { maxVariants: 4 } });
    const path = `/${unique("flood")}`;
    await origin.route(path, { body: "for {hit}", headers: { "cache-control": "max-age=300", vary: "X-Flavor" } });
    const get = (flavor: string) => send(`http://${host}${path}`, { headers: { "x-flavor": flavor } });
    // One variant first, so the index exists; then a flood of twelve new values at once.
    expect((await get("first")).headers.get("cache-status")).toContain("detail=storing");
    const flavors = Array.from({ length: 12 }, (_, i) => `flavor-${i}`);
    const flood = await Promise.all(flavors.map(get));
    const refused = flood.filter((r) => r.headers.get("cache-status")?.includes("detail=not-stored-variants"));
    expect(refused).toHaveLength(9);
    for (const answer of flood) expect(answer.status).toBe(200);

    const again = await Promise.all(flavors.map(get));
    const hits = again.filter((r) => /^Tiercel-Edge; hit/.test(r.headers.get("cache-status") ?? ""));
    expect(hits).toHaveLength(3);
    // Variants already counted keep being served. The first fill did not know the URL varies, so the origin
    // was not sent X-Flavor (cache.requestHeaders) and its answer was stored as the variant without it.
    const without = await send(`http://${host}${path}`);
    expect(without.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await without.text()).toBe("for 1");
  });

  it("counts Vary: Cookie like any other field, so per-user cookies stop at the default cap of 32", async () => {
    const { host } = await newSite();
    const path = `/${unique("cookie")}`;
    await origin.route(path, { body: "user {hit}", headers: { "cache-control": "max-age=300", vary: "Cookie" } });
    const statuses: string[] = [];
    for (let i = 0; i < 34; i += 1) {
      const answer = await send(`http://${host}${path}`, { headers: { cookie: `session=${i}` } });
      statuses.push(answer.headers.get("cache-status") ?? "");
    }
    expect(statuses.filter((s) => /detail=storing/.test(s))).toHaveLength(32);
    expect(statuses.slice(32).every((s) => s.includes("detail=not-stored-variants"))).toBe(true);
  });
});
