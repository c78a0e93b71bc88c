import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { parseSite } from "../../src/sites/schema";

const base = { id: "site-schema1", origin: { kind: "http", url: "https://backend.test" } };

describe("site hosts", () => {
  it("folds an upper-case host to lower case instead of refusing it", () => {
    expect(parseSite({ ...base, hosts: ["Shop.Example.COM"] }, "t").hosts).toEqual(["shop.example.com"]);
  });

  it("lists a host named twice (also after folding) once, keeping the order", () => {
    const site = parseSite({ ...base, hosts: ["b.test", "a.test", "B.test", "b.test"] }, "t");
    expect(site.hosts).toEqual(["b.test", "a.test"]);
  });

  it("still refuses a host with a port or a space, under its index", () => {
    expect(() => parseSite({ ...base, hosts: ["a.test", "a.test:8080"] }, "t")).toThrowError(
      /hosts\.1: must be a host name without port/,
    );
    expect(() => parseSite({ ...base, hosts: ["a b.test"] }, "t")).toThrowError(TiercelError);
  });
});

describe("origin URLs", () => {
  it("refuses a value that is not a URL with the field's message, never by throwing past the schema", () => {
    for (const url of ["not a url", "", "://x"]) {
      const parse = () => parseSite({ ...base, hosts: ["a.test"], origin: { kind: "http", url } }, "t");
      expect(parse).toThrow(TiercelError);
      expect(parse).toThrow(/origin\.url: must be an absolute http or https URL/);
    }
  });
});
