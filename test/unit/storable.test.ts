import { describe, expect, it } from "vitest";
import { parseCacheControl } from "../../src/core/http/cache-control";
import { type NotStorableReason, whyNotStorable } from "../../src/core/http/storable";
import { parseVary } from "../../src/core/http/vary";

interface Exchange {
  method?: string;
  request?: Record<string, string>;
  status?: number;
  response?: HeadersInit;
}

/** Runs `whyNotStorable` on an exchange described by raw headers, parsed the way the pipeline parses them. */
function why({ method = "GET", request = {}, status = 200, response = {} }: Exchange): NotStorableReason | null {
  const requestHeaders = new Headers(request);
  const responseHeaders = new Headers(response);
  return whyNotStorable({
    method,
    requestHeaders,
    requestCc: parseCacheControl(requestHeaders.get("cache-control")),
    status,
    responseHeaders,
    responseCc: parseCacheControl(responseHeaders.get("cache-control")),
    vary: parseVary(responseHeaders.get("vary")),
  });
}

describe("whyNotStorable", () => {
  it("stores a plain GET 200 with max-age (RFC 9111 §3)", () => {
    expect(why({ response: { "cache-control": "max-age=60" } })).toBeNull();
  });

  it("stores a GET 200 without any freshness information: the status is heuristically cacheable (RFC 9111 §3)", () => {
    expect(why({ response: { "content-type": "text/html" } })).toBeNull();
  });

  it("stores a response with no-cache, which only requires revalidation (RFC 9111 §5.2.2.4)", () => {
    expect(why({ response: { "cache-control": "no-cache" } })).toBeNull();
  });

  describe("method", () => {
    it.each(["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get"])(
      "does not store a response to %s: only GET is understood, and methods are case-sensitive (RFC 9111 §3, RFC 9110 §9.1)",
      (method) => {
        expect(why({ method, response: { "cache-control": "max-age=60" } })).toBe("method");
      },
    );

    it("reports the method before anything else (RFC 9111 §3)", () => {
      expect(why({ method: "POST", status: 500, response: { "cache-control": "no-store" } })).toBe("method");
    });
  });

  describe("status", () => {
    it.each([200, 203, 204, 300, 301, 302, 307, 308, 404, 410])("stores status %i with max-age", (status) => {
      expect(why({ status, response: { "cache-control": "max-age=60" } })).toBeNull();
    });

    it("does not store 206: the cache holds whole objects and answers ranges from them", () => {
      expect(why({ status: 206, response: { "cache-control": "max-age=60" } })).toBe("status");
    });

    it.each([201, 202, 205, 299, 303, 400, 403, 405, 414, 500, 501, 502, 503, 504, 599])(
      "stores status %i with explicit freshness: any final status it understands (RFC 9111 §3)",
      (status) => {
        expect(why({ status, response: { "cache-control": "max-age=60" } })).toBeNull();
        expect(why({ status, response: { expires: "Thu, 01 Jan 2099 00:00:00 GMT" } })).toBeNull();
      },
    );

    it.each([100, 103, 304])(
      "does not store status %i, which is not a final response to store (RFC 9111 §3)",
      (status) => {
        expect(why({ status, response: { "cache-control": "max-age=60, public" } })).toBe("status");
      },
    );

    it.each([201, 299, 302, 303, 307, 400, 403, 405, 414, 500, 501, 503])(
      "does not store status %i without explicit freshness: not heuristically cacheable here (RFC 9111 §3)",
      (status) => {
        expect(why({ status, response: { "last-modified": "Thu, 01 Jan 2015 00:00:00 GMT" } })).toBe("no-expiration");
      },
    );

    it.each([400, 403, 500, 503])(
      "does not let public stand in for freshness on error %i (stricter than §3)",
      (status) => {
        expect(why({ status, response: { "cache-control": "public" } })).toBe("no-expiration");
      },
    );

    it("still stores a public 302 without explicit freshness (RFC 9111 §3)", () => {
      expect(why({ status: 302, response: { "cache-control": "public" } })).toBeNull();
    });
  });

  describe("no-store", () => {
    it("does not store a response with no-store (RFC 9111 §5.2.2.5)", () => {
      expect(why({ response: { "cache-control": "max-age=60, no-store" } })).toBe("no-store");
    });

    it("does not store a response to a request with no-store (RFC 9111 §5.2.1.5)", () => {
      expect(why({ request: { "cache-control": "no-store" }, response: { "cache-control": "max-age=60" } })).toBe(
        "no-store",
      );
    });

    it("reads no-store case-insensitively (RFC 9111 §5.2)", () => {
      expect(why({ response: { "cache-control": "No-Store" } })).toBe("no-store");
    });
  });

  describe("private", () => {
    it("does not store a response with private in a shared cache (RFC 9111 §5.2.2.7)", () => {
      expect(why({ response: { "cache-control": "private, max-age=60" } })).toBe("private");
    });

    it("does not store a response with a qualified private either (stricter than RFC 9111 §5.2.2.7)", () => {
      expect(why({ response: { "cache-control": 'private="x-user", max-age=60' } })).toBe("private");
    });
  });

  describe("authorization", () => {
    it("does not store a response to an authorized request by default (RFC 9111 §3.5)", () => {
      expect(why({ request: { authorization: "Bearer t" }, response: { "cache-control": "max-age=60" } })).toBe(
        "authorization",
      );
    });

    it.each(["public", "s-maxage=60", "must-revalidate"])(
      "stores a response to an authorized request when it carries %s (RFC 9111 §3.5)",
      (directive) => {
        expect(why({ request: { authorization: "Bearer t" }, response: { "cache-control": directive } })).toBeNull();
      },
    );

    it("does not accept proxy-revalidate in place of must-revalidate (RFC 9111 §3.5)", () => {
      expect(
        why({ request: { authorization: "Bearer t" }, response: { "cache-control": "proxy-revalidate, max-age=60" } }),
      ).toBe("authorization");
    });
  });

  describe("set-cookie", () => {
    it("does not store a response that sets a cookie, which would hand it to everyone (RFC 9111 §7.3)", () => {
      expect(why({ response: { "cache-control": "public, max-age=60", "set-cookie": "session=abc" } })).toBe(
        "set-cookie",
      );
    });
  });

  describe("vary", () => {
    it("does not store Vary: *, which no request can match (RFC 9110 §12.5.5)", () => {
      expect(why({ response: { "cache-control": "max-age=60", vary: "*" } })).toBe("vary");
    });

    it("stores a response that varies on request fields: each variant gets its own key (RFC 9111 §4.1)", () => {
      expect(why({ response: { "cache-control": "max-age=60", vary: "Accept-Language" } })).toBeNull();
      expect(why({ response: { "cache-control": "max-age=60", vary: "Accept-Encoding, Cookie" } })).toBeNull();
    });

    it("does not store Vary: * even among other fields (RFC 9110 §12.5.5)", () => {
      expect(why({ response: { "cache-control": "max-age=60", vary: "Accept-Language, *" } })).toBe("vary");
    });

    it("stores a response that varies on Accept-Encoding alone, which the runtime re-encodes per client", () => {
      expect(why({ response: { "cache-control": "max-age=60", vary: "Accept-Encoding" } })).toBeNull();
    });
  });

  describe("no-expiration", () => {
    it.each([302, 307])(
      "does not store a %i without explicit freshness: not heuristically cacheable (RFC 9111 §3)",
      (status) => {
        expect(why({ status, response: { location: "/elsewhere" } })).toBe("no-expiration");
      },
    );

    it.each([
      ["max-age", { "cache-control": "max-age=60" }],
      ["s-maxage", { "cache-control": "s-maxage=60" }],
      ["Expires", { expires: "Mon, 15 Jan 2024 13:00:00 GMT" }],
      ["public", { "cache-control": "public" }],
    ])("stores a 302 with %s (RFC 9111 §3)", (_, headers) => {
      expect(why({ status: 302, response: { location: "/elsewhere", ...headers } })).toBeNull();
    });
  });

  it("reports only the first reason: private, then authorization, then set-cookie, then vary", () => {
    const everything = {
      request: { authorization: "Bearer t" },
      response: { "cache-control": "private", "set-cookie": "a=1", vary: "*" },
    };
    expect(why({ ...everything, status: 302 })).toBe("private");
    expect(why({ request: { authorization: "t" }, response: { "set-cookie": "a=1", vary: "*" } })).toBe(
      "authorization",
    );
    expect(why({ response: { "set-cookie": "a=1", vary: "*" } })).toBe("set-cookie");
    expect(why({ status: 302, response: { vary: "*" } })).toBe("vary");
  });
});
