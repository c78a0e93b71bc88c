import { describe, expect, it } from "vitest";
import { parseHttpDate } from "../../src/core/http/dates";

describe("parseHttpDate (RFC 9110 §5.6.7)", () => {
  const expected = Date.UTC(1994, 10, 6, 8, 49, 37);

  it.each([
    ["IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT"],
    ["obsolete RFC 850", "Sunday, 06-Nov-94 08:49:37 GMT"],
    ["obsolete asctime", "Sun Nov  6 08:49:37 1994"],
  ])("accepts the %s format", (_, value) => {
    expect(parseHttpDate(value)).toBe(expected);
  });

  it.each([
    ["lower-case IMF-fixdate", "sun, 06 nov 1994 08:49:37 gmt"],
    ["upper-case IMF-fixdate", "SUN, 06 NOV 1994 08:49:37 GMT"],
    ["mixed-case RFC 850", "SUNDAY, 06-nOv-94 08:49:37 Gmt"],
    ["lower-case asctime", "sun nov  6 08:49:37 1994"],
  ])("accepts %s: names are matched case-insensitively, as §5.6.7 lets a recipient be lenient", (_, value) => {
    expect(parseHttpDate(value)).toBe(expected);
  });

  it.each([
    ["a bare year", "2100"],
    ["an ISO date", "2100-01-01"],
    ["a loose date", "Jan 1 2100"],
    ["a slashed date", "1/1/2100"],
    ["another time zone", "Fri, 01 Jan 2100 00:00:00 PST"],
    ["zero", "0"],
    ["an impossible day", "Mon, 31 Feb 2100 00:00:00 GMT"],
    ["an impossible hour", "Fri, 01 Jan 2100 25:00:00 GMT"],
    ["empty", ""],
  ])("refuses %s, so an Expires like it means already expired (RFC 9111 §5.3)", (_, value) => {
    expect(parseHttpDate(value)).toBeUndefined();
  });

  it("reads a two-digit RFC 850 year more than 50 years ahead as the past century", () => {
    expect(new Date(parseHttpDate("Thursday, 01-Jan-98 00:00:00 GMT") as number).getUTCFullYear()).toBe(1998);
  });
});
