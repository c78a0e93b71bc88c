import { describe, expect, it } from "vitest";
import {
  freshenHeaders,
  isNotModified,
  notModifiedHeaders,
  parseEntityTag,
  parseEntityTagList,
  strongMatch,
  weakMatch,
} from "../../src/core/http/conditional";

const LAST_MODIFIED = "Sat, 29 Oct 1994 19:43:31 GMT";
const EARLIER = "Sat, 29 Oct 1994 19:43:30 GMT";
const LATER = "Sat, 29 Oct 1994 19:43:32 GMT";

const request = (init: Record<string, string>) => new Headers(init);

describe("isNotModified", () => {
  it("is false for an unconditional request (RFC 9110 §13.2.2)", () => {
    expect(isNotModified(request({}), { etag: '"a"', lastModified: LAST_MODIFIED })).toBe(false);
  });

  describe("If-None-Match (RFC 9110 §13.1.2)", () => {
    it("matches the stored ETag", () => {
      expect(isNotModified(request({ "if-none-match": '"a"' }), { etag: '"a"' })).toBe(true);
    });

    it("does not match a different ETag", () => {
      expect(isNotModified(request({ "if-none-match": '"b"' }), { etag: '"a"' })).toBe(false);
    });

    it.each([
      ['W/"a"', '"a"'],
      ['"a"', 'W/"a"'],
      ['W/"a"', 'W/"a"'],
    ])("uses the weak comparison: %s matches stored %s (§8.8.3.2)", (sent, etag) => {
      expect(isNotModified(request({ "if-none-match": sent }), { etag })).toBe(true);
    });

    it("matches any member of a list, with OWS and empty members (§13.1.2, §5.6.1)", () => {
      expect(isNotModified(request({ "if-none-match": ' , "x",\tW/"y" ,, "a" , ' }), { etag: '"a"' })).toBe(true);
    });

    it("keeps commas inside a quoted entity-tag as part of the tag (§8.8.3)", () => {
      expect(isNotModified(request({ "if-none-match": '"a,b", "c"' }), { etag: '"a,b"' })).toBe(true);
      expect(isNotModified(request({ "if-none-match": '"a,b"' }), { etag: '"a"' })).toBe(false);
      expect(isNotModified(request({ "if-none-match": '"a,b"' }), { etag: '"b"' })).toBe(false);
    });

    it("joins repeated If-None-Match fields into one list (§5.3)", () => {
      const headers = new Headers();
      headers.append("if-none-match", '"x"');
      headers.append("if-none-match", '"a"');
      expect(isNotModified(headers, { etag: '"a"' })).toBe(true);
    });

    it('answers "*" with 304 for any stored response, with or without an ETag (§13.1.2)', () => {
      expect(isNotModified(request({ "if-none-match": "*" }), { etag: '"a"' })).toBe(true);
      expect(isNotModified(request({ "if-none-match": " * " }), {})).toBe(true);
    });

    it("never matches when the stored response has no ETag or an unparseable one (§8.8.3)", () => {
      expect(isNotModified(request({ "if-none-match": '"a"' }), {})).toBe(false);
      expect(isNotModified(request({ "if-none-match": "a" }), { etag: "a" })).toBe(false);
    });

    it.each([
      ["an unquoted tag", 'a, "a"'],
      ["a lower-case weak prefix", 'w/"a"'],
      ["an unterminated quote", '"a'],
      ["junk after a tag", '"a"x'],
      ["two tags without a comma", '"x""a"'],
      ["a space inside the quotes", '"a b", "a"'],
      ["a star inside a list", '*, "a"'],
    ])("matches nothing when the list has %s (§8.8.3)", (_, value) => {
      expect(isNotModified(request({ "if-none-match": value }), { etag: '"a"' })).toBe(false);
    });

    it("makes If-Modified-Since irrelevant when present, even if it does not match (§13.1.3, §13.2.2)", () => {
      const headers = request({ "if-none-match": '"b"', "if-modified-since": LATER });
      expect(isNotModified(headers, { etag: '"a"', lastModified: LAST_MODIFIED })).toBe(false);
    });

    it("wins over a failing If-Modified-Since (§13.2.2 step 3 before step 4)", () => {
      const headers = request({ "if-none-match": '"a"', "if-modified-since": EARLIER });
      expect(isNotModified(headers, { etag: '"a"', lastModified: LAST_MODIFIED })).toBe(true);
    });

    it("is present even when empty, so If-Modified-Since is still ignored (§13.1.3)", () => {
      const headers = request({ "if-none-match": "", "if-modified-since": LATER });
      expect(isNotModified(headers, { etag: '"a"', lastModified: LAST_MODIFIED })).toBe(false);
    });
  });

  describe("If-Modified-Since (RFC 9110 §13.1.3)", () => {
    it.each([
      ["equal to", LAST_MODIFIED, true],
      ["later than", LATER, true],
      ["earlier than", EARLIER, false],
    ])("answers 304 only when Last-Modified is at or before the date: %s", (_, since, expected) => {
      expect(isNotModified(request({ "if-modified-since": since }), { lastModified: LAST_MODIFIED })).toBe(expected);
    });

    it("accepts the obsolete RFC 850 and asctime date formats (§5.6.7)", () => {
      const stored = { lastModified: LAST_MODIFIED };
      expect(isNotModified(request({ "if-modified-since": "Saturday, 29-Oct-94 19:43:31 GMT" }), stored)).toBe(true);
      expect(isNotModified(request({ "if-modified-since": "Sat Oct 29 19:43:31 1994" }), stored)).toBe(true);
    });

    it("ignores an invalid date", () => {
      expect(isNotModified(request({ "if-modified-since": "yesterday" }), { lastModified: LAST_MODIFIED })).toBe(false);
    });

    it("ignores a field with more than one member", () => {
      const headers = new Headers();
      headers.append("if-modified-since", LATER);
      headers.append("if-modified-since", LATER);
      expect(isNotModified(headers, { lastModified: LAST_MODIFIED })).toBe(false);
    });

    it("is false when the stored Last-Modified is absent or invalid", () => {
      expect(isNotModified(request({ "if-modified-since": LATER }), {})).toBe(false);
      expect(isNotModified(request({ "if-modified-since": LATER }), { lastModified: "0" })).toBe(false);
    });
  });
});

