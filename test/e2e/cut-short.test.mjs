// End to end (issue 11 §3): what a client's socket sees when the origin cuts a body short, with the real
// Worker in workerd (`wrangler dev`) and a raw TCP origin on loopback. Inside vitest-pool-workers a body read
// that rejects says nothing about the connection; only a real socket shows whether the transfer ended
// cleanly (a shorter body that looks complete) or was aborted. Run by `npm test` with `node --test test/e2e/`.
import assert from "node:assert/strict";
import { request } from "node:http";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { startWranglerDev } from "../support/wrangler-dev.mjs";

const TOKEN = "e2e-cut-short-token-0123456789abcdef";
const HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: public, max-age=600\r\n";

let dev;
let workerUrl;
let origin;
const hits = new Map();

/**
 * The origin's answers, by path: each writes a head and part of a body, then ends the connection in its own
 * way. `/whole-*` answers completely (to show the test can tell a clean end from a cut one).
 */
const ROUTES = {
  // Content-Length: 50000, 10000 bytes, then FIN.
  "/short-length": (socket) => {
    socket.write(`${HEAD}Content-Length: 50000\r\n\r\n`);
    socket.end(Buffer.alloc(10_000, 97));
  },
  // Over the Worker's buffering limit, so the miss streams to the tiers as well.
  "/short-length-large": (socket) => {
    socket.write(`${HEAD}Content-Length: 6000000\r\n\r\n`);
    socket.end(Buffer.alloc(200_000, 98));
  },
  // Chunked, one chunk, no last chunk, then FIN.
  "/short-chunked": (socket) => {
    socket.write(`${HEAD}Transfer-Encoding: chunked\r\n\r\n`);
    socket.end(`2710\r\n${"c".repeat(10_000)}\r\n`);
  },
  // Content-Length: 50000, 10000 bytes, then RST.
  "/reset": (socket) => {
    socket.write(`${HEAD}Content-Length: 50000\r\n\r\n`);
    socket.write(Buffer.alloc(10_000, 100), () => setTimeout(() => socket.resetAndDestroy(), 50));
  },
  "/whole-length": (socket) => {
    socket.end(`${HEAD}Content-Length: 5\r\n\r\nwhole`);
  },
  // Chunked, whole: sent on with its length, read before the head left.
  "/whole-chunked": (socket) => {
    socket.end(`${HEAD}Transfer-Encoding: chunked\r\n\r\n2710\r\n${"w".repeat(10_000)}\r\n0\r\n\r\n`);
  },
};

/** GETs `path` from the Worker over a fresh connection and reports how the transfer ended. */
function get(path, host) {
  return new Promise((resolve) => {
    const headers = { connection: "close", ...(host ? { host } : {}) };
    const req = request(`${workerUrl}${path}`, { agent: false, headers });
    req.on("error", (error) => resolve({ clean: false, error: error.message }));
    req.on("response", (res) => {
      let received = 0;
      let aborted = false;
      res.on("data", (chunk) => {
        received += chunk.length;
      });
      res.on("aborted", () => {
        aborted = true;
      });
      res.on("error", () => {
        aborted = true;
      });
      res.on("close", () => {
        // node marks a message complete only when its framing ended it (the declared length, the last chunk).
        resolve({
          status: res.statusCode,
          headers: res.headers,
          received,
          clean: res.complete && !aborted,
        });
      });
      res.resume();
    });
    req.end();
  });
}

before(async () => {
  origin = createServer((socket) => {
    socket.on("error", () => {});
    let head = "";
    socket.on("data", (chunk) => {
      head += chunk;
      if (!head.includes("\r\n\r\n")) return;
      const path = new URL(head.split(" ")[1], "http://origin").pathname;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      const route = ROUTES[path];
      if (route) route(socket);
      else socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      head = "";
    });
  });
  await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originUrl = `http://127.0.0.1:${origin.address().port}`;

  dev = await startWranglerDev({ token: TOKEN });
  workerUrl = dev.url;

  const put = await fetch(`${workerUrl}/_tiercel/api/v1/sites`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ hosts: ["127.0.0.1"], origin: { kind: "http", url: originUrl, allowPrivate: true } }),
  });
  assert.equal(put.status, 201, await put.text());
  // A second site that reads at most 1000 bytes of an answer of unknown length before its head leaves.
  const small = await fetch(`${workerUrl}/_tiercel/api/v1/sites`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({
      hosts: ["small.localhost"],
      origin: { kind: "http", url: originUrl, allowPrivate: true },
      cache: { collectUnknownLength: 1000 },
    }),
  });
  assert.equal(small.status, 201, await small.text());
});

