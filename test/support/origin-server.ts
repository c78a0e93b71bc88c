import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";

/**
 * A real HTTP origin on loopback for the workerd tests. It counts every request per path, remembers the
 * last request to each path, and answers either from a route a test registered or with a default
 * cacheable response. Tests talk to it over HTTP from inside workerd (see `test/support/origin.ts`).
 *
 * Control endpoints (never counted):
 *   PUT  /__route?path=/p   body: RouteSpec JSON   — how /p answers from now on
 *   GET  /__hits?path=/p                            — { hits, last }
 */
export interface RouteSpec {
  status?: number;
  /** Response headers; `{header:name}` in a value becomes that request header's value (a reflecting origin). */
  headers?: Record<string, string | string[]>;
  /** The body; `{hit}` becomes the request's count, `{header:name}` that request header's value ("" if absent). */
  body?: string;
  /** A generated body of this many bytes (pattern "0123456789"). */
  size?: number;
  /** Wait this long before sending the headers. */
  delayMs?: number;
  /**
   * Send the headers (with the full Content-Length, or with `chunked` none), then this many bytes, then cut
   * the connection.
   */
  truncateAfter?: number;
  /** Answer 304 when If-None-Match matches the route's ETag header (or If-Modified-Since its Last-Modified). */
  conditional?: boolean;
  /** Extra headers on those 304s (say a Content-Type, which some servers send). */
  notModifiedHeaders?: Record<string, string>;
  /** Close the connection without answering. */
  hangUp?: boolean;
  /** Reset the connection (TCP RST) without answering. */
  reset?: boolean;
  /** Close the connection without answering for the first this many requests, then answer normally. */
  hangUpTimes?: number;
  /** Send the headers and this many bytes of the body, then go silent (without closing). */
  stallAfter?: number;
  /** Send the body in the chunked coding, in pieces of about this many bytes (no Content-Length). */
  chunked?: number;
  /**
   * Send the body (with its Content-Length) in pieces of `bytes`, one every `everyMs`: a distant origin. With
   * `truncateAfter`, it stops there and cuts the connection.
   */
  paced?: { bytes: number; everyMs: number };
  /** Write exactly these bytes (Latin-1) as the whole answer, then close: for framing Node would not produce. */
  raw?: string;
  /** The body is this file, relative to test/fixtures/, or `demo/<name>` from demo/assets/ (real images). */
  file?: string;
  /**
   * Compress the body with this content coding (Content-Encoding, Vary: Accept-Encoding, and the coded
   * length as Content-Length) when the request's Accept-Encoding lists it, or always with `encodeAlways`
   * (a careless origin). `truncateAfter`, `stallAfter` and `chunked` then apply to the coded bytes.
   */
  encode?: "gzip" | "br" | "deflate" | "deflate-raw";
  encodeAlways?: boolean;
  /**
   * Force https the way a backend behind a proxy does: unless X-Forwarded-Proto is https, answer
   * `301 Location: https://<this host><request path and query>` (with the route's other headers).
   */
  forceHttps?: string;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** What the origin server relays for the bucket server, whose every request must be signed. */
export interface BucketControl {
  putObject(
    bucket: string,
    key: string,
    bytes: Uint8Array,
    options: { contentType?: string; cacheControl?: string },
  ): unknown;
  stats: {
    hits(bucket: string, key: string, method?: string): number;
    lastRequest: unknown;
    rejected: number;
  };
}

export function startOriginServer(bucket?: BucketControl): Promise<{ server: Server; port: number }> {
  const routes = new Map<string, RouteSpec>();
  const hits = new Map<string, number>();
  const last = new Map<string, SeenRequest>();

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://origin.test");
    const rawBody = await readRaw(req);
    const body = rawBody.toString("utf8");
    if (url.pathname === "/__route" && req.method === "PUT") {
      routes.set(url.searchParams.get("path") ?? "/", JSON.parse(body) as RouteSpec);
      return json(res, { ok: true });
    }
    if (url.pathname === "/__s3/put" && req.method === "PUT" && bucket) {
      bucket.putObject(url.searchParams.get("bucket") ?? "", url.searchParams.get("key") ?? "", rawBody, {
        contentType: req.headers["content-type"],
        cacheControl: req.headers["x-cache-control"] as string | undefined,
      });
      return json(res, { ok: true });
    }
    if (url.pathname === "/__s3/hits" && bucket) {
      const hits = bucket.stats.hits(url.searchParams.get("bucket") ?? "", url.searchParams.get("key") ?? "");
      return json(res, { hits, last: bucket.stats.lastRequest, rejected: bucket.stats.rejected });
    }
    if (url.pathname === "/__hits") {
      const path = url.searchParams.get("path") ?? "/";
      return json(res, { hits: hits.get(path) ?? 0, last: last.get(path) ?? null });
    }
    const count = (hits.get(url.pathname) ?? 0) + 1;
    hits.set(url.pathname, count);
    last.set(url.pathname, { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, body });
    const route = routes.get(url.pathname);
    if (!route) {
      const text = `${req.method} ${req.url} #${count}`;
      res.writeHead(200, {
        "content-type": "text/plain",
        "cache-control": "max-age=60",
        "x-origin-hit": String(count),
      });
      return res.end(req.method === "HEAD" ? undefined : text);
    }
    await respondWith(route, count, req, res);
  });

  // workerd keeps connections to the origin alive; a server that closes idle ones first (Node's default is
  // 5 s) races with a request sent on them, which then fails with "Network connection lost".
  server.keepAliveTimeout = 10 * 60_000;
  server.headersTimeout = 10 * 60_000 + 1000;
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (typeof address !== "object" || !address) throw new Error("origin server has no address");
      resolve({ server, port: address.port });
    });
  });
}

