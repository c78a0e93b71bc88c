// End to end: the `tiercel` CLI against the real Worker running in workerd (`wrangler dev`), with a real
// HTTP origin on loopback that counts its hits. Run by `npm test` with `node --test test/e2e/`.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { wranglerEnv as env, startWranglerDev } from "../support/wrangler-dev.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TOKEN = "e2e-admin-token-0123456789abcdef0123";

let dev;
let workerUrl;
let origin;
let originUrl;
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

  dev = await startWranglerDev({ token: TOKEN });
  workerUrl = dev.url;
});

after(async () => {
  await dev?.stop();
  await new Promise((resolve) => origin?.close(resolve));
});

test("the CLI manages a site on the local Worker: put, serve, list, purge, stats, delete", async () => {
  const file = join(dev.stateDir, "site.json");
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
  const answer = JSON.parse(stats.stdout);
  // Summed by the stats aggregator (the answering isolate flushes first), over the default window.
  assert.equal(answer.scope, "global");
  assert.equal(answer.sites[id].requests, 3);
  assert.equal(answer.series.length, 60);
  assert.equal(
    answer.series.reduce((/** @type {number} */ sum, /** @type {any} */ point) => sum + point.values.requests, 0),
    3,
  );
  const window = await cli(["stats", "--window", "5m", "--site", id]);
  assert.equal(window.code, 0, window.stderr);
  assert.match(window.stdout, new RegExp(`^${id} +3 `, "m"));
  assert.match(window.stdout, /^requests per minute: /m);

  const refused = await cli(["sites", "list"], { TIERCEL_TOKEN: "wrong" });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unauthorized/);

  const deleted = await cli(["sites", "delete", id]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal((await fetch(`${workerUrl}/app.css`)).status, 404);
});

test("the CLI makes a scoped token, which purges its site only, and the audit log names it", async () => {
  const file = join(dev.stateDir, "scoped.json");
  await writeFile(
    file,
    JSON.stringify({ hosts: ["scoped.localhost"], origin: { kind: "http", url: originUrl, allowPrivate: true } }),
  );
  const put = await cli(["sites", "put", file, "--json"]);
  assert.equal(put.code, 0, put.stderr);
  const id = JSON.parse(put.stdout).site?.id ?? JSON.parse(put.stdout)[0]?.site?.id;

  const made = await cli(["tokens", "create", "ci deploys", "--site", id, "--json"]);
  assert.equal(made.code, 0, made.stderr);
  const { token, secret } = JSON.parse(made.stdout);
  assert.match(secret, /^tcs_[0-9a-f]{16}_/);
  const listed = await cli(["tokens", "list"]);
  assert.match(listed.stdout, new RegExp(`${token.id}\\s+ci deploys\\s+${id}`));
  assert.ok(!listed.stdout.includes(secret));

  const scoped = { TIERCEL_TOKEN: secret };
  const purged = await cli(["purge", id, "--tag", "t1"], scoped);
  assert.equal(purged.code, 0, purged.stderr);
  const escalate = await cli(["tokens", "list"], scoped);
  assert.equal(escalate.code, 1);
  assert.match(escalate.stderr, /admin_only/);

  const log = await cli(["audit", "--site", id]);
  assert.equal(log.code, 0, log.stderr);
  assert.match(log.stdout, new RegExp(`ci deploys \\(${token.id}\\)\\s+site\\.purge\\s+${id}\\s+.*tags=t1`));
  assert.match(log.stdout, /admin\s+site\.create/);

  const revoked = await cli(["tokens", "revoke", token.id]);
  assert.equal(revoked.code, 0, revoked.stderr);
  const after = await cli(["purge", id, "--tag", "t2"], scoped);
  assert.equal(after.code, 1);
  assert.match(after.stderr, /unauthorized/);
  const global = await cli(["audit", "--limit", "1"]);
  assert.match(global.stdout, /admin\s+token\.revoke/);
});