after(async () => {
  await dev?.stop();
  await new Promise((resolve) => origin?.close(resolve));
});

test("a whole body ends cleanly, and is then a hit", async () => {
  const miss = await get("/whole-length");
  assert.equal(miss.status, 200);
  assert.equal(miss.clean, true);
  assert.equal(miss.received, 5);
  // Every later request is a hit. The edge copy is written in the background after the body has gone out
  // (through the shield, the data center stores it once the shield says the body ended), so the first of
  // them may come from the global tier; within 20 tries (bounded) one is an edge hit.
  let hit;
  for (let i = 0; i < 20; i++) {
    hit = await get("/whole-length");
    assert.equal(hit.clean, true);
    assert.equal(hit.received, 5);
    assert.match(hit.headers["cache-status"], /^Tiercel-(Edge|KV); hit/);
    if (hit.headers["cache-status"].startsWith("Tiercel-Edge; hit")) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.match(hit.headers["cache-status"], /^Tiercel-Edge; hit/);
});

const CUT = [
  ["a declared length not reached", "/short-length", "50000"],
  ["a declared length not reached, over the buffering limit", "/short-length-large", "6000000"],
  ["a reset mid-body", "/reset", "50000"],
];

for (const [name, path, length] of CUT) {
  test(`the client's transfer is aborted, never ended cleanly, and nothing is stored: ${name}`, async () => {
    const first = await get(path);
    assert.equal(first.status, 200);
    assert.equal(first.headers["content-length"], length);
    assert.equal(first.clean, false, `${name}: the client saw a clean end after ${first.received} bytes`);
    assert.ok(first.received < Number(length));
    assert.doesNotMatch(first.headers["cache-status"], /stored/);

    const second = await get(path);
    assert.equal(second.clean, false);
    assert.match(second.headers["cache-status"], /fwd=miss/);
    assert.equal(hits.get(path), 2);
  });
}

// With no length to declare, the answer is read before its head leaves (cache.collectUnknownLength), so a
// chunked body without its last chunk becomes an error answer, and a whole one goes out with its length.
test("a chunked body without its last chunk is a 502, never a clean 200, and nothing is stored", async () => {
  const first = await get("/short-chunked");
  assert.equal(first.status, 502);
  assert.match(first.headers["cache-status"], /fwd=miss; fwd-status=200; detail=origin_bad_response/);
  const second = await get("/short-chunked");
  assert.equal(second.status, 502);
  assert.equal(hits.get("/short-chunked"), 2);
});

test("a whole chunked body goes out with its length, and is then a hit", async () => {
  const miss = await get("/whole-chunked");
  assert.equal(miss.status, 200);
  assert.equal(miss.headers["content-length"], "10000");
  assert.equal(miss.clean, true);
  assert.equal(miss.received, 10_000);
  const hit = await get("/whole-chunked");
  assert.match(hit.headers["cache-status"], /^Tiercel-Edge; hit/);
});

// Past the bound the answer streams chunked, and workerd ends it with a clean last chunk even when its body
// errors (test/e2e/client-stream.test.mjs; docs/http-caching.md): a known limit, kept as a todo that runs. The
// body is never stored.
test("past the bound, a chunked body without its last chunk aborts the client's transfer", {
  todo: "workerd ends a chunked answer cleanly (known limit)",
}, async () => {
  const first = await get("/short-chunked", "small.localhost");
  assert.equal(first.status, 200);
  assert.equal(first.headers["content-length"], undefined);
  assert.equal(first.clean, false);
});

test("past the bound, a chunked body without its last chunk is never stored", async () => {
  const before = hits.get("/short-chunked") ?? 0;
  const first = await get("/short-chunked", "small.localhost");
  assert.equal(first.status, 200);
  assert.equal(first.headers["content-length"], undefined);
  const second = await get("/short-chunked", "small.localhost");
  assert.match(second.headers["cache-status"], /fwd=miss/);
  assert.equal(hits.get("/short-chunked"), before + 2);
});