describe("notModifiedHeaders", () => {
  const full = {
    "cache-control": "max-age=60",
    "content-location": "/a.en",
    date: LATER,
    etag: '"a"',
    expires: "Sun, 30 Oct 1994 19:43:31 GMT",
    vary: "accept-language",
    "last-modified": LAST_MODIFIED,
    "content-type": "text/html",
    "content-length": "123",
    "content-encoding": "gzip",
    "content-language": "en",
    "cache-tag": "home",
  };

  it("carries Content-Location, Date, ETag, Vary, Cache-Control and Expires, and drops representation metadata (RFC 9110 §15.4.5)", () => {
    expect(Object.fromEntries(notModifiedHeaders(new Headers(full)))).toEqual({
      "cache-control": "max-age=60",
      "content-location": "/a.en",
      date: LATER,
      etag: '"a"',
      expires: "Sun, 30 Oct 1994 19:43:31 GMT",
      vary: "accept-language",
    });
  });

  it("carries Last-Modified only when there is no ETag (§15.4.5)", () => {
    const { etag: _, ...withoutEtag } = full;
    expect(notModifiedHeaders(new Headers(withoutEtag)).get("last-modified")).toBe(LAST_MODIFIED);
  });

  it("leaves out the listed fields the stored response lacks (§15.4.5)", () => {
    expect(Object.fromEntries(notModifiedHeaders(new Headers({ etag: '"a"', "content-type": "text/plain" })))).toEqual({
      etag: '"a"',
    });
  });
});

