// End to end: the local demo (`npm start`: scripts/start.mjs, the SigV4 bucket and `wrangler dev`) loaded by a
// real browser, Debian's Chromium driven by playwright-core. The demo site optimizes: the browser must get its
// photo as WebP, smaller than the JPEG in the bucket, the resized photo at its width, and minified assets.
// Run by `npm test` with `node --test test/e2e/`; CI installs Chromium (.ci/run). Without Chromium (and
// outside CI) it is skipped with a message saying so.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/free-port.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} not installed (apt-get install chromium)` : false;

let demo;
let base;
let state;
let browser;

/** Starts `npm start`'s script on free ports and waits (bounded) until wrangler says it is ready. */
async function startDemo() {
  const [port, s3Port] = [await freePort(), await freePort()];
  state = await mkdtemp(join(tmpdir(), "tiercel-demo-e2e-"));
  const child = spawn(process.execPath, ["scripts/start.mjs"], {
    cwd: ROOT,
    // Its own KV and Cache API: a fresh start, whatever a developer's own `npm start` left in .wrangler/.
    env: { ...process.env, PORT: String(port), DEMO_S3_PORT: String(s3Port), TIERCEL_STATE_DIR: state },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not start within 120 s:\n${output}`)), 120_000);
    const onData = (chunk) => {
      output += chunk;
      if (/Ready on http/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before it was ready:\n${output}`));
    });
  });
  return { child, url: `http://localhost:${port}` };
}

before(async () => {
  if (skip) return;
  demo = await startDemo();
  base = demo.url;
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  if (demo) {
    // The script and wrangler's workerd processes share a process group.
    try {
      process.kill(-demo.child.pid, "SIGTERM");
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      process.kill(-demo.child.pid, "SIGKILL");
    } catch {}
  }
  if (state) await rm(state, { recursive: true, force: true });
});

test("a browser gets the demo's photo as WebP, smaller than the original, and the resized one at its width", {
  skip,
  timeout: 180_000,
}, async () => {
  const responses = new Map();
  // One page load makes six variants at once, within a site's bound of transforms in flight (8, TRANSFORM_BOUNDS
  // in src/optimize/optimize.ts): every one is transformed on this first load, none stands in as "busy".
  const page = await browser.newPage();
  page.on("response", (response) => responses.set(new URL(response.url()).pathname, response));
  await page.goto(`${base}/`, { waitUntil: "load" });
  const notes = await Promise.all([...responses.values()].map(async (r) => (await r.allHeaders())["tiercel-optimize"]));
  assert.ok(!notes.some((note) => /reason=busy/.test(note ?? "")), notes.join("\n"));

  // The photo: WebP, smaller than the JPEG in the bucket.
  const photo = responses.get("/photo.jpg");
  assert.ok(photo, "the page loaded /photo.jpg");
  const original = await readFile(new URL("demo/assets/photo.jpg", `file://${ROOT}/`));
  const served = await photo.body();
  const headers = await photo.allHeaders();
  assert.equal(headers["content-type"], "image/webp");
  assert.equal(served.subarray(8, 12).toString("latin1"), "WEBP");
  assert.ok(served.byteLength < original.byteLength / 2, `${served.byteLength} < ${original.byteLength} / 2`);
  assert.match(headers["tiercel-optimize"], /^format=webp, from=jpeg/);
  assert.match(headers.vary, /Accept/);

  // The graphic: its polished PNG is smaller than any WebP of it, so the browser gets that.
  const graphic = await responses.get("/tiercel.png")?.allHeaders();
  assert.equal(graphic?.["content-type"], "image/png");
  assert.match(graphic?.["tiercel-optimize"] ?? "", /^format=png, from=png, lossless/);

  // Every image decoded by the browser itself, the resized one at its width.
  const widths = await page.$$eval("img", (images) => images.map((img) => [img.getAttribute("src"), img.naturalWidth]));
  assert.deepEqual(widths, [
    ["/tiercel.png", 320],
    ["/photo.jpg", 640],
    ["/_tiercel/image/width=160/photo.jpg", 160],
  ]);

  // Minified page, stylesheet and script, still working: the script ran and wrote its status line.
  for (const path of ["/", "/styles.css", "/app.js"]) {
    const minified = (await responses.get(path)?.allHeaders())?.["tiercel-optimize"] ?? "";
    assert.match(minified, /^minified, original=\d+/, `${path}: ${minified}`);
  }
  assert.notEqual((await page.textContent("#status"))?.trim() ?? "", "");
  await page.close();
});
