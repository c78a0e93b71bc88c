import { describe, expect, it } from "vitest";
import { parseCacheControl } from "../../src/core/http/cache-control";
import { correctedInitialAge, currentAge, freshnessLifetime } from "../../src/core/http/freshness";

/** A fixed instant (2024-01-15T12:00:00Z); every other time is an offset from it. */
const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const SECOND = 1000;
const DAY = 86_400;

/** IMF-fixdate (RFC 9110 §5.6.7) of an instant. */
function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

function lifetime(headers: Record<string, string>, status = 200, responseTime = T): number {
  const h = new Headers(headers);
  return freshnessLifetime({ status, headers: h, cc: parseCacheControl(h.get("cache-control")), responseTime });
}

describe("freshnessLifetime", () => {
  describe("explicit expiration (RFC 9111 §4.2.1)", () => {
    it("s-maxage wins over max-age and Expires in a shared cache (RFC 9111 §4.2.1)", () => {
      expect(
        lifetime({
          "cache-control": "max-age=60, s-maxage=600",
          date: httpDate(T),
          expires: httpDate(T + 3600 * SECOND),
        }),
      ).toBe(600);
    });

    it("max-age wins over Expires (RFC 9111 §4.2.1, §5.3)", () => {
      expect(lifetime({ "cache-control": "max-age=60", date: httpDate(T), expires: httpDate(T + 3600 * SECOND) })).toBe(
        60,
      );
    });

    it("max-age=0 is a lifetime of zero (RFC 9111 §5.2.2.1)", () => {
      expect(lifetime({ "cache-control": "max-age=0", "last-modified": httpDate(T - 100 * DAY * SECOND) })).toBe(0);
    });

    it("an invalid s-maxage makes the response stale even when max-age is valid (RFC 9111 §4.2.1)", () => {
      expect(lifetime({ "cache-control": "s-maxage=soon, max-age=60" })).toBe(0);
    });

    it("an invalid max-age makes the response stale even when Expires is valid (RFC 9111 §4.2.1)", () => {
      expect(lifetime({ "cache-control": "max-age=-1", date: httpDate(T), expires: httpDate(T + 60 * SECOND) })).toBe(
        0,
      );
    });

    it("Expires minus Date when there is no max-age or s-maxage (RFC 9111 §4.2.1)", () => {
      // responseTime is later than Date: the lifetime is still measured from Date.
      expect(lifetime({ date: httpDate(T), expires: httpDate(T + 3600 * SECOND) }, 200, T + 30 * SECOND)).toBe(3600);
    });

    it("Expires minus the time of receipt when Date is absent (RFC 9111 §4.2.1, RFC 9110 §6.6.1)", () => {
      expect(lifetime({ expires: httpDate(T + 90 * SECOND) }, 200, T)).toBe(90);
    });

    it("Expires minus the time of receipt when Date is invalid (RFC 9110 §5.6.7)", () => {
      expect(lifetime({ date: "yesterday", expires: httpDate(T + 90 * SECOND) }, 200, T)).toBe(90);
    });

    it("rounds a fractional Expires − Date down to whole seconds", () => {
      expect(lifetime({ expires: httpDate(T + 90 * SECOND) }, 200, T + 500)).toBe(89);
    });

    it("an Expires at or before Date is a lifetime of zero, never negative (RFC 9111 §5.3)", () => {
      expect(lifetime({ date: httpDate(T), expires: httpDate(T) })).toBe(0);
      expect(lifetime({ date: httpDate(T), expires: httpDate(T - 3600 * SECOND) })).toBe(0);
    });

    it.each([
      ["0", "0"],
      ["a word", "never"],
      ["an empty value", ""],
      ["two dates", `${httpDate(T + 3600 * SECOND)}, ${httpDate(T + 7200 * SECOND)}`],
    ])("an invalid Expires (%s) means already expired (RFC 9111 §5.3)", (_, expires) => {
      // A Last-Modified far in the past shows that no heuristic is used instead.
      expect(lifetime({ date: httpDate(T), expires, "last-modified": httpDate(T - 100 * DAY * SECOND) })).toBe(0);
    });

    it.each([
      ["rfc850-date", "Monday, 15-Jan-24 13:00:00 GMT"],
      ["asctime-date", "Mon Jan 15 13:00:00 2024"],
    ])("accepts an Expires in the obsolete %s format (RFC 9110 §5.6.7)", (_, expires) => {
      expect(lifetime({ date: httpDate(T), expires })).toBe(3600);
    });

    it("uses explicit expiration whatever the status (RFC 9111 §4.2.1)", () => {
      expect(lifetime({ "cache-control": "max-age=60" }, 302)).toBe(60);
      expect(lifetime({ date: httpDate(T), expires: httpDate(T + 60 * SECOND) }, 307)).toBe(60);
    });
  });

  describe("heuristic freshness (RFC 9111 §4.2.2)", () => {
    it("is 10% of the time between Last-Modified and Date (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 10_000 * SECOND) })).toBe(1000);
    });

    it("rounds 10% down to whole seconds (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 19 * SECOND) })).toBe(1);
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 9 * SECOND) })).toBe(0);
    });

    it("measures from the time of receipt when Date is absent (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ "last-modified": httpDate(T - 500 * SECOND) }, 200, T)).toBe(50);
    });

    it("is capped at one day (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 10 * DAY * SECOND) })).toBe(DAY);
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 365 * DAY * SECOND) })).toBe(DAY);
    });

    it("is zero without Last-Modified (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ date: httpDate(T) })).toBe(0);
    });

    it("is zero for an invalid Last-Modified (RFC 9110 §8.8.2)", () => {
      expect(lifetime({ date: httpDate(T), "last-modified": "a while ago" })).toBe(0);
    });

    it("is zero for a Last-Modified later than Date (RFC 9110 §8.8.2.1)", () => {
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T + 3600 * SECOND) })).toBe(0);
    });

    it.each([200, 203, 204, 300, 301, 308, 404, 410])(
      "applies to heuristically cacheable status %i (RFC 9110 §15.1)",
      (status) => {
        expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 1000 * SECOND) }, status)).toBe(100);
      },
    );

    it.each([302, 307, 403, 500, 503])("does not apply to status %i (RFC 9111 §4.2.2)", (status) => {
      expect(lifetime({ date: httpDate(T), "last-modified": httpDate(T - 1000 * SECOND) }, status)).toBe(0);
    });

    it("applies to a non-error status when the response is marked public (RFC 9111 §4.2.2)", () => {
      const headers = { "cache-control": "public", date: httpDate(T), "last-modified": httpDate(T - 1000 * SECOND) };
      expect(lifetime(headers, 302)).toBe(100);
    });

    it.each([400, 500, 503])("does not make a public error %i fresh by a guess (stricter than §4.2.2)", (status) => {
      const headers = { "cache-control": "public", date: httpDate(T), "last-modified": httpDate(T - 1000 * SECOND) };
      expect(lifetime(headers, status)).toBe(0);
    });

    it("is not used when Expires is present, even when invalid (RFC 9111 §4.2.2)", () => {
      expect(lifetime({ date: httpDate(T), expires: "0", "last-modified": httpDate(T - 1000 * SECOND) }, 200)).toBe(0);
    });
  });
});

