import { describe, expect, it } from "vitest";
import {
  buildEntry,
  type EntryInput,
  entryAge,
  entryHeaders,
  entryTtl,
  isStoredEntry,
  retentionOf,
  type StoredEntry,
} from "../../src/core/entry";
import { decide, stalenessOf } from "../../src/core/http/decision";
import type { UsePolicy } from "../../src/core/policy";
import { NO_PURGES, softPurgedAt } from "../../src/core/purge";

/** A fixed instant (2024-01-15T12:00:00Z); every other time is an offset from it. */
const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const SECOND = 1000;
const DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
const USE: UsePolicy = { lifetime: 60, swr: 0, sie: 0, mustRevalidate: false, noCache: false, grace: 0 };

/** The decision function's answers, asked the way the pipeline and the fill ask it. */
const isFresh = (e: StoredEntry, now: number) =>
  decide({ request: { method: "GET" }, stored: { record: e, purge: "none" }, policy: { grace: 0 }, now }).action ===
  "serve";
const servedStaleWhen = (e: StoredEntry, siteGrace: number, now: number, unreachable: boolean, purgedAt?: number) =>
  decide({
    request: { method: "GET" },
    stored:
      purgedAt === undefined ? { record: e, purge: "none" } : { record: e, purge: "soft", softPurgedAt: purgedAt },
    policy: { grace: siteGrace },
    now,
    origin: { kind: "failed", unreachable },
  }).action === "serve-stale";
const withinGrace = (e: StoredEntry, siteGrace: number, now: number) => servedStaleWhen(e, siteGrace, now, true);
const withinStaleIfError = (e: StoredEntry, now: number, purgedAt?: number) =>
  servedStaleWhen(e, 0, now, false, purgedAt);

function input(headers: HeadersInit, overrides: Partial<EntryInput> = {}): EntryInput {
  return {
    status: 200,
    headers: new Headers(headers),
    requestTime: T - 2 * SECOND,
    responseTime: T,
    storedAt: T + 1 * SECOND,
    vary: [],
    length: 0,
    digest: DIGEST,
    use: USE,
    ...overrides,
  };
}

/** An entry with a given lifetime and initial age, received at T. */
function entry(lifetime: number, initialAge: number, use: Partial<UsePolicy> = {}): StoredEntry {
  return { ...buildEntry(input({}, { use: { ...USE, ...use } })), lifetime, initialAge };
}

describe("buildEntry", () => {
  it("records the exchange: status, times, vary, length and digest as given", () => {
    const e = buildEntry(
      input({ "content-type": "text/css" }, { status: 404, vary: ["accept-language"], length: 1234 }),
    );
    expect(e).toMatchObject({
      v: 1,
      status: 404,
      requestTime: T - 2 * SECOND,
      responseTime: T,
      storedAt: T + 1 * SECOND,
      vary: ["accept-language"],
      length: 1234,
      digest: DIGEST,
    });
  });

  it("stores end-to-end headers only, without Age and Content-Length (RFC 9111 §3.1, RFC 9110 §7.6.1)", () => {
    const e = buildEntry(
      input({
        age: "30",
        "content-length": "5",
        connection: "x-debug",
        "x-debug": "1",
        "transfer-encoding": "chunked",
        "content-type": "text/plain",
        "cache-control": "max-age=600",
      }),
    );
    expect(e.headers).toEqual([
      ["cache-control", "max-age=600"],
      ["content-type", "text/plain"],
    ]);
  });

  it("keeps each Set-Cookie as its own pair", () => {
    const headers = new Headers({ "content-type": "text/plain" });
    headers.append("set-cookie", "a=1");
    headers.append("set-cookie", "b=2; Expires=Thu, 01 Jan 2099 00:00:00 GMT");
    expect(buildEntry(input(headers)).headers).toEqual([
      ["content-type", "text/plain"],
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2; Expires=Thu, 01 Jan 2099 00:00:00 GMT"],
    ]);
  });

  it("takes the lifetime, stale windows and revalidation flags from the use policy", () => {
    const use: UsePolicy = { lifetime: 600, swr: 30, sie: 300, mustRevalidate: true, noCache: true, grace: 0 };
    // The response's own Cache-Control does not override the policy resolved for it.
    const e = buildEntry(input({ "cache-control": "max-age=5" }, { use }));
    expect(e).toMatchObject({ lifetime: 600, swr: 30, sie: 300, mustRevalidate: true, noCache: true });
  });

  it("computes the corrected initial age from the Age it strips (RFC 9111 §4.2.3)", () => {
    // corrected_age_value = 30 + (T − (T − 2 s)) = 32; apparent_age = 5
    const e = buildEntry(input({ age: "30", date: new Date(T - 5 * SECOND).toUTCString() }));
    expect(e.initialAge).toBe(32);
    expect(e.headers.some(([name]) => name === "age")).toBe(false);
  });

  it("keeps ETag and Last-Modified as validators (RFC 9110 §8.8)", () => {
    const e = buildEntry(input({ etag: 'W/"abc"', "last-modified": "Mon, 15 Jan 2024 11:00:00 GMT" }));
    expect(e.etag).toBe('W/"abc"');
    expect(e.lastModified).toBe("Mon, 15 Jan 2024 11:00:00 GMT");
  });

  it("leaves the validators out when the response has none", () => {
    const e = buildEntry(input({}));
    expect("etag" in e).toBe(false);
    expect("lastModified" in e).toBe(false);
  });

  it("reads tags from Cache-Tag (commas) and Surrogate-Key (spaces), trimmed and de-duplicated", () => {
    const e = buildEntry(input({ "cache-tag": " product-1, css ,,product-1", "surrogate-key": "  css  home\tnews " }));
    expect(e.tags).toEqual(["product-1", "css", "home", "news"]);
  });

  it("has no tags without Cache-Tag or Surrogate-Key", () => {
    expect(buildEntry(input({})).tags).toEqual([]);
  });

  it("builds a record that isStoredEntry accepts after a JSON round trip", () => {
    const e = buildEntry(input({ "cache-control": "max-age=60", etag: '"x"', "cache-tag": "a" }));
    expect(isStoredEntry(JSON.parse(JSON.stringify(e)))).toBe(true);
  });
});

