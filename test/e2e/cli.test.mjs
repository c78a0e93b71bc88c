// End to end: the `tiercel` CLI against the real Worker running in workerd (`wrangler dev`), with a real
// HTTP origin on loopback that counts its hits. Run by `npm test` with `node --test test/e2e/`.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/free-port.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TOKEN = "e2e-admin-token";
const env = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

let worker;
let workerUrl;
let origin;
let originUrl;
let dir;
const hits = new Map();

function cli(args, extraEnv = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, "cli/tiercel.mjs"), ...args], {
      env: { ...env, TIERCEL_URL: workerUrl, TIERCEL_TOKEN: TOKEN, ...extraEnv },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

before(async () => {
  origin = createServer((req, res) => {
    const path = new URL(req.url, "http://origin").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    res.writeHead(200, { "content-type": "text/css", "cache-control": "public, max-age=300" });
    res.end(`/* ${path} #${hits.get(path)} */`);
  });
  await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
  originUrl = `http://127.0.0.1:${origin.address().port}`;

  dir = await mkdtemp(join(tmpdir(), "tiercel-e2e-"));
  const port = await freePort();
  workerUrl = `http://127.0.0.1:${port}`;
  worker = spawn(
    "npx",
    [
      "wrangler",
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      dir,
      "--show-interactive-dev-session=false",
      "--var",
      `ADMIN_TOKEN:${TOKEN}`,
    ],
    { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  await new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`wrangler dev did not start:\n${output}`)), 90_000);
    const watch = (chunk) => {
      output += chunk;
      if (output.includes("Ready on")) {
        clearTimeout(timer);
        resolve();
      }
    };
    worker.stdout.on("data", watch);
    worker.stderr.on("data", watch);
    worker.on("exit", (code) => reject(new Error(`wrangler dev exited with ${code}:\n${output}`)));
  });
});

after(async () => {
  if (worker?.pid) {
    try {
      process.kill(-worker.pid, "SIGTERM");
    } catch {}
  }
  await new Promise((resolve) => origin?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("the CLI manages a site on the local Worker: put, serve, list, purge, stats, delete", async () => {
  const file = join(dir, "site.json");
  await writeFile(
    file,
    JSON.stringify({ hosts: ["127.0.0.1"], origin: { kind: "http", url: originUrl, allowPrivate: true } }),
  );
  const put = await cli(["sites", "put", file, "--json"]);
  assert.equal(put.code, 0, put.stderr);
  const id = JSON.parse(put.stdout).site?.id ?? JSON.parse(put.stdout)[0]?.site?.id;
  assert.match(id, /^[0-9a-f]{32}$/);

  const first = await fetch(`${workerUrl}/app.css`);
  assert.equal(await first.text(), "/* /app.css #1 */");
  const second = await fetch(`${workerUrl}/app.css`);
  assert.match(second.headers.get("cache-status"), /^Tiercel-Edge; hit/);
  assert.equal(hits.get("/app.css"), 1);

  const list = await cli(["sites", "list", "--json"]);
  assert.equal(list.code, 0, list.stderr);
  assert.ok(JSON.stringify(JSON.parse(list.stdout)).includes(id));
  const table = await cli(["sites", "list"]);
  assert.match(table.stdout, new RegExp(id));

  const purge = await cli(["purge", id, "--purge-url", "http://127.0.0.1/app.css"]);
  assert.equal(purge.code, 0, purge.stderr);
  const third = await fetch(`${workerUrl}/app.css`);
  assert.equal(await third.text(), "/* /app.css #2 */");

  const stats = await cli(["stats", id, "--json"]);
  assert.equal(stats.code, 0, stats.stderr);
  assert.equal(JSON.parse(stats.stdout).sites[id].requests, 3);

  const refused = await cli(["sites", "list"], { TIERCEL_TOKEN: "wrong" });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unauthorized/);

  const deleted = await cli(["sites", "delete", id]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal((await fetch(`${workerUrl}/app.css`)).status, 404);
});
