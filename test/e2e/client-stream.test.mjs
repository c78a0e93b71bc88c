// End to end, below wrangler dev: the stream a client's answer is sent from (src/core/streams.ts forClient),
// run in workerd through Miniflare, read over a real socket. A body that breaks off must abort the client's
// connection, with and without a known length (issue 11 §3). This runs workerd without wrangler dev's proxy
// in between (test/e2e/cut-short.test.mjs goes through it), to tell the runtime's behaviour from the proxy's.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

const STREAMS = fileURLToPath(new URL("../../src/core/streams.ts", import.meta.url));
const ENTRY = `
import { forClient } from ${JSON.stringify(STREAMS)};
export default {
  async fetch(req) {
    const url = new URL(req.url);
    const whole = url.searchParams.get("whole") === "1";
    let sent = 0;
    const body = new ReadableStream({
      async pull(controller) {
        if (sent === 5) return whole ? controller.close() : controller.error(new Error("the origin went away"));
        sent += 1;
        controller.enqueue(new TextEncoder().encode("x".repeat(5000)));
        await new Promise((resolve) => setTimeout(resolve, 20));
      },
    });
    const length = url.searchParams.get("length");
    const headers = length ? { "content-length": length } : {};
    return new Response(forClient(body, length ? Number(length) : undefined), { headers });
  },
};`;

let mf;
let base;

before(async () => {
  const bundle = await build({
    stdin: { contents: ENTRY, resolveDir: fileURLToPath(new URL(".", import.meta.url)), loader: "js" },
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  mf = new Miniflare({ modules: true, script: bundle.outputFiles[0].text, compatibilityDate: "2026-04-20" });
  base = (await mf.ready).href;
});

after(async () => {
  await mf?.dispose();
});

/** What the client's socket saw: whether the transfer ended cleanly, and how many body bytes came. */
function get(path) {
  return new Promise((resolve) => {
    const req = request(new URL(path, base), (res) => {
      let bytes = 0;
      let failed = false;
      res.on("data", (chunk) => (bytes += chunk.length));
      res.on("aborted", () => (failed = true));
      res.on("error", () => (failed = true));
      res.on("close", () => resolve({ clean: res.complete && !failed, bytes }));
    });
    req.on("error", () => resolve({ clean: false, bytes: 0 }));
    req.end();
  });
}

test("a whole body of unknown length ends cleanly", async () => {
  assert.deepEqual(await get("/?whole=1"), { clean: true, bytes: 25_000 });
});

// Known gap (issue 11 §3): once body bytes have gone out, workerd ends a chunked answer with its last chunk even
// when the stream errors (JS streams, IdentityTransformStream aborted by hand, pipeTo alike, seen here).
test("a body of unknown length that breaks off aborts the client's connection", {
  todo: "workerd ends a chunked answer cleanly",
}, async () => {
  assert.equal((await get("/")).clean, false);
});

test("a body of known length that breaks off aborts the client's connection", async () => {
  const seen = await get("/?length=50000");
  assert.equal(seen.clean, false);
  assert.ok(seen.bytes < 50_000);
});