describe("entryTtl and isFresh (RFC 9111 §4.2)", () => {
  it("is the lifetime minus the current age (RFC 9111 §4.2)", () => {
    const e = entry(60, 10);
    expect(entryTtl(e, T)).toBe(50);
    expect(entryTtl(e, T + 20 * SECOND)).toBe(30);
    expect(entryTtl(e, T + 500)).toBe(49.5);
  });

  it("is fresh while the freshness lifetime exceeds the current age (RFC 9111 §4.2)", () => {
    const e = entry(60, 10);
    expect(isFresh(e, T)).toBe(true);
    expect(isFresh(e, T + 49_999)).toBe(true);
  });

  it("is stale once the current age reaches the freshness lifetime (RFC 9111 §4.2)", () => {
    const e = entry(60, 10);
    expect(entryTtl(e, T + 50 * SECOND)).toBe(0);
    expect(isFresh(e, T + 50 * SECOND)).toBe(false);
    expect(entryTtl(e, T + 80 * SECOND)).toBe(-30);
    expect(isFresh(e, T + 80 * SECOND)).toBe(false);
  });

  it("is never fresh with no-cache, which needs validation before every use (RFC 9111 §5.2.2.4)", () => {
    const e = entry(60, 0, { noCache: true });
    expect(entryTtl(e, T)).toBe(60);
    expect(isFresh(e, T)).toBe(false);
  });

  it("is never fresh with a lifetime of zero (RFC 9111 §4.2)", () => {
    expect(isFresh(entry(0, 0), T)).toBe(false);
  });

  it("is stale from the start when the initial age already exceeds the lifetime (RFC 9111 §4.2.3)", () => {
    expect(isFresh(entry(60, 90), T)).toBe(false);
    expect(entryTtl(entry(60, 90), T)).toBe(-30);
  });

  it("uses the entry's own times, so a built entry ages as the clock passed in moves", () => {
    const e = buildEntry(input({ date: new Date(T).toUTCString() }, { use: { ...USE, lifetime: 100 } }));
    // initial age = response delay of 2 s
    expect(entryTtl(e, T)).toBe(98);
    expect(isFresh(e, T + 97 * SECOND)).toBe(true);
    expect(isFresh(e, T + 98 * SECOND)).toBe(false);
  });
});

describe("entryAge (RFC 9111 §5.1)", () => {
  it("is the current age in whole seconds, rounded down (RFC 9111 §5.1)", () => {
    const e = entry(60, 10);
    expect(entryAge(e, T)).toBe(10);
    expect(entryAge(e, T + 999)).toBe(10);
    expect(entryAge(e, T + 1000)).toBe(11);
    expect(entryAge(entry(60, 2.5), T)).toBe(2);
  });
});

describe("entryHeaders", () => {
  it("gives back the stored headers, Set-Cookie fields still apart", () => {
    const e = {
      ...entry(60, 0),
      headers: [
        ["content-type", "text/plain"],
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
      ] as [string, string][],
    };
    const headers = entryHeaders(e);
    expect(headers.get("content-type")).toBe("text/plain");
    expect(headers.getSetCookie()).toEqual(["a=1", "b=2"]);
  });
});

