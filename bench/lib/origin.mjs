// The bench origin: a Node HTTP server on loopback standing for a distant bucket. Every object is generated:
// `/o/<bytes>/<name>` is <bytes> bytes of a fixed pattern, served with Content-Length and
// `Cache-Control: public, max-age=3600`. Distance is injected: `latencyMs` before the response head (and so
// before the first byte), then the body paced at `mbps` per response (each response has its own clock, so
// 100 concurrent responses are not slowed by each other's pacing). Requests are counted per path, and the
// time each response took to serve is kept, so a report can show the origin was not the bottleneck.
import { createServer } from "node:http";

const MAX_OBJECT_BYTES = 512 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
const PATTERN = Buffer.alloc(CHUNK_BYTES);
for (let i = 0; i < CHUNK_BYTES; i++) PATTERN[i] = (i * 31 + 7) & 0xff;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Whether `chunk` holds the bytes found at `offset` of every generated object (a 64 KiB pattern, repeated). */
export function matchesPattern(chunk, offset) {
  for (let at = 0; at < chunk.length; ) {
    const phase = (offset + at) % CHUNK_BYTES;
    const length = Math.min(CHUNK_BYTES - phase, chunk.length - at);
    if (!chunk.subarray(at, at + length).equals(PATTERN.subarray(phase, phase + length))) return false;
    at += length;
  }
  return true;
}

/** The path of a generated object of `bytes` bytes. */
export function objectPath(bytes, name) {
  return `/o/${bytes}/${name}`;
}

/**
 * Starts the origin on 127.0.0.1 (a free port). `mbps` of 0 means no cap. Returns its URL, the per-path
 * request counts, and `close()`.
 */
export async function startOrigin({ latencyMs, mbps }) {
  const counts = new Map();
  /** path -> milliseconds from request to the end of each finished response */
  const serveMs = new Map();
  const bytesPerMs = mbps > 0 ? (mbps * 1e6) / 8 / 1000 : Number.POSITIVE_INFINITY;
  const sockets = new Set();

  const server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://origin").pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const received = performance.now();
    res.on("finish", () => {
      if (!serveMs.has(path)) serveMs.set(path, []);
      serveMs.get(path).push(performance.now() - received);
    });
    const match = /^\/o\/([0-9]{1,9})\/[A-Za-z0-9._-]+$/.exec(path);
    const size = match ? Number(match[1]) : -1;
    let closed = false;
    let wake = null;
    res.on("close", () => {
      closed = true;
      wake?.();
    });
    res.on("drain", () => wake?.());
    await sleep(latencyMs);
    if (closed) return;
    if (size < 0 || size > MAX_OBJECT_BYTES || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain", "cache-control": "no-store" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(size),
      "cache-control": "public, max-age=3600",
      "last-modified": new Date(Date.now() - 60_000).toUTCString(),
      etag: `"${size}-${path.length}"`,
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    // Paced writes: chunk i goes out no earlier than start + (bytes before it) / rate; bounded by the size.
    const start = performance.now();
    let sent = 0;
    while (sent < size && !closed) {
      const due = start + sent / bytesPerMs;
      if (due > performance.now()) await sleep(due - performance.now());
      const length = Math.min(CHUNK_BYTES, size - sent);
      const ok = res.write(length === CHUNK_BYTES ? PATTERN : PATTERN.subarray(0, length));
      sent += length;
      if (!ok && !closed) {
        await new Promise((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    }
    if (!closed) res.end();
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 5_000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    counts,
    /** Requests seen for a path. */
    count(path) {
      return counts.get(path) ?? 0;
    },
    /** How long each finished response for a path took to serve, in ms (request to last byte written). */
    serveTimes(path) {
      return serveMs.get(path) ?? [];
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
