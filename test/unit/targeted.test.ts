import { describe, expect, it } from "vitest";
import { freshnessLifetime } from "../../src/core/http/freshness";
import { parseDictionary } from "../../src/core/http/structured-fields";
import { consumedTargetedFields, DEFAULT_TARGETED_FIELDS, responseDirectives } from "../../src/core/http/targeted";
import { parseSite } from "../../src/sites/schema";

const directives = (headers: Record<string, string>, targets = DEFAULT_TARGETED_FIELDS) =>
  responseDirectives(new Headers(headers), targets);

describe("parseDictionary (RFC 8941 §4.2.2)", () => {
  it("reads bare keys as true, integers, strings, tokens and parameters", () => {
    const dict = parseDictionary(
      'max-age=60, no-store, private="x-user, set-cookie";p=1, x=tok/en, d=1.5, b=:AAE=:, f=?0',
    );
    expect(dict?.get("max-age")).toEqual({ item: { type: "integer", value: 60 }, params: new Map() });
    expect(dict?.get("no-store")).toEqual({ item: { type: "boolean", value: true }, params: new Map() });
    expect(dict?.get("private")).toEqual({
      item: { type: "string", value: "x-user, set-cookie" },
      params: new Map([["p", { type: "integer", value: 1 }]]),
    });
    expect(dict?.get("x")).toMatchObject({ item: { type: "token", value: "tok/en" } });
    expect(dict?.get("d")).toMatchObject({ item: { type: "decimal", value: 1.5 } });
    expect(dict?.get("b")).toMatchObject({ item: { type: "bytes", value: "AAE=" } });
    expect(dict?.get("f")).toMatchObject({ item: { type: "boolean", value: false } });
  });

  it("reads inner lists, and lets a later duplicate key win (§4.2.2)", () => {
    const dict = parseDictionary("a=(1 2), max-age=1, max-age=2");
    expect(dict?.get("a")).toMatchObject({ inner: [{ item: { value: 1 } }, { item: { value: 2 } }] });
    expect(dict?.get("max-age")).toMatchObject({ item: { value: 2 } });
  });

  it.each([
    ["an upper-case key", "Max-Age=60"],
    ["a trailing comma", "max-age=60,"],
    ["a quoted integer's stray characters", 'max-age="60'],
    ["an integer of 16 digits", "max-age=1234567890123456"],
    ["a decimal with four fraction digits", "max-age=1.2345"],
    ["a bad boolean", "no-store=?2"],
    ["an unknown escape in a string", 'private="a\\b"'],
    ["a space before =", "max-age =60"],
    ["an empty member", "max-age=60,,no-store"],
    ["a key starting with a digit", "1x=1"],
    ["garbage", "max-age=60; ; ;"],
  ])("refuses %s", (_, value) => {
    expect(parseDictionary(value)).toBeUndefined();
  });
});

