import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { socketFetch } from "../../src/origins/socket-fetch";
import { origin, unique } from "../support/harness";

/**
 * The HTTP/1.1-over-TCP client that reaches an origin at an IP and port while sending the site's Host. Every
 * request goes to the loopback origin's address while its URL and Host name a site that does not resolve.
 */

const address = new URL(env.TEST_ORIGIN);
const send = socketFetch({ hostname: address.hostname, port: Number(address.port), tls: false });
const SITE = "www.customer.test";

function request(path: string, init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  if (!headers.has("host")) headers.set("host", SITE);
  return new Request(`http://${SITE}${path}`, { ...init, headers });
}

describe("socketFetch", () => {
  it("connects to the address and sends the request's own Host, path and query", async () => {
    const path = `/${unique("host")}`;
    const response = await send(request(`${path}?a=1&b=%20`, { headers: { "x-app": "kept" } }));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(`GET ${path}?a=1&b=%20 #1`);
    const last = (await origin.hits(path)).last;
    expect(last?.headers.host).toBe(SITE);
    expect(last?.headers["x-app"]).toBe("kept");
    expect(last?.headers.connection).toBe("close");
    expect(last?.url).toBe(`${path}?a=1&b=%20`);
  });

  it("uses the URL's host when the request has no Host header", async () => {
    const path = `/${unique("no-host")}`;
    await send(new Request(`http://${SITE}:8080${path}`)).then((r) => r.arrayBuffer());
    expect((await origin.hits(path)).last?.headers.host).toBe(`${SITE}:8080`);
  });

  it("strips hop-by-hop headers from the request and the response", async () => {
    const path = `/${unique("hop")}`;
    await origin.route(path, {
      body: "ok",
      headers: { connection: "x-internal", "x-internal": "secret", "keep-alive": "timeout=5", "x-kept": "yes" },
    });
    const response = await send(
      request(path, {
        headers: { connection: "x-client-hop", "x-client-hop": "1", te: "trailers", "proxy-authorization": "p" },
      }),
    );
    expect(await response.text()).toBe("ok");
    expect(response.headers.get("x-internal")).toBeNull();
    expect(response.headers.get("keep-alive")).toBeNull();
    expect(response.headers.get("connection")).toBeNull();
    expect(response.headers.get("x-kept")).toBe("yes");
    const seen = (await origin.hits(path)).last?.headers ?? {};
    expect(seen["x-client-hop"]).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen["proxy-authorization"]).toBeUndefined();
    expect(seen.connection).toBe("close");
  });

  it("reads a body framed by Content-Length, with its status, reason and headers", async () => {
    const path = `/${unique("length")}`;
    await origin.route(path, {
      status: 203,
      body: "hello, length",
      headers: { "x-a": "1", "set-cookie": ["a=1", "b=2"] },
    });
    const response = await send(request(path));
    expect(response.status).toBe(203);
    expect(response.statusText).toBe("Non-Authoritative Information");
    expect(response.headers.get("content-length")).toBe("13");
    expect(response.headers.get("x-a")).toBe("1");
    expect(response.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    expect(await response.text()).toBe("hello, length");
  });

  it("de-chunks a chunked body", async () => {
    const path = `/${unique("chunked")}`;
    await origin.route(path, { size: 100_000, chunked: 7_000 });
    const response = await send(request(path));
    expect(response.headers.get("content-length")).toBeNull();
    expect(response.headers.get("transfer-encoding")).toBeNull();
    const text = await response.text();
    expect(text.length).toBe(100_000);
    expect(text).toBe("0123456789".repeat(10_000));
  });

  it("handles chunk extensions and trailers, and drops a Content-Length sent alongside chunked", async () => {
    const path = `/${unique("chunk-ext")}`;
    const raw =
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n" +
      "5;name=value\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    await origin.route(path, { raw });
    const response = await send(request(path));
    expect(response.headers.get("content-length")).toBeNull();
    expect(response.headers.get("x-trailer")).toBeNull();
    expect(await response.text()).toBe("hello, world");
  });

  it("reads a body with no length until the connection closes", async () => {
    const path = `/${unique("close")}`;
    await origin.route(path, { raw: `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${"x".repeat(50_000)}` });
    const response = await send(request(path));
    expect(response.headers.get("content-length")).toBeNull();
    expect(await response.text()).toBe("x".repeat(50_000));
  });

  it("reads a lone LF as a line end, and a status line without a reason", async () => {
    const path = `/${unique("lf")}`;
    await origin.route(path, { raw: "HTTP/1.1 200\nContent-Length: 2\n\nok" });
    const response = await send(request(path));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("ok");
  });

  it("keeps header values with bytes above 0x7F, one character per byte", async () => {
    const path = `/${unique("obs-text")}`;
    await origin.route(path, { raw: "HTTP/1.1 200 OK\r\nX-Name: caf\u00e9 \t\r\nContent-Length: 0\r\n\r\n" });
    const response = await send(request(path));
    expect(response.headers.get("x-name")).toBe("caf\u00e9");
  });

  it("expects no body after HEAD", async () => {
    const path = `/${unique("head")}`;
    await origin.route(path, { body: "not sent" });
    const response = await send(request(path, { method: "HEAD" }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe("8");
    expect(response.body).toBeNull();
    expect((await origin.hits(path)).last?.method).toBe("HEAD");
  });

  it("expects no body with 304, nor with 204 even when a length is claimed", async () => {
    const path = `/${unique("304")}`;
    await origin.route(path, { conditional: true, headers: { etag: '"v1"' }, body: "full" });
    const response = await send(request(path, { headers: { "if-none-match": '"v1"' } }));
    expect(response.status).toBe(304);
    expect(response.body).toBeNull();
    expect(response.headers.get("etag")).toBe('"v1"');

    const noContent = `/${unique("204")}`;
    await origin.route(noContent, { raw: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\njunk!" });
    const empty = await send(request(noContent));
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
  });

  it("streams a POST body to the origin intact, chunked", async () => {
    const path = `/${unique("post")}`;
    const parts = ["first part, ", "", "second part, ", "é and ünïcödé, ", "x".repeat(100_000)];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    const response = await send(
      request(path, { method: "POST", body, headers: { "content-type": "text/plain", "content-length": "999" } }),
    );
    await response.arrayBuffer();
    const last = (await origin.hits(path)).last;
    expect(last?.method).toBe("POST");
    expect(last?.body).toBe(parts.join(""));
    expect(last?.headers["transfer-encoding"]).toBe("chunked");
    expect(last?.headers["content-length"]).toBeUndefined();
    expect(last?.headers["content-type"]).toBe("text/plain");
  });

  it("sends Content-Length: 0 for a POST without a body, and nothing for a GET", async () => {
    const path = `/${unique("empty-post")}`;
    await (await send(request(path, { method: "POST" }))).arrayBuffer();
    const post = (await origin.hits(path)).last;
    expect(post?.headers["content-length"]).toBe("0");
    expect(post?.headers["transfer-encoding"]).toBeUndefined();

    const get = `/${unique("get")}`;
    await (await send(request(get))).arrayBuffer();
    const seen = (await origin.hits(get)).last?.headers ?? {};
    expect(seen["content-length"]).toBeUndefined();
    expect(seen["transfer-encoding"]).toBeUndefined();
  });

  it("skips interim 1xx responses", async () => {
    const path = `/${unique("interim")}`;
    const raw =
      "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal";
    await origin.route(path, { raw });
    const response = await send(request(path));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-final")).toBe("yes");
    expect(response.headers.get("link")).toBeNull();
    expect(await response.text()).toBe("final");
  });

  it.each([
    ["a garbled status line", "HTCPCP/1.0 418 I'm a teapot\r\n\r\n", /status line is malformed/],
    ["a folded header line", "HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\nContent-Length: 0\r\n\r\n", /folded/],
    ["whitespace before a colon", "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", /malformed header/],
    ["conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", /Content-Length/],
    ["a length that is not a number", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nab", /Content-Length/],
    ["a transfer coding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab", /coding/],
    ["101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", /status 101/],
    ["a status above 599", "HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n", /status 600/],
    ["a head without its end", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", /middle of the response head/],
    ["a head over 64 KiB", `HTTP/1.1 200 OK\r\nX-Big: ${"b".repeat(70_000)}\r\n\r\n`, /too large/],
  ])("refuses %s", async (_, raw, message) => {
    const path = `/${unique("malformed")}`;
    await origin.route(path, { raw });
    await expect(send(request(path))).rejects.toMatchObject({
      code: "origin_bad_response",
      message: expect.stringMatching(message),
    });
  });

  it.each([
    ["a malformed chunk size", "zz\r\nhello\r\n0\r\n\r\n", /malformed chunk size/],
    ["a chunk longer than its size", "2\r\nhello\r\n0\r\n\r\n", /longer than its size/],
    ["a chunk size too large to be a number", "fffffffffffffffff\r\nhello\r\n", /malformed chunk size/],
    ["a chunked body cut off", "5\r\nhello\r\n", /before the end of the body/],
  ])("errors the body on %s", async (_, chunks, message) => {
    const path = `/${unique("bad-chunk")}`;
    await origin.route(path, { raw: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}` });
    const response = await send(request(path));
    await expect(response.text()).rejects.toMatchObject({
      code: "origin_bad_response",
      message: expect.stringMatching(message),
    });
  });

  it("errors the body when the connection closes before Content-Length bytes arrived", async () => {
    const path = `/${unique("premature")}`;
    await origin.route(path, { size: 10_000, truncateAfter: 100 });
    const response = await send(request(path));
    expect(response.status).toBe(200);
    await expect(response.arrayBuffer()).rejects.toThrow(/before the end of the body/);
  });

  it("rejects with an AbortError when aborted before the head arrives", async () => {
    const path = `/${unique("slow")}`;
    await origin.route(path, { delayMs: 2000, body: "late" });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    await expect(send(request(path), { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("rejects at once with a signal that is already aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(send(request("/never"), { signal: controller.signal })).rejects.toMatchObject({
      name: "AbortError",
    });
  });

  it("rejects when the connection is refused", async () => {
    const refused = socketFetch({ hostname: "127.0.0.1", port: 9, tls: false });
    await expect(refused(request("/x"))).rejects.toMatchObject({ code: "origin_unreachable" });
  });

  it("rejects when the origin closes the connection without answering", async () => {
    const path = `/${unique("hang-up")}`;
    await origin.route(path, { hangUp: true });
    await expect(send(request(path))).rejects.toMatchObject({
      code: "origin_unreachable",
      message: expect.stringMatching(/without answering/),
    });
  });

  it("closes the connection when the body is cancelled", async () => {
    const path = `/${unique("cancel")}`;
    await origin.route(path, { size: 1_000_000 });
    const response = await send(request(path));
    const reader = response.body?.getReader();
    expect((await reader?.read())?.done).toBe(false);
    await reader?.cancel();
    // The next request gets its own connection and is answered normally.
    const again = await send(request(path));
    expect((await again.arrayBuffer()).byteLength).toBe(1_000_000);
  });

  it("streams a 10 MiB response through intact", async () => {
    const path = `/${unique("large")}`;
    const size = 10 * 1024 * 1024;
    await origin.route(path, { size });
    const response = await send(request(path));
    const reader = response.body?.getReader();
    if (!reader) throw new Error("no body");
    let length = 0;
    let pieces = 0;
    let intact = true;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // The pattern is "0123456789" repeated, so each byte is its offset mod 10.
      if (value.byteLength > 0 && value[0] !== 0x30 + (length % 10)) intact = false;
      length += value.byteLength;
      pieces += 1;
    }
    expect(length).toBe(size);
    expect(intact).toBe(true);
    expect(pieces).toBeGreaterThan(1);
  });
});
