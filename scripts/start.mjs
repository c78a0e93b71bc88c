// `npm start`: the whole Tiercel stack on this machine, no Cloudflare account needed.
//  1. a local S3-compatible bucket server on loopback (demo/s3-server.mjs), holding demo/assets in bucket
//     "demo" and refusing any request whose SigV4 signature does not verify,
//  2. a site config for localhost and 127.0.0.1 (origin kind "s3") written to the local SITES namespace,
//  3. both Workers in workerd (`wrangler dev -c wrangler.jsonc -c wrangler.optimizer.jsonc`): the cache Worker,
//     with KV and Cache persisted under .wrangler/ and the bucket credentials passed as variables, as Worker
//     secrets would be when deployed, and the optimizer Worker, which its OPTIMIZER service binding reaches.
// Each start is a fresh "data center": the local Cache API (tier 1) starts empty, while KV (tier 2, global)
// keeps what earlier runs stored, so a restart shows tier 2 answering and refilling tier 1.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startS3Server } from "../demo/s3-server.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ASSETS = new URL("../demo/assets/", import.meta.url);
const S3_PORT = portFromEnv("DEMO_S3_PORT", 9000);
const WORKER_PORT = await workerPort();
const DEMO_HOSTS = ["localhost", "127.0.0.1"];
/** A fixed id keeps the demo's cache across restarts; real sites get a random one. */
const DEMO_SITE_ID = "demo-site-3c9f1a7e";
const CREDENTIALS = { accessKeyId: "tiercel-demo", secretAccessKey: "tiercel-demo-secret" };
/** The local admin token; the `tiercel` CLI uses it by default against http://localhost:8787. */
const LOCAL_TOKEN = "tiercel-local-admin-token-not-a-secret";
const ADMIN_TOKEN = process.env.TIERCEL_TOKEN || LOCAL_TOKEN;
/** The Worker refuses a shorter ADMIN_TOKEN (503 admin_token_too_short; src/sites/tokens.ts). */
const MIN_ADMIN_TOKEN_LENGTH = 32;
if (ADMIN_TOKEN.length < MIN_ADMIN_TOKEN_LENGTH) {
  fail(
    `TIERCEL_TOKEN is ${ADMIN_TOKEN.length} characters; the admin token must be at least ${MIN_ADMIN_TOKEN_LENGTH} (try: export TIERCEL_TOKEN=$(openssl rand -hex 24)), or unset it to use the local one`,
  );
}
/** Where wrangler keeps the local KV and Cache API (tests point it at a temporary directory). */
const STATE_DIR = process.env.TIERCEL_STATE_DIR ?? join(ROOT, ".wrangler/state");

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".png": "image/png",
  ".jpg": "image/jpeg",
};

// wrangler reaches for the internet unless told not to; these machines (and many laptops on planes) have none.
const env = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

function run(args, options = {}) {
  return spawn("npx", ["wrangler", ...args], { cwd: ROOT, env, stdio: "inherit", ...options });
}

function runToEnd(args) {
  return new Promise((resolve, reject) => {
    const child = run(args, { stdio: ["ignore", "ignore", "inherit"] });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`wrangler ${args[0]} exited with ${code}`))));
  });
}

/** A port from the environment, or the default when unset; anything else is a clear error, not a stack trace. */
function portFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return { port: fallback, chosen: false };
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    fail(`${name} must be a port number from 1 to 65535, not "${raw}"`);
  return { port, chosen: true };
}

function fail(message) {
  console.error(`npm start: ${message}`);
  process.exit(1);
}

