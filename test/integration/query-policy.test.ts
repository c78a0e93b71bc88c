import { describe, expect, it } from "vitest";
import { bucket, newBucketSite, newSite, origin, putSite, send, unique } from "../support/harness";

/**
 * The site's query policy (`cache.query`): what part of the query takes part in the key is exactly what
 * the origin receives. Whole requests in workerd against the loopback origin and the SigV4 bucket.
 */

describe("query policy", () => {
  it("makes random query busting on a bucket site one origin GET (default none)", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("busting")}.txt`;
    await bucket.put("test-bucket", key, "object", { cacheControl: "max-age=300" });
    const answers = [];
    for (let i = 0; i < 6; i += 1) answers.push(await send(`http://${host}/${key}?r=${Math.random()}`));
    for (const answer of answers) expect(await answer.text()).toBe("object");
    expect(answers[5]?.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await bucket.hits("test-bucket", key)).hits).toBe(1);
  });

  it("keys on all of the query, as received, for http sites by default", async () => {
    const { host } = await newSite();
    const path = `/${unique("all")}`;
    await send(`http://${host}${path}?b=2&a=1`);
    await send(`http://${host}${path}?a=1&b=2`);
    expect((await origin.hits(path)).hits).toBe(2);
    expect((await origin.hits(path)).last?.url).toBe(`${path}?a=1&b=2`);
  });

  it("keys on allow-listed parameters only, and the origin receives exactly those", async () => {
    const host = `${unique("allow")}.test`;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache: { query: { allow: ["page", "lang"] } },
    });
    const path = `/${unique("listed")}`;
    const first = await send(`http://${host}${path}?utm_source=mail&page=2&lang=fr&fbclid=x`);
    expect(await first.text()).toBe(`GET ${path}?page=2&lang=fr #1`);
    expect((await origin.hits(path)).last?.url).toBe(`${path}?page=2&lang=fr`);
    const again = await send(`http://${host}${path}?page=2&lang=fr&utm_source=web`);
    expect(again.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    await send(`http://${host}${path}?page=3&lang=fr`);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("sorts the kept parameters when asked, so their order makes one key", async () => {
    const host = `${unique("sorted")}.test`;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache: { query: { allow: ["a", "b"], sort: true } },
    });
    const path = `/${unique("sorted")}`;
    await send(`http://${host}${path}?b=2&x=0&a=1`);
    expect((await origin.hits(path)).last?.url).toBe(`${path}?a=1&b=2`);
    const swapped = await send(`http://${host}${path}?a=1&b=2`);
    expect(swapped.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("sends no query at all under none, with many concurrent busting readers making one fetch", async () => {
    const host = `${unique("none")}.test`;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache: { query: "none" },
    });
    const path = `/${unique("none")}`;
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => send(`http://${host}${path}?r=${i}`)));
    for (const answer of answers) expect(await answer.text()).toBe(`GET ${path} #1`);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("leaves requests that bypass the cache untouched", async () => {
    const host = `${unique("bypass")}.test`;
    await putSite(host, {
      id: unique("id"),
      origin: { kind: "http", url: origin.url, allowPrivate: true },
      cache: { query: "none" },
    });
    const path = `/${unique("post")}`;
    await send(`http://${host}${path}?action=save`, { method: "POST", body: "x" });
    expect((await origin.hits(path)).last?.url).toBe(`${path}?action=save`);
  });
});