describe("freshenHeaders", () => {
  const stored = () =>
    new Headers({
      "cache-control": "max-age=60",
      date: EARLIER,
      etag: '"a"',
      "content-type": "text/html",
      "x-kept": "stored",
    });

  it("replaces each field the 304 carries and keeps every other stored field (RFC 9111 §3.2, §4.3.4)", () => {
    const freshened = freshenHeaders(
      stored(),
      new Headers({ "cache-control": "max-age=600", date: LATER, "x-new": "1" }),
    );
    expect(Object.fromEntries(freshened)).toEqual({
      "cache-control": "max-age=600",
      date: LATER,
      etag: '"a"',
      "content-type": "text/html",
      "x-kept": "stored",
      "x-new": "1",
    });
  });

  it("never takes Content-Length from the 304 (RFC 9111 §3.2)", () => {
    const withLength = stored();
    withLength.set("content-length", "123");
    expect(freshenHeaders(withLength, new Headers({ "content-length": "0" })).get("content-length")).toBe("123");
    expect(freshenHeaders(stored(), new Headers({ "content-length": "0" })).has("content-length")).toBe(false);
  });

  it("never takes hop-by-hop fields or those Connection lists from the 304 (RFC 9111 §3.1, RFC 9110 §7.6.1)", () => {
    const notModified = new Headers({
      connection: "close, x-hop",
      "keep-alive": "timeout=5",
      "transfer-encoding": "chunked",
      "x-hop": "1",
      "x-end": "1",
    });
    const freshened = freshenHeaders(stored(), notModified);
    for (const name of ["connection", "keep-alive", "transfer-encoding", "x-hop"]) {
      expect(freshened.has(name)).toBe(false);
    }
    expect(freshened.get("x-end")).toBe("1");
  });

  it("replaces a repeated field as a whole and keeps each Set-Cookie apart (RFC 9111 §3.2)", () => {
    const before = stored();
    before.append("set-cookie", "old=1");
    const notModified = new Headers();
    notModified.append("set-cookie", "a=1; Path=/");
    notModified.append("set-cookie", "b=2, c");
    notModified.append("x-kept", "one");
    notModified.append("x-kept", "two");
    const freshened = freshenHeaders(before, notModified);
    expect(freshened.getSetCookie()).toEqual(["a=1; Path=/", "b=2, c"]);
    expect(freshened.get("x-kept")).toBe("one, two");
  });

  it("keeps stored Set-Cookie values apart when the 304 does not touch them (RFC 9111 §3.2)", () => {
    const before = stored();
    before.append("set-cookie", "a=1");
    before.append("set-cookie", "b=2");
    expect(freshenHeaders(before, new Headers()).getSetCookie()).toEqual(["a=1", "b=2"]);
  });

  it("does not modify its inputs", () => {
    const before = stored();
    const notModified = new Headers({ date: LATER });
    freshenHeaders(before, notModified);
    expect(before.get("date")).toBe(EARLIER);
    expect(Object.fromEntries(notModified)).toEqual({ date: LATER });
  });
});

describe("entity-tags (RFC 9110 §8.8.3)", () => {
  it("parses strong and weak tags, trimming whitespace around the field", () => {
    expect(parseEntityTag(' "a" ')).toEqual({ weak: false, opaque: "a" });
    expect(parseEntityTag('W/"a"')).toEqual({ weak: true, opaque: "a" });
    expect(parseEntityTag('""')).toEqual({ weak: false, opaque: "" });
  });

  it.each(['"a" "b"', "a", 'W/ "a"', '"a'])("rejects %j", (value) => {
    expect(parseEntityTag(value)).toBeUndefined();
  });

  it("parses an empty list as no tags (§5.6.1)", () => {
    expect(parseEntityTagList(" , ")).toEqual([]);
  });

  it.each([
    ['W/"1"', 'W/"1"', false, true],
    ['W/"1"', 'W/"2"', false, false],
    ['W/"1"', '"1"', false, true],
    ['"1"', '"1"', true, true],
  ])("compares %s and %s as in the §8.8.3.2 table: strong %s, weak %s", (a, b, strong, weak) => {
    const x = parseEntityTag(a);
    const y = parseEntityTag(b);
    if (!x || !y) throw new Error("example did not parse");
    expect(strongMatch(x, y)).toBe(strong);
    expect(weakMatch(x, y)).toBe(weak);
  });
});
