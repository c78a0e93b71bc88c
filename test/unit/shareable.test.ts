import { describe, expect, it } from "vitest";
import { forwardedHeaders, withoutIgnoredCookies } from "../../src/core/forwarding";
import { parseCacheControl } from "../../src/core/http/cache-control";
import { redirectsToItself, whyNotServable, whyNotShareable } from "../../src/core/http/shareable";

const URL_ = new URL("http://www.example.com/a/b?x=1");

describe("redirectsToItself", () => {
  it.each([
    ["https://www.example.com/a/b?x=1", true],
    ["https://WWW.example.com.:8443/a/b?x=1", true],
    ["/a/b?x=1", true],
    ["https://apex.example/a/b?x=1", true],
    ["https://www.example.com/a/b", false],
    ["https://www.example.com/a/b/?x=1", false],
    ["https://other.example/a/b?x=1", false],
    ["ftp://www.example.com/a/b?x=1", false],
  ])("Location %s → %s", (location, loops) => {
    expect(redirectsToItself(301, location, URL_, ["apex.example"])).toBe(loops);
  });

  it("only for redirects", () => {
    expect(redirectsToItself(200, "https://www.example.com/a/b?x=1", URL_, [])).toBe(false);
    expect(redirectsToItself(302, null, URL_, [])).toBe(false);
  });
});

describe("whyNotShareable", () => {
  const base = (
    request: HeadersInit,
    response: HeadersInit,
    vary: string[] = [],
    cookies: "pass" | "ignore" = "pass",
  ) => {
    const responseHeaders = new Headers(response);
    return whyNotShareable({
      requestHeaders: new Headers(request),
      url: URL_,
      siteHosts: [],
      status: 200,
      responseHeaders,
      responseCc: parseCacheControl(responseHeaders.get("cache-control")),
      vary,
      cookies,
    });
  };

  it("a Cookie request is shared only when public, s-maxage or Vary: Cookie, or the site ignores cookies", () => {
    const cookie = { cookie: "s=1" };
    expect(base(cookie, { "cache-control": "max-age=60" })).toBe("cookie");
    expect(base(cookie, { "cache-control": "public, max-age=60" })).toBeNull();
    expect(base(cookie, { "cache-control": "s-maxage=60" })).toBeNull();
    expect(base(cookie, { "cache-control": "max-age=60" }, ["cookie"])).toBeNull();
    expect(base(cookie, { "cache-control": "max-age=60" }, [], "ignore")).toBeNull();
    expect(base({}, { "cache-control": "max-age=60" })).toBeNull();
  });

  it("refuses Clear-Site-Data, and a named Access-Control-Allow-Origin without Origin keyed", () => {
    expect(base({}, { "clear-site-data": '"cookies"' })).toBe("clear-site-data");
    expect(base({}, { "access-control-allow-origin": "https://a.test" })).toBe("cors-origin");
    expect(base({}, { "access-control-allow-origin": "https://a.test" }, ["origin"])).toBeNull();
    expect(base({}, { "access-control-allow-origin": "*" })).toBeNull();
  });
});

describe("whyNotServable", () => {
  const request = { url: URL_, siteHosts: [], origin: "https://b.test" };
  it("skips stored loops and another origin's CORS answer", () => {
    const stored = { status: 301, location: "https://www.example.com/a/b?x=1", allowOrigin: null, vary: [] };
    expect(whyNotServable(stored, request)).toBe("redirect-loop");
    const cors = { status: 200, location: null, allowOrigin: "https://a.test", vary: [] };
    expect(whyNotServable(cors, request)).toBe("cors-origin");
    expect(whyNotServable(cors, { ...request, origin: "https://a.test" })).toBeNull();
    expect(whyNotServable({ ...cors, vary: ["origin"] }, request)).toBeNull();
  });
});

describe("forwardedHeaders", () => {
  it("passes the allow-list, selecting fields and credentials; a stand-in User-Agent; keys by what passed", () => {
    const request = new Headers({
      accept: "text/html",
      "x-custom": "1",
      "x-varied": "2",
      cookie: "s=1",
      authorization: "Bearer t",
      "user-agent": "agent",
    });
    const { keying, upstream } = forwardedHeaders(request, ["accept"], ["x-varied"]);
    expect([...upstream.keys()].sort()).toEqual(["accept", "authorization", "cookie", "user-agent", "x-varied"]);
    expect(upstream.get("user-agent")).toBe("Tiercel");
    expect(keying.get("user-agent")).toBeNull();
    expect(keying.get("x-custom")).toBeNull();
  });

  it("keys a Tiercel-negotiated format by the client's Accept without sending it when not allowed", () => {
    const { keying, upstream } = forwardedHeaders(new Headers({ accept: "image/webp" }), [], [":format=webp"]);
    expect(keying.get("accept")).toBe("image/webp");
    expect(upstream.get("accept")).toBeNull();
  });
});

describe("withoutIgnoredCookies", () => {
  it("drops the listed cookies and the header when none is left", () => {
    const request = new Request("http://x.test/", { headers: { cookie: "_ga=1; s=2;_gid=3" } });
    expect(withoutIgnoredCookies(request, ["_ga", "_gid"]).headers.get("cookie")).toBe("s=2");
    const only = new Request("http://x.test/", { headers: { cookie: "_ga=1" } });
    expect(withoutIgnoredCookies(only, ["_ga"]).headers.has("cookie")).toBe(false);
    expect(withoutIgnoredCookies(request, [])).toBe(request);
  });
});
