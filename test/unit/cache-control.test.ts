import { describe, expect, it } from "vitest";
import { type CacheControl, parseCacheControl } from "../../src/core/http/cache-control";

const NONE: CacheControl = {
  noStore: false,
  noCache: false,
  private: false,
  public: false,
  mustRevalidate: false,
  proxyRevalidate: false,
  immutable: false,
  noTransform: false,
  onlyIfCached: false,
};

describe("parseCacheControl", () => {
  it.each([null, undefined, ""])("gives every flag false and no deltas for %j", (value) => {
    expect(parseCacheControl(value)).toEqual(NONE);
  });

  it("reads every response and request directive it knows (RFC 9111 §5.2.1, §5.2.2; RFC 5861)", () => {
    const cc = parseCacheControl(
      "max-age=60, s-maxage=120, no-store, no-cache, private, public, must-revalidate, proxy-revalidate, " +
        "immutable, no-transform, only-if-cached, max-stale=5, min-fresh=6, stale-while-revalidate=7, stale-if-error=8",
    );
    expect(cc).toEqual({
      maxAge: 60,
      sMaxAge: 120,
      noStore: true,
      noCache: true,
      private: true,
      public: true,
      mustRevalidate: true,
      proxyRevalidate: true,
      immutable: true,
      noTransform: true,
      onlyIfCached: true,
      maxStale: 5,
      minFresh: 6,
      staleWhileRevalidate: 7,
      staleIfError: 8,
    });
  });

  it("ignores unknown directives and extension arguments (RFC 9111 §5.2.3)", () => {
    expect(parseCacheControl('community="UCI", foo, bar=1, max-age=30')).toEqual({ ...NONE, maxAge: 30 });
  });

  it("matches directive names case-insensitively (RFC 9111 §5.2)", () => {
    expect(parseCacheControl("MAX-AGE=10, No-Store, Public")).toEqual({
      ...NONE,
      maxAge: 10,
      noStore: true,
      public: true,
    });
  });

  it("tolerates whitespace around names, equals signs and values, and empty list members (RFC 9110 §5.6.1)", () => {
    expect(parseCacheControl(" ,, max-age = 10 ,\tpublic ,")).toEqual({ ...NONE, maxAge: 10, public: true });
  });

  it('accepts a quoted delta-seconds (RFC 9111 §5.2: max-age=5 and max-age="5" are equivalent)', () => {
    expect(parseCacheControl('max-age="5", s-maxage="7"')).toMatchObject({ maxAge: 5, sMaxAge: 7 });
  });

  it("does not split on commas inside a quoted string (RFC 9110 §5.6.4)", () => {
    const cc = parseCacheControl('no-cache="Set-Cookie, X-Secret", max-age=30');
    expect(cc.noCache).toEqual(["set-cookie", "x-secret"]);
    expect(cc.maxAge).toBe(30);
  });

  it("tolerates whitespace between the equals sign and a quoted string", () => {
    expect(parseCacheControl('no-cache= "Set-Cookie, X-Secret"').noCache).toEqual(["set-cookie", "x-secret"]);
  });

  it("unescapes quoted-pairs inside a quoted string (RFC 9110 §5.6.4)", () => {
    // A directive after an escaped quote is still seen, so the string really ended at the unescaped one.
    const cc = parseCacheControl('ext="a\\"b, max-age=1", max-age=9');
    expect(cc.maxAge).toBe(9);
  });

  describe("qualified no-cache and private", () => {
    it("gives true for a bare no-cache (RFC 9111 §5.2.2.4)", () => {
      expect(parseCacheControl("no-cache").noCache).toBe(true);
    });

    it("gives the lower-cased field names for a qualified no-cache (RFC 9111 §5.2.2.4)", () => {
      expect(parseCacheControl('no-cache="Set-Cookie"').noCache).toEqual(["set-cookie"]);
    });

    it("gives the lower-cased field names for a qualified private (RFC 9111 §5.2.2.7)", () => {
      expect(parseCacheControl('private="Authorization, X-User"').private).toEqual(["authorization", "x-user"]);
    });

    it("accepts the token form of a single field name, which senders should not use but recipients see (RFC 9111 §5.2.2.4)", () => {
      expect(parseCacheControl("no-cache=Set-Cookie").noCache).toEqual(["set-cookie"]);
    });

    it("merges the field names of repeated qualified directives", () => {
      expect(parseCacheControl('private="a", private="B, c"').private).toEqual(["a", "b", "c"]);
    });

    it("lets a bare directive win over a qualified one, in either order", () => {
      expect(parseCacheControl('no-cache="a", no-cache').noCache).toBe(true);
      expect(parseCacheControl('no-cache, no-cache="a"').noCache).toBe(true);
      expect(parseCacheControl('private, private="a"').private).toBe(true);
      expect(parseCacheControl('private="a", private').private).toBe(true);
    });
  });

  describe("delta-seconds", () => {
    it("reads zero as zero, not as absent (RFC 9111 §1.2.2)", () => {
      expect(parseCacheControl("max-age=0").maxAge).toBe(0);
    });

    it.each([
      ["negative", "max-age=-1"],
      ["fractional", "max-age=1.5"],
      ["trailing junk", "max-age=60s"],
      ["empty", "max-age="],
      ["missing", "max-age"],
      ["a quoted empty string", 'max-age=""'],
      ["a hex number", "max-age=0x10"],
    ])("keeps an invalid (%s) value as NaN so it reads as stale (RFC 9111 §4.2.1)", (_, value) => {
      const cc = parseCacheControl(value);
      expect(cc.maxAge).toBeNaN();
    });

    it("keeps an invalid s-maxage, min-fresh and stale-* value as NaN too (RFC 9111 §1.2.2)", () => {
      const cc = parseCacheControl(
        "s-maxage=soon, min-fresh=-1, stale-while-revalidate=x, stale-if-error=1e3, max-stale=-5",
      );
      expect(cc.sMaxAge).toBeNaN();
      expect(cc.minFresh).toBeNaN();
      expect(cc.staleWhileRevalidate).toBeNaN();
      expect(cc.staleIfError).toBeNaN();
      expect(cc.maxStale).toBeNaN();
    });

    it("caps a huge value at 2^31 (RFC 9111 §1.2.2)", () => {
      expect(parseCacheControl("max-age=2147483647").maxAge).toBe(2147483647);
      expect(parseCacheControl("max-age=2147483648").maxAge).toBe(2 ** 31);
      expect(parseCacheControl("max-age=2147483649").maxAge).toBe(2 ** 31);
      expect(parseCacheControl("s-maxage=99999999999999999999999").sMaxAge).toBe(2 ** 31);
    });

    it("takes the first of duplicated directives (RFC 9111 §4.2.1)", () => {
      const cc = parseCacheControl("max-age=10, s-maxage=20, max-age=99, s-maxage=1, min-fresh=3, min-fresh=4");
      expect(cc.maxAge).toBe(10);
      expect(cc.sMaxAge).toBe(20);
      expect(cc.minFresh).toBe(3);
    });

    it("keeps the first duplicate even when it is the invalid one (RFC 9111 §4.2.1)", () => {
      expect(parseCacheControl("max-age=abc, max-age=60").maxAge).toBeNaN();
    });

    it("reads max-stale without a value as any staleness at all (RFC 9111 §5.2.1.2)", () => {
      expect(parseCacheControl("max-stale").maxStale).toBe(Number.POSITIVE_INFINITY);
      expect(parseCacheControl("max-stale=30").maxStale).toBe(30);
      expect(parseCacheControl("max-stale, max-stale=30").maxStale).toBe(Number.POSITIVE_INFINITY);
    });
  });
});