describe("correctedInitialAge (RFC 9111 §4.2.3)", () => {
  function initialAge(headers: Record<string, string>, requestTime: number, responseTime: number): number {
    return correctedInitialAge({ headers: new Headers(headers), requestTime, responseTime });
  }

  it("is zero for a response that is new, came back at once and has no Age (RFC 9111 §4.2.3)", () => {
    expect(initialAge({ date: httpDate(T) }, T, T)).toBe(0);
  });

  it("is the apparent age, response_time − date_value, when that is larger (RFC 9111 §4.2.3)", () => {
    // apparent_age = 10; corrected_age_value = 0 + 2
    expect(initialAge({ date: httpDate(T - 10 * SECOND) }, T - 2 * SECOND, T)).toBe(10);
  });

  it("is age_value + response_delay when that is larger (RFC 9111 §4.2.3)", () => {
    // apparent_age = 5; corrected_age_value = 30 + 2
    expect(initialAge({ date: httpDate(T - 5 * SECOND), age: "30" }, T - 2 * SECOND, T)).toBe(32);
  });

  it("adds the response delay even without Age, to stay conservative (RFC 9111 §4.2.3)", () => {
    expect(initialAge({ date: httpDate(T) }, T - 1500, T)).toBe(1.5);
  });

  it("never lets a Date in the future make the apparent age negative (RFC 9111 §4.2.3)", () => {
    expect(initialAge({ date: httpDate(T + 60 * SECOND), age: "7" }, T, T)).toBe(7);
    expect(initialAge({ date: httpDate(T + 60 * SECOND) }, T, T)).toBe(0);
  });

  it("treats a missing or invalid Date as the time of receipt (RFC 9110 §6.6.1)", () => {
    expect(initialAge({}, T - 3 * SECOND, T)).toBe(3);
    expect(initialAge({ date: "not a date" }, T, T)).toBe(0);
  });

  it("reads an Age with surrounding whitespace (RFC 9111 §5.1)", () => {
    expect(initialAge({ age: " 12 " }, T, T)).toBe(12);
  });

  it.each([
    ["a list", "7200, 0", 7200],
    ["a list whose later members are invalid", "30, soon", 30],
    ["several field lines, as Headers joins them", "100, 5", 100],
  ])("reads the first value of %s, never a later smaller one (RFC 9111 §5.1)", (_, age, expected) => {
    expect(initialAge({ age }, T, T)).toBe(expected);
  });

  it.each([
    ["negative", "-5"],
    ["fractional", "1.5"],
    ["not a number", "soon"],
    ["empty", ""],
    ["a list with an invalid first member", "soon, 0"],
  ])(
    "takes an invalid (%s) Age as the largest age, so it never makes an answer fresher (RFC 9111 §1.2.2)",
    (_, age) => {
      expect(initialAge({ age }, T - 2 * SECOND, T)).toBeGreaterThanOrEqual(2 ** 31);
    },
  );

  it("caps a huge Age at 2^31 (RFC 9111 §1.2.2)", () => {
    expect(initialAge({ age: "99999999999999" }, T, T)).toBe(2 ** 31);
  });
});

describe("currentAge (RFC 9111 §4.2.3)", () => {
  it("is corrected_initial_age + resident_time (RFC 9111 §4.2.3)", () => {
    expect(currentAge(10, T, T + 5 * SECOND)).toBe(15);
    expect(currentAge(0, T, T + 2500)).toBe(2.5);
  });

  it("is the initial age at the moment of receipt (RFC 9111 §4.2.3)", () => {
    expect(currentAge(42, T, T)).toBe(42);
  });

  it("never counts a negative resident time when the clock runs backwards", () => {
    expect(currentAge(10, T, T - 60 * SECOND)).toBe(10);
  });
});
