// `npm start`: the whole Tiercel stack on this machine, no Cloudflare account needed.
//  1. the demo origin on loopback (demo/origin.mjs),
//  2. a site config for localhost and 127.0.0.1 written to the local SITES namespace,
//  3. the Worker in workerd (`wrangler dev`), with KV and Cache persisted under .wrangler/.
// Each start is a fresh "data center": the local Cache API (tier 1) starts empty, while KV (tier 2, global)
// keeps what earlier runs stored, so a restart shows tier 2 answering and refilling tier 1.
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { startDemoOrigin } from "../demo/origin.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ORIGIN_PORT = Number(process.env.DEMO_ORIGIN_PORT ?? 9000);
const WORKER_PORT = Number(process.env.PORT ?? 8787);
const DEMO_HOSTS = ["localhost", "127.0.0.1"];
/** A fixed id keeps the demo's cache across restarts; real sites get a random one. */
const DEMO_SITE_ID = "demo-site-3c9f1a7e";

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

await rm(new URL("../.wrangler/state/v3/cache", import.meta.url), { recursive: true, force: true });

const origin = await startDemoOrigin({ port: ORIGIN_PORT });
console.log(`demo origin listening on ${origin.url}`);

const site = { version: 1, id: DEMO_SITE_ID, origin: { kind: "http", url: origin.url } };
for (const host of DEMO_HOSTS) {
  await runToEnd(["kv", "key", "put", "--local", "--binding", "SITES", `host:${host}`, JSON.stringify(site)]);
}
console.log(`site ${DEMO_SITE_ID} configured for ${DEMO_HOSTS.join(", ")} -> ${origin.url}`);
console.log(`\nTry: curl -i http://localhost:${WORKER_PORT}/styles.css   (three times, and watch Cache-Status)\n`);

const worker = run(["dev", "--ip", "127.0.0.1", "--port", String(WORKER_PORT), "--show-interactive-dev-session=false"]);
const stop = () => {
  worker.kill("SIGTERM");
  origin.server.close();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
worker.on("exit", (code) => {
  origin.server.close();
  process.exit(code ?? 0);
});