async function respondWith(route: RouteSpec, count: number, req: IncomingMessage, res: ServerResponse) {
  // Tests move Tiercel's clock by hand, so a route's responses carry no real-time Date unless it sets one.
  res.sendDate = false;
  if (route.delayMs) await new Promise((r) => setTimeout(r, route.delayMs));
  if (route.hangUp || (route.hangUpTimes !== undefined && count <= route.hangUpTimes)) {
    req.socket.destroy();
    return;
  }
  if (route.reset) {
    req.socket.resetAndDestroy();
    return;
  }
  if (route.raw !== undefined) {
    req.socket.end(Buffer.from(route.raw, "latin1"));
    return;
  }
  if (route.forceHttps !== undefined && req.headers["x-forwarded-proto"] !== "https") {
    res.writeHead(301, {
      ...route.headers,
      "x-origin-hit": String(count),
      location: `https://${route.forceHttps}${req.url ?? "/"}`,
      "content-length": "0",
    });
    return res.end();
  }
  if (route.conditional && isNotModified(route, req)) {
    const headers: Record<string, string | string[]> = { "x-origin-hit": String(count) };
    for (const [name, value] of Object.entries(route.headers ?? {})) {
      if (name.toLowerCase() !== "content-length" && name.toLowerCase() !== "content-type") headers[name] = value;
    }
    Object.assign(headers, route.notModifiedHeaders);
    res.writeHead(304, headers);
    return res.end();
  }
  const plain =
    route.file !== undefined
      ? await readFile(fixturePath(route.file))
      : route.size !== undefined
        ? Buffer.from("0123456789".repeat(Math.ceil(route.size / 10)).slice(0, route.size))
        : Buffer.from(reflect((route.body ?? "").replaceAll("{hit}", String(count)), req));
  const headers: Record<string, string | string[]> = { "x-origin-hit": String(count) };
  for (const [name, value] of Object.entries(route.headers ?? {})) {
    const reflected = Array.isArray(value) ? value.map((v) => reflect(v, req)) : reflect(value, req);
    // A reflected field is left out when the request had nothing to reflect (as a CORS origin does).
    if (reflected !== "") headers[name] = reflected;
  }
  const payload = encoded(route, req, headers, plain);
  if (!route.chunked && !Object.keys(headers).some((h) => h.toLowerCase() === "content-length")) {
    headers["content-length"] = String(payload.byteLength);
  }
  res.writeHead(route.status ?? 200, headers);
  if (req.method === "HEAD") return res.end();
  if (route.chunked) {
    // Headers flushed by the first write without a length: Node frames the rest as chunks, one per write.
    // With `truncateAfter`, the chunks stop there and the connection is cut (no last chunk).
    const end = Math.min(payload.byteLength, route.truncateAfter ?? payload.byteLength);
    for (let at = 0; at < end; at += route.chunked) {
      res.write(payload.subarray(at, Math.min(end, at + route.chunked)));
    }
    if (route.truncateAfter === undefined) return res.end();
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  if (route.paced) {
    const { bytes, everyMs } = route.paced;
    const end = Math.min(payload.byteLength, route.truncateAfter ?? payload.byteLength);
    for (let at = 0; at < end && !res.destroyed; at += Math.max(1, bytes)) {
      res.write(payload.subarray(at, Math.min(end, at + Math.max(1, bytes))));
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    if (route.truncateAfter === undefined) return res.end();
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  if (route.stallAfter !== undefined) {
    res.write(payload.subarray(0, route.stallAfter));
    setTimeout(() => res.socket?.destroy(), 30_000).unref();
    return;
  }
  if (route.truncateAfter !== undefined) {
    res.write(payload.subarray(0, route.truncateAfter));
    // Give the bytes a moment to leave, then cut the connection mid-body.
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  res.end(payload);
}

/** The body in the route's content coding, if it has one and the request accepts it (or the origin is careless). */
function encoded(
  route: RouteSpec,
  req: IncomingMessage,
  headers: Record<string, string | string[]>,
  plain: Buffer,
): Buffer {
  if (!route.encode) return plain;
  headers.vary = "Accept-Encoding";
  const accepted = String(req.headers["accept-encoding"] ?? "")
    .split(",")
    .map((coding) => coding.split(";")[0]?.trim().toLowerCase());
  // "deflate-raw" is a careless origin's deflate: labelled deflate, sent without the zlib wrapper.
  const label = route.encode === "deflate-raw" ? "deflate" : route.encode;
  if (!route.encodeAlways && !accepted.includes(label)) return plain;
  headers["content-encoding"] = label;
  if (route.encode === "gzip") return gzipSync(plain);
  if (route.encode === "br") return brotliCompressSync(plain);
  if (route.encode === "deflate-raw") return deflateRawSync(plain);
  return deflateSync(plain);
}

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
const DEMO_ASSETS = fileURLToPath(new URL("../../demo/assets/", import.meta.url));

/** A file under test/fixtures/ (or, as `demo/<name>`, under demo/assets/), never outside them. */
function fixturePath(name: string): string {
  const base = name.startsWith("demo/") ? DEMO_ASSETS : FIXTURES;
  const path = resolve(base, name.startsWith("demo/") ? name.slice("demo/".length) : name);
  if (!path.startsWith(base)) throw new Error(`fixture outside its folder: ${name}`);
  return path;
}

/** Replaces `{header:name}` with the request's value of that header ("" when it has none). */
function reflect(text: string, req: IncomingMessage): string {
  return text.replace(/\{header:([a-z0-9-]+)\}/g, (_, name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value.join(", ") : (value ?? "");
  });
}

function isNotModified(route: RouteSpec, req: IncomingMessage): boolean {
  const header = (name: string) =>
    Object.entries(route.headers ?? {})
      .find(([key]) => key.toLowerCase() === name)?.[1]
      ?.toString();
  const etag = header("etag");
  const inm = req.headers["if-none-match"];
  // RFC 9110 §13.1.2: If-None-Match compares weakly (W/"x" matches "x").
  const weak = (tag: string) => tag.trim().replace(/^W\//, "");
  if (inm !== undefined) return etag !== undefined && inm.split(",").some((tag) => weak(tag) === weak(etag));
  const ims = req.headers["if-modified-since"];
  const lastModified = header("last-modified");
  return ims !== undefined && lastModified !== undefined && Date.parse(lastModified) <= Date.parse(ims);
}

function readRaw(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function json(res: ServerResponse, value: unknown) {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}
