import { describe, expect, it } from "vitest";
import {
  type CacheKeyParts,
  cacheKey,
  keyedQuery,
  keyedUrl,
  keyPartsFor,
  optionsVariant,
  queryPolicyOf,
  selectingValues,
} from "../../src/core/keys";
import { type OptimizeOptions, parseSite } from "../../src/sites/schema";

describe("cacheKey", () => {
  it("is 64 lower-case hex characters (SHA-256)", async () => {
    expect(await cacheKey({ siteId: "site", path: "/", query: "" })).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is the same for the same parts, every time", async () => {
    const parts = { siteId: "site-1", path: "/assets/app.js", query: "?v=3" };
    const first = await cacheKey(parts);
    expect(await cacheKey({ ...parts })).toBe(first);
    expect(await cacheKey({ siteId: "site-1", path: "/assets/app.js", query: "?v=3" })).toBe(first);
  });

  it("is the SHA-256 of the tagged JSON tuple, so a format change cannot go unnoticed", async () => {
    // sha256('["tiercel/key/2","a",0,"","/b",""]'), computed independently (sha256sum).
    expect(await cacheKey({ siteId: "a", path: "/b", query: "" })).toBe(
      "46f7a71a4d4c6f84f316876dd8aa26d44bee94b7bcbc06016d08aaaf8c3c3ee8",
    );
  });

  it("never gives two different requests the same key, however the parts are cut", async () => {
    const parts: CacheKeyParts[] = [
      { siteId: "a", path: "/b", query: "" },
      // The same characters with the boundary moved: a delimiter-joined key would collide here.
      { siteId: "a/", path: "b", query: "" },
      { siteId: "", path: "a/b", query: "" },
      { siteId: "a", path: "/b?", query: "" },
      { siteId: "a", path: "/b?x", query: "" },
      // An empty query is not the same as a bare "?".
      { siteId: "a", path: "/b", query: "?" },
      { siteId: "a", path: "/b", query: "?x" },
      { siteId: "a", path: "", query: "/b" },
      // Characters that would break out of a naive JSON or delimiter encoding.
      { siteId: 'a","/b', path: "", query: "" },
      { siteId: "a", path: '/b","', query: "" },
      { siteId: "a\u0000", path: "/b", query: "" },
      { siteId: "a", path: "/b\\", query: "" },
      // Other sites, paths and queries.
      { siteId: "b", path: "/b", query: "" },
      { siteId: "A", path: "/b", query: "" },
      { siteId: "a", path: "/B", query: "" },
      { siteId: "a", path: "/%62", query: "" },
      { siteId: "a", path: "/b/", query: "" },
      { siteId: "a", path: "/b", query: "?a=1&b=2" },
      { siteId: "a", path: "/b", query: "?b=2&a=1" },
      { siteId: "a", path: "/b", query: "?a=%31&b=2" },
    ];
    const keys = await Promise.all(parts.map((p) => cacheKey(p)));
    expect(new Set(keys).size).toBe(parts.length);
  });
});

const OFF = {
  polish: "off",
  quality: 80,
  formats: [],
  resize: false,
  minify: { html: false, css: false, js: false },
  engine: "wasm",
} as const;
const site = (
  id: string,
  generation = 0,
  optimize: OptimizeOptions = { ...OFF, formats: [], minify: { ...OFF.minify } },
) => ({
  id,
  generation,
  optimize,
  origin: { kind: "http" as const },
  cache: {},
});

describe("keyPartsFor", () => {
  it("takes the path and the exact query string, order and encoding kept", () => {
    expect(keyPartsFor(site("site-1"), new URL("https://example.com/a%20b/c.js?b=2&a=%31"))).toEqual({
      siteId: "site-1",
      generation: 0,
      variant: "",
      path: "/a%20b/c.js",
      query: "?b=2&a=%31",
    });
  });

  it('gives "" for the query when the URL has none', () => {
    expect(keyPartsFor(site("site-1"), new URL("https://example.com/index.html"))).toEqual({
      siteId: "site-1",
      generation: 0,
      variant: "",
      path: "/index.html",
      query: "",
    });
  });

  it("ignores the host, scheme, port and fragment: only the site id identifies the site", () => {
    const a = keyPartsFor(site("site-1"), new URL("https://example.com/p?q=1#top"));
    const b = keyPartsFor(site("site-1"), new URL("http://www.example.org:8787/p?q=1"));
    expect(a).toEqual(b);
    expect(a).toEqual({ siteId: "site-1", generation: 0, variant: "", path: "/p", query: "?q=1" });
  });

  it("feeds cacheKey so that different queries on one path get different keys", async () => {
    const one = await cacheKey(keyPartsFor(site("s"), new URL("https://example.com/p?a=1")));
    const two = await cacheKey(keyPartsFor(site("s"), new URL("https://example.com/p?a=2")));
    const none = await cacheKey(keyPartsFor(site("s"), new URL("https://example.com/p")));
    expect(new Set([one, two, none]).size).toBe(3);
  });
});