describe("isStoredEntry", () => {
  const valid: StoredEntry = {
    v: 1,
    status: 200,
    headers: [["content-type", "text/plain"]],
    requestTime: T - 2 * SECOND,
    responseTime: T,
    storedAt: T,
    initialAge: 2,
    lifetime: 60,
    swr: 0,
    sie: 0,
    mustRevalidate: false,
    noCache: false,
    vary: [],
    tags: ["a"],
    length: 5,
    digest: DIGEST,
  };

  it("accepts a well-formed record", () => {
    expect(isStoredEntry(valid)).toBe(true);
    expect(isStoredEntry({ ...valid, etag: '"x"', lastModified: "Mon, 15 Jan 2024 11:00:00 GMT" })).toBe(true);
  });

  it.each([null, undefined, 42, "entry", true, []])("rejects %j, which is not a record", (value) => {
    expect(isStoredEntry(value)).toBe(false);
  });

  it.each<[string, Record<string, unknown>]>([
    ["another format version", { v: 2 }],
    ["a string version", { v: "1" }],
    ["a string status", { status: "200" }],
    ["a fractional status", { status: 200.5 }],
    ["headers that are not a list", { headers: { "content-type": "text/plain" } }],
    ["a header that is not a pair", { headers: [["content-type"]] }],
    ["a header with three parts", { headers: [["a", "b", "c"]] }],
    ["a header with a number value", { headers: [["content-length", 5]] }],
    ["a header that is a string", { headers: ["content-type: text/plain"] }],
    ["a missing requestTime", { requestTime: undefined }],
    ["a string responseTime", { responseTime: String(T) }],
    ["a NaN storedAt", { storedAt: Number.NaN }],
    ["an infinite lifetime", { lifetime: Number.POSITIVE_INFINITY }],
    ["a missing swr", { swr: undefined }],
    ["a string sie", { sie: "0" }],
    ["a missing mustRevalidate", { mustRevalidate: undefined }],
    ["a numeric noCache", { noCache: 0 }],
    ["a null initialAge", { initialAge: null }],
    ["a missing length", { length: undefined }],
    ["vary that is not a list", { vary: "accept-language" }],
    ["tags that are not a list", { tags: "a" }],
    ["a missing digest", { digest: undefined }],
  ])("rejects a record with %s", (_, change) => {
    expect(isStoredEntry({ ...valid, ...change })).toBe(false);
  });
});

describe("grace and soft purges (RFC 9111 §4.2.4)", () => {
  it("serves within the smaller of the stored grace and the site's, never when prohibited", () => {
    const e = entry(60, 0, { grace: 100 });
    expect(withinGrace(e, 86_400, T + 150 * SECOND)).toBe(true);
    expect(withinGrace(e, 86_400, T + 170 * SECOND)).toBe(false);
    expect(withinGrace(e, 30, T + 100 * SECOND)).toBe(false);
    expect(withinGrace(entry(60, 0, { grace: 100, mustRevalidate: true }), 86_400, T + 61 * SECOND)).toBe(false);
    expect(withinGrace(entry(60, 0, { grace: 100, noCache: true }), 86_400, T + 61 * SECOND)).toBe(false);
    // A record written before grace existed has none.
    const { grace: _, ...old } = e;
    expect(withinGrace(old, 86_400, T + 61 * SECOND)).toBe(false);
  });

  it("keeps an entry in the tiers for its grace too", () => {
    expect(retentionOf(entry(60, 0, { grace: 1000 }), T)).toBe(1060);
  });

  it("counts staleness from a soft purge that came before expiry", () => {
    const e = entry(3600, 0, { sie: 100 });
    expect(stalenessOf(e, T + 50 * SECOND)).toBe(-3550);
    expect(stalenessOf(e, T + 50 * SECOND, T + 20 * SECOND)).toBe(30);
    expect(withinStaleIfError(e, T + 150 * SECOND)).toBe(true);
    expect(withinStaleIfError(e, T + 150 * SECOND, T + 20 * SECOND)).toBe(false);
  });

  it("finds the earliest soft purge that reached the entry", () => {
    const e = { ...entry(60, 0), tags: ["a", "b"] };
    const softTags = new Map([
      ["a", T + 5000],
      ["b", T + 3000],
      ["c", T],
    ]);
    expect(softPurgedAt(e, { ...NO_PURGES, softTags, softAll: T - 10_000 })).toBe(T + 3000);
    expect(softPurgedAt(e, NO_PURGES)).toBeUndefined();
    // A config that still carries records (before owners kept them apart) counts too.
    const legacy = { urls: {}, tags: {}, softTags: { b: T + 2000 } };
    expect(softPurgedAt(e, { ...NO_PURGES, softTags }, legacy)).toBe(T + 2000);
  });
});
