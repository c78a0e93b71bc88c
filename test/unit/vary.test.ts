import { describe, expect, it } from "vitest";
import { parseVary } from "../../src/core/http/vary";

describe("parseVary", () => {
  it.each([null, ""])("gives no selecting fields for %j (RFC 9110 §12.5.5)", (value) => {
    expect(parseVary(value)).toEqual([]);
  });

  it("lower-cases and sorts the field names, which are case-insensitive (RFC 9110 §5.1)", () => {
    expect(parseVary("User-Agent, Accept-Language, Cookie")).toEqual(["accept-language", "cookie", "user-agent"]);
  });

  it("lists a field named twice only once (RFC 9110 §12.5.5)", () => {
    expect(parseVary("Cookie, accept-language, COOKIE")).toEqual(["accept-language", "cookie"]);
  });

  it("skips empty list members and whitespace (RFC 9110 §5.6.1)", () => {
    expect(parseVary(" , ,Origin ,\t")).toEqual(["origin"]);
  });

  it('gives "*" for Vary: * (RFC 9110 §12.5.5)', () => {
    expect(parseVary("*")).toBe("*");
  });

  it('gives "*" when * appears anywhere in the list (RFC 9110 §12.5.5)', () => {
    expect(parseVary("Accept-Language, *")).toBe("*");
    expect(parseVary("Accept-Encoding , * , Cookie")).toBe("*");
  });

  it("does not treat Accept-Encoding as selecting: the runtime re-encodes for each client (deliberate deviation)", () => {
    expect(parseVary("Accept-Encoding")).toEqual([]);
    expect(parseVary("accept-encoding, ACCEPT-ENCODING")).toEqual([]);
  });

  it("keeps the other fields when Accept-Encoding is listed with them", () => {
    expect(parseVary("Accept-Encoding, Origin")).toEqual(["origin"]);
  });
});
