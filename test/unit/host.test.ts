import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { normalizeHost } from "../../src/core/host";

/** The error `normalizeHost` throws for `raw`; fails the test when it accepts the value instead. */
function refusal(raw: string | null | undefined): TiercelError {
  try {
    const accepted = normalizeHost(raw);
    throw new Error(`normalizeHost accepted ${JSON.stringify(raw)} as ${JSON.stringify(accepted)}`);
  } catch (error) {
    if (!(error instanceof TiercelError)) throw error;
    return error;
  }
}

describe("normalizeHost", () => {
  describe("normalization", () => {
    it("lower-cases the name (RFC 3986 §3.2.2: host is case-insensitive)", () => {
      expect(normalizeHost("WWW.Example.COM")).toBe("www.example.com");
    });

    it("drops the port so localhost:8787 finds the localhost site", () => {
      expect(normalizeHost("localhost:8787")).toBe("localhost");
      expect(normalizeHost("example.com:443")).toBe("example.com");
    });

    it("accepts the lowest and highest ports (RFC 3986 §3.2.3)", () => {
      expect(normalizeHost("example.com:0")).toBe("example.com");
      expect(normalizeHost("example.com:65535")).toBe("example.com");
    });

    it("drops the trailing dot of a fully qualified name (RFC 1035 §3.1)", () => {
      expect(normalizeHost("example.com.")).toBe("example.com");
      expect(normalizeHost("Example.Com.:8080")).toBe("example.com");
    });

    it("trims surrounding whitespace", () => {
      expect(normalizeHost("  example.com \t")).toBe("example.com");
    });

    it("keeps an IPv6 literal in brackets, in its canonical compressed form, without its port (RFC 3986 §3.2.2, RFC 5952)", () => {
      expect(normalizeHost("[::1]")).toBe("[::1]");
      expect(normalizeHost("[::1]:8787")).toBe("[::1]");
      expect(normalizeHost("[2001:DB8::A]:443")).toBe("[2001:db8::a]");
      expect(normalizeHost("[::ffff:192.0.2.1]")).toBe("[::ffff:c000:201]");
    });

    it("accepts an IPv4 address as a name", () => {
      expect(normalizeHost("192.0.2.1:80")).toBe("192.0.2.1");
    });

    it("accepts underscores for real-world service names", () => {
      expect(normalizeHost("_dmarc.example.com")).toBe("_dmarc.example.com");
    });

    it("accepts a 63-character label, the most RFC 1035 §2.3.4 allows", () => {
      const label = "a".repeat(63);
      expect(normalizeHost(`${label}.com`)).toBe(`${label}.com`);
    });

    it("accepts a 253-character name, the most RFC 1035 §2.3.4 allows, with or without a trailing dot", () => {
      // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253
      const name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
      expect(name).toHaveLength(253);
      expect(normalizeHost(name)).toBe(name);
      expect(normalizeHost(`${name}.`)).toBe(name);
      expect(normalizeHost(`${name}.:65535`)).toBe(name);
    });
  });

  describe("refusals", () => {
    it("refuses with a TiercelError carrying code bad_host and status 400", () => {
      const error = refusal("a..b");
      expect(error).toBeInstanceOf(TiercelError);
      expect(error.code).toBe("bad_host");
      expect(error.status).toBe(400);
      expect(error.message).toBe('The Host "a..b" is not a valid host name');
    });

    it.each([null, undefined, ""])("refuses a missing Host (%j) (RFC 9110 §7.2)", (raw) => {
      const error = refusal(raw);
      expect(error.code).toBe("bad_host");
      expect(error.status).toBe(400);
      expect(error.message).toBe("The request has no Host");
    });

    it.each([
      ["whitespace only", "   "],
      ["a space inside", "exa mple.com"],
      ["an empty label", "a..b"],
      ["a leading dot", ".example.com"],
      ["a lone dot", "."],
      ["two trailing dots", "example.com.."],
      ["a label starting with a hyphen", "-a.com"],
      ["a label ending with a hyphen", "a-.com"],
      ["a 64-character label", `${"a".repeat(64)}.com`],
      ["a path", "a/b"],
      ["userinfo", "user@host"],
      ["a query", "example.com?x"],
      ["non-ASCII letters", "bücher.example"],
      ["a non-ASCII dot", "example\u3002com"],
    ])("refuses a name with %s (RFC 3986 §3.2.2, RFC 1035 §2.3.4)", (_, raw) => {
      const error = refusal(raw);
      expect(error.code).toBe("bad_host");
      expect(error.status).toBe(400);
    });

    it("refuses a name longer than 253 characters (RFC 1035 §2.3.4)", () => {
      const name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
      expect(name).toHaveLength(254);
      expect(refusal(name)).toMatchObject({ code: "bad_host", status: 400 });
    });

    it("refuses a Host longer than 260 characters before looking further", () => {
      const error = refusal(`${"a".repeat(261)}`);
      expect(error).toMatchObject({ code: "bad_host", status: 400, message: "The Host is too long" });
    });

    it.each([
      ["above 65535", "example.com:99999"],
      ["just above 65535", "example.com:65536"],
      ["not numeric", "example.com:http"],
      ["negative", "example.com:-1"],
      ["twice", "example.com:80:80"],
      ["above 65535 on an IPv6 literal", "[::1]:99999"],
    ])("refuses a port %s (RFC 3986 §3.2.3)", (_, raw) => {
      const error = refusal(raw);
      expect(error).toMatchObject({ code: "bad_host", status: 400 });
      expect(error.message).toBe(`The Host ${JSON.stringify(raw)} has an invalid port`);
    });

    it.each([
      ["an unclosed bracket", "[::1"],
      ["characters outside hex digits, colons and dots", "[::g]"],
      ["a zone identifier", "[fe80::1%25eth0]"],
      ["an IPvFuture literal", "[v1.x]"],
      ["junk after the bracket", "[::1]x"],
    ])("refuses an IPv6 literal with %s (RFC 3986 §3.2.2)", (_, raw) => {
      expect(refusal(raw)).toMatchObject({ code: "bad_host", status: 400 });
    });
  });
});

describe("normalizeHost, strictness", () => {
  it.each([["[::1::2]"], ["[..]"], ["[:::]"], ["[1.2.3.4]"], ["[::::::::::::]"]])(
    "refuses the malformed IPv6 literal %s",
    (host) => {
      expect(() => normalizeHost(host)).toThrowError(expect.objectContaining({ code: "bad_host", status: 400 }));
    },
  );

  it("refuses a non-ASCII host even when lower-casing would make it ASCII (the Kelvin sign)", () => {
    expect(() => normalizeHost("\u212Aa.com")).toThrowError(expect.objectContaining({ code: "bad_host" }));
  });

  it("gives one spelling to one IPv6 address", () => {
    expect(normalizeHost("[0:0:0:0:0:0:0:1]:8787")).toBe("[::1]");
  });
});