describe("keys and site options", () => {
  const url = new URL("https://example.com/img.png");

  it("gives a new key when the generation is bumped (purge everything)", async () => {
    expect(await cacheKey(keyPartsFor(site("s", 0), url))).not.toBe(await cacheKey(keyPartsFor(site("s", 1), url)));
  });

  it("gives a new key when an option that changes the bytes changes", async () => {
    const polished = site("s", 0, { ...OFF, polish: "lossy", formats: [], minify: { ...OFF.minify } });
    expect(await cacheKey(keyPartsFor(polished, url))).not.toBe(await cacheKey(keyPartsFor(site("s"), url)));
  });

  it("normalizes the options: the order of formats does not matter", () => {
    const a = optionsVariant({ ...OFF, formats: ["webp", "avif"], minify: { ...OFF.minify } });
    const b = optionsVariant({ ...OFF, formats: ["avif", "webp"], minify: { ...OFF.minify } });
    expect(a).toBe(b);
    expect(a).not.toBe("");
  });

  it('is "" when every option is off, so a default site keeps its keys', () => {
    expect(optionsVariant({ ...OFF, formats: [], minify: { ...OFF.minify } })).toBe("");
  });

  it("takes quality and engine when something uses them, and leaves out the resize allow-lists", () => {
    const lossy: OptimizeOptions = { ...OFF, polish: "lossy", formats: [], minify: { ...OFF.minify } };
    expect(optionsVariant({ ...lossy, quality: 60 })).not.toBe(optionsVariant(lossy));
    expect(optionsVariant({ ...lossy, engine: "cloudflare" })).not.toBe(optionsVariant(lossy));
    expect(optionsVariant({ ...lossy, resize: { widths: [320], heights: [], qualities: [] } })).toBe(
      optionsVariant(lossy),
    );
    // Nothing on that transforms every response: quality, engine and resize alone change no key.
    expect(optionsVariant({ ...OFF, formats: [], minify: { ...OFF.minify }, quality: 50, resize: true })).toBe("");
  });
});

describe("resize URL keys", () => {
  it("keys a resize URL apart from its source and from other options, and leaves other keys as they were", async () => {
    const url = new URL("https://example.com/photo.jpg");
    const plain = keyPartsFor(site("s"), url);
    expect(plain).not.toHaveProperty("transform");
    const small = await cacheKey(keyPartsFor(site("s"), url, "w=320,fit=scale-down,q=80,f=auto,engine=wasm"));
    const large = await cacheKey(keyPartsFor(site("s"), url, "w=640,fit=scale-down,q=80,f=auto,engine=wasm"));
    expect(new Set([await cacheKey(plain), small, large]).size).toBe(3);
  });
});

describe("format negotiation in variant keys", () => {
  const field = ":format=avif,webp";
  const values = (accept: string | null) => {
    const headers = new Headers(accept === null ? {} : { accept });
    return selectingValues([field], headers);
  };

  it("normalizes Accept to the format the request gets, never the raw header", () => {
    expect(values("image/avif,image/webp,image/apng,*/*;q=0.8")).toEqual([[field, "avif"]]);
    expect(values("image/webp,*/*")).toEqual([[field, "webp"]]);
    expect(values("image/avif;q=0, image/webp")).toEqual([[field, "webp"]]);
    expect(values("*/*")).toEqual([[field, "original"]]);
    expect(values("image/*")).toEqual([[field, "original"]]);
    expect(values(null)).toEqual([[field, "original"]]);
  });
});

describe("keyedQuery (the site's query policy)", () => {
  const search = "?utm_source=x&b=2&a=%31&a=0&r=abc";

  it("keeps everything as received under all, and nothing under none", () => {
    expect(keyedQuery(search, "all")).toBe(search);
    expect(keyedQuery(search, "none")).toBe("");
  });

  it("keeps only allow-listed names, in place, with their encoding and repeats", () => {
    expect(keyedQuery(search, { allow: ["a", "b"], sort: false })).toBe("?b=2&a=%31&a=0");
    expect(keyedQuery("?utm_source=x", { allow: ["a"], sort: false })).toBe("");
    expect(keyedQuery("", { allow: ["a"], sort: false })).toBe("");
  });

  it("compares decoded names, exactly and case-sensitively", () => {
    expect(keyedQuery("?my%20name=1&my+name=2&My+Name=3&a&=4", { allow: ["my name", "a"], sort: false })).toBe(
      "?my%20name=1&my+name=2&a",
    );
  });

  it("sorts by name, stably, when asked", () => {
    expect(keyedQuery("?b=2&a=2&c=1&a=1", { allow: ["a", "b"], sort: true })).toBe("?a=2&a=1&b=2");
  });

  it("defaults to none for bucket sites and all for http sites, and keyPartsFor applies it", async () => {
    const bucket = { ...site("s"), origin: { kind: "s3" as const } };
    expect(queryPolicyOf(bucket)).toBe("none");
    expect(queryPolicyOf(site("s"))).toBe("all");
    const busted = await cacheKey(keyPartsFor(bucket, new URL("https://example.com/p.jpg?r=1")));
    expect(await cacheKey(keyPartsFor(bucket, new URL("https://example.com/p.jpg?r=2")))).toBe(busted);
    expect(await cacheKey(keyPartsFor(bucket, new URL("https://example.com/p.jpg")))).toBe(busted);
    const listed = { ...site("s"), cache: { query: { allow: ["v"], sort: false } } };
    expect(keyPartsFor(listed, new URL("https://example.com/p?v=3&r=9")).query).toBe("?v=3");
    expect(keyedUrl(listed, new URL("https://example.com/p?r=9&v=3")).href).toBe("https://example.com/p?v=3");
  });

  it("is validated where the config enters", () => {
    const base = { id: "site-query-1", origin: { kind: "http", url: "https://example.com" } };
    expect(parseSite({ ...base, cache: { query: { allow: ["v"] } } }, "t").cache.query).toEqual({
      allow: ["v"],
      sort: false,
    });
    expect(() => parseSite({ ...base, cache: { query: "some" } }, "t")).toThrow(/cache\.query/);
    expect(() => parseSite({ ...base, cache: { query: { allow: [] } } }, "t")).toThrow(/cache\.query\.allow/);
    expect(() => parseSite({ ...base, cache: { grace: -1 } }, "t")).toThrow(/cache\.grace/);
    expect(parseSite(base, "t").cache).toMatchObject({ grace: 86_400, maxVariants: 32 });
  });
});