/** Whether 127.0.0.1:port can be listened on right now. */
function isFree(port) {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

/** Any free port on 127.0.0.1. */
function anyFreePort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** PORT if free; 8787 if free; else another free port, said out loud. A PORT that is taken is an error. */
async function workerPort() {
  const { port, chosen } = portFromEnv("PORT", 8787);
  if (await isFree(port)) return port;
  if (chosen) fail(`port ${port} (PORT) is already in use: stop what holds it, or start with another PORT=<port>`);
  const other = await anyFreePort();
  console.log(
    `port ${port} is in use (another wrangler dev?); the Worker takes port ${other} instead (set PORT to choose)`,
  );
  return other;
}

await rm(join(STATE_DIR, "v3/cache"), { recursive: true, force: true });

/** The demo bucket on DEMO_S3_PORT, else 9000, else any free port (the site config follows it). */
async function startBucket() {
  const options = { credentials: CREDENTIALS, buckets: { demo: null }, log: (line) => console.log(line) };
  try {
    return await startS3Server({ ...options, port: S3_PORT.port });
  } catch (error) {
    if (error?.code !== "EADDRINUSE") throw error;
    if (S3_PORT.chosen) {
      fail(`port ${S3_PORT.port} (DEMO_S3_PORT) is already in use: stop what holds it, or choose another DEMO_S3_PORT`);
    }
    console.log(
      `port ${S3_PORT.port} is in use; the demo bucket takes a free port instead (set DEMO_S3_PORT to choose)`,
    );
    return startS3Server({ ...options, port: 0 });
  }
}
const s3 = await startBucket();
for (const name of await readdir(ASSETS)) {
  const type = TYPES[extname(name)] ?? "application/octet-stream";
  // Pages for a minute, assets for five, as a site owner might set them on upload.
  const cacheControl = name.endsWith(".html") ? "public, max-age=60" : "public, max-age=300";
  s3.putObject("demo", name, await readFile(new URL(name, ASSETS)), { contentType: type, cacheControl });
}
console.log(`demo bucket "demo" listening on ${s3.url}`);

const site = {
  version: 1,
  id: DEMO_SITE_ID,
  hosts: DEMO_HOSTS,
  origin: {
    kind: "s3",
    endpoint: s3.url,
    bucket: "demo",
    region: "us-east-1",
    addressing: "path",
    indexDocument: "index.html",
    accessKeyIdSecret: "DEMO_S3_ACCESS_KEY_ID",
    secretAccessKeySecret: "DEMO_S3_SECRET_ACCESS_KEY",
    // The demo bucket is on loopback, which a site has to allow explicitly.
    allowPrivate: true,
  },
  // Images as WebP to browsers that take it, resize URLs, minified HTML, CSS and JS (docs/configuration.md).
  optimize: {
    polish: "lossy",
    formats: ["webp"],
    resize: true,
    minify: { html: true, css: true, js: true },
  },
};
// The layout the admin API writes: the site under its id, and a copy under each of its hosts.
const value = JSON.stringify(site);
const pairs = [{ key: `site:${site.id}`, value }, ...DEMO_HOSTS.map((host) => ({ key: `host:${host}`, value }))];
const dir = await mkdtemp(join(tmpdir(), "tiercel-"));
await writeFile(join(dir, "sites.json"), JSON.stringify(pairs));
await runToEnd([
  "kv",
  "bulk",
  "put",
  "--local",
  "--persist-to",
  STATE_DIR,
  "--binding",
  "SITES",
  join(dir, "sites.json"),
]);
await rm(dir, { recursive: true, force: true });
console.log(`site ${DEMO_SITE_ID} configured for ${DEMO_HOSTS.join(", ")} -> bucket demo at ${s3.url}`);
console.log(`\nTry: curl -i http://localhost:${WORKER_PORT}/styles.css   (three times, and watch Cache-Status)`);
console.log(`     curl -si -H 'Accept: image/webp' http://localhost:${WORKER_PORT}/photo.jpg | head -14   (WebP)`);
console.log(
  `     curl -so /dev/null -w '%{content_type} %{size_download}\\n' http://localhost:${WORKER_PORT}/_tiercel/image/width=160/photo.jpg`,
);
const adminCommand =
  WORKER_PORT === 8787
    ? "npx tiercel sites list"
    : `TIERCEL_URL=http://127.0.0.1:${WORKER_PORT} ${process.env.TIERCEL_TOKEN ? "" : `TIERCEL_TOKEN=${LOCAL_TOKEN} `}npx tiercel sites list`;
console.log(`Admin: ${adminCommand}   (token ${ADMIN_TOKEN === LOCAL_TOKEN ? LOCAL_TOKEN : "from TIERCEL_TOKEN"})`);
// The operators' console (src/console/): sign in with the same token; the browser keeps only a sealed session cookie.
console.log(
  `Console: http://localhost:${WORKER_PORT}/_tiercel/console/   (sign in with ${ADMIN_TOKEN === LOCAL_TOKEN ? `the token ${LOCAL_TOKEN}` : "your TIERCEL_TOKEN"})\n`,
);

const worker = run([
  "dev",
  // The first config is the cache Worker (the one served on the port); the second, the optimizer Worker,
  // is wired to its OPTIMIZER binding by wrangler in the same process.
  "-c",
  "wrangler.jsonc",
  "-c",
  "wrangler.optimizer.jsonc",
  "--ip",
  "127.0.0.1",
  "--port",
  String(WORKER_PORT),
  "--show-interactive-dev-session=false",
  "--persist-to",
  STATE_DIR,
  "--var",
  `DEMO_S3_ACCESS_KEY_ID:${CREDENTIALS.accessKeyId}`,
  "--var",
  `DEMO_S3_SECRET_ACCESS_KEY:${CREDENTIALS.secretAccessKey}`,
  "--var",
  `ADMIN_TOKEN:${ADMIN_TOKEN}`,
]);
const stop = () => {
  worker.kill("SIGTERM");
  void s3.close();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
worker.on("exit", (code) => {
  void s3.close();
  process.exit(code ?? 0);
});