describe("responseDirectives (RFC 9213 §2)", () => {
  it("uses the first targeted field on the list over Cache-Control, and says which (§2.2)", () => {
    const cc = directives({
      "cache-control": "no-store",
      "cdn-cache-control": "max-age=30",
      "tiercel-cache-control": "max-age=60, stale-while-revalidate=10",
    });
    expect(cc).toMatchObject({
      maxAge: 60,
      staleWhileRevalidate: 10,
      noStore: false,
      targeted: "tiercel-cache-control",
    });
  });

  it("falls through an invalid or empty targeted field to the next one, then to Cache-Control (§2.1, §2.2)", () => {
    expect(directives({ "tiercel-cache-control": "Max-Age=1", "cdn-cache-control": "max-age=30" })).toMatchObject({
      maxAge: 30,
      targeted: "cdn-cache-control",
    });
    const fallback = directives({
      "tiercel-cache-control": "",
      "cdn-cache-control": "max-age=30,",
      "cache-control": "max-age=5",
    });
    expect(fallback.maxAge).toBe(5);
    expect(fallback.targeted).toBeUndefined();
  });

  it("ignores targeted fields the site does not list (§2.2)", () => {
    const cc = directives({ "cdn-cache-control": "no-store", "cache-control": "max-age=5" }, ["Tiercel-Cache-Control"]);
    expect(cc).toMatchObject({ maxAge: 5, noStore: false });
  });

  it("maps every directive Tiercel acts on", () => {
    const cc = directives({
      "cdn-cache-control":
        's-maxage=9, max-age=8, no-cache="x-a, x-b", private, must-revalidate, proxy-revalidate, stale-if-error=7, public, immutable',
    });
    expect(cc).toMatchObject({
      sMaxAge: 9,
      maxAge: 8,
      noCache: ["x-a", "x-b"],
      private: true,
      mustRevalidate: true,
      proxyRevalidate: true,
      staleIfError: 7,
      public: true,
      immutable: true,
    });
  });

  it("does not consume a lifetime of the wrong type as a number: a decimal, string or negative max-age is invalid, so stale (§2.1)", () => {
    for (const value of ["1.5", '"60"', "-1", "tok", "(1 2)"]) {
      expect(Number.isNaN(directives({ "cdn-cache-control": `max-age=${value}` }).maxAge)).toBe(true);
    }
  });

  it("lets a restricting directive restrict whatever its value, unless it is ?0; public only counts as true (§2.1)", () => {
    expect(directives({ "cdn-cache-control": "no-store=1" }).noStore).toBe(true);
    expect(directives({ "cdn-cache-control": "no-store=?0, max-age=5" }).noStore).toBe(false);
    expect(directives({ "cdn-cache-control": "private=tok" }).private).toBe(true);
    expect(directives({ "cdn-cache-control": "public=1, max-age=5" }).public).toBe(false);
  });

  it("ignores parameters on directives (§2.1)", () => {
    expect(directives({ "cdn-cache-control": "max-age=60;foo=bar" }).maxAge).toBe(60);
  });
});

describe("consumedTargetedFields", () => {
  it("strips the fields aimed at Tiercel alone and passes CDN-Cache-Control on", () => {
    expect(consumedTargetedFields(["Tiercel-Cache-Control", "CDN-Cache-Control", "Acme-Cache-Control"])).toEqual([
      "tiercel-cache-control",
      "acme-cache-control",
    ]);
  });
});

describe("targeted fields and Expires (RFC 9213 §2.2)", () => {
  it("ignores Expires when a targeted field is used, and only then", () => {
    const T = Date.UTC(2024, 0, 15, 12, 0, 0);
    const base = { date: new Date(T).toUTCString(), expires: new Date(T + 3_600_000).toUTCString() };
    const lifetime = (headers: Record<string, string>) => {
      const h = new Headers(headers);
      return freshnessLifetime({
        status: 200,
        headers: h,
        cc: responseDirectives(h, DEFAULT_TARGETED_FIELDS),
        responseTime: T,
      });
    };
    expect(lifetime(base)).toBe(3600);
    expect(lifetime({ ...base, "cdn-cache-control": "no-cache" })).toBe(0);
    expect(lifetime({ ...base, "cdn-cache-control": "max-age=20" })).toBe(20);
  });
});

describe("site config: cache.targetedFields", () => {
  const site = (cache: unknown) => ({ id: "abcdefgh", origin: { kind: "http", url: "https://example.com" }, cache });

  it("defaults to Tiercel-Cache-Control then CDN-Cache-Control, so existing configs stay valid", () => {
    expect(parseSite(site({}), "t").cache.targetedFields).toEqual(["Tiercel-Cache-Control", "CDN-Cache-Control"]);
  });

  it.each([
    ["a name with a space", ["Bad Name"]],
    ["Cache-Control itself", ["cache-control"]],
    ["more than eight names", Array.from({ length: 9 }, (_, i) => `X-${i}`)],
  ])("refuses %s with its field path", (_, targetedFields) => {
    expect(() => parseSite(site({ targetedFields }), "t")).toThrow(/cache\.targetedFields/);
  });
});
