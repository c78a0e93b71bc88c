import { describe, expect, it } from "vitest";
import { endToEndHeaders, hopByHopNames } from "../../src/core/http/headers";

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

describe("hopByHopNames", () => {
  it("is the fixed hop-by-hop set when there is no Connection (RFC 9110 §7.6.1)", () => {
    expect([...hopByHopNames(new Headers())].sort()).toEqual([...HOP_BY_HOP].sort());
  });

  it("adds the lower-cased names a Connection header lists (RFC 9110 §7.6.1)", () => {
    const names = hopByHopNames(new Headers({ connection: "close, X-Debug ,, Keep-Alive" }));
    expect([...names].sort()).toEqual([...HOP_BY_HOP, "close", "x-debug"].sort());
  });
});

describe("endToEndHeaders", () => {
  it("drops every hop-by-hop field and keeps the end-to-end ones (RFC 9110 §7.6.1)", () => {
    const out = endToEndHeaders(
      new Headers({
        connection: "keep-alive",
        "keep-alive": "timeout=5",
        "proxy-connection": "keep-alive",
        "proxy-authenticate": "Basic",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        te: "trailers",
        trailer: "x-checksum",
        "transfer-encoding": "chunked",
        upgrade: "h2c",
        "content-type": "text/plain",
        etag: '"v1"',
        "cache-control": "max-age=60",
      }),
    );
    expect([...out]).toEqual([
      ["cache-control", "max-age=60"],
      ["content-type", "text/plain"],
      ["etag", '"v1"'],
    ]);
  });

  it("drops the fields that Connection names, whatever their case (RFC 9110 §7.6.1)", () => {
    const out = endToEndHeaders(
      new Headers({ connection: "X-Debug, x-Trace", "x-debug": "1", "x-trace": "2", "x-kept": "3" }),
    );
    expect([...out]).toEqual([["x-kept", "3"]]);
  });

  it("also drops the names passed in alsoDrop", () => {
    const out = endToEndHeaders(new Headers({ age: "10", "content-length": "5", "content-type": "text/plain" }), [
      "age",
      "content-length",
    ]);
    expect([...out]).toEqual([["content-type", "text/plain"]]);
  });

  it("keeps several Set-Cookie fields apart, even when a cookie contains a comma (RFC 6265 §3)", () => {
    const input = new Headers();
    input.append("set-cookie", "a=1; Path=/");
    input.append("set-cookie", "b=2; Expires=Thu, 01 Jan 2099 00:00:00 GMT");
    input.append("content-type", "text/plain");
    const out = endToEndHeaders(input);
    expect(out.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Expires=Thu, 01 Jan 2099 00:00:00 GMT"]);
    expect(out.get("content-type")).toBe("text/plain");
  });

  it("drops Set-Cookie entirely when asked to", () => {
    const input = new Headers();
    input.append("set-cookie", "a=1");
    input.append("set-cookie", "b=2");
    expect(endToEndHeaders(input, ["set-cookie"]).has("set-cookie")).toBe(false);
    expect(endToEndHeaders(new Headers({ connection: "set-cookie", "set-cookie": "a=1" })).has("set-cookie")).toBe(
      false,
    );
  });

  it("keeps the values of other repeated fields (RFC 9110 §5.3)", () => {
    const input = new Headers();
    input.append("link", "</a.css>; rel=preload");
    input.append("link", "</b.js>; rel=preload");
    expect(endToEndHeaders(input).get("link")).toBe("</a.css>; rel=preload, </b.js>; rel=preload");
  });

  it("returns a copy and leaves its input alone", () => {
    const input = new Headers({ connection: "x-debug", "x-debug": "1", "content-type": "text/plain" });
    const out = endToEndHeaders(input, ["content-type"]);
    out.set("x-new", "1");
    expect([...input]).toEqual([
      ["connection", "x-debug"],
      ["content-type", "text/plain"],
      ["x-debug", "1"],
    ]);
  });
});
