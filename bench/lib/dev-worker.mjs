// `node bench/lib/dev-worker.mjs --port P --persist-to DIR [-c wrangler.jsonc] [--var NAME:VALUE]...`
//
// What `wrangler dev` does (wrangler's own dev server: the same esbuild bundle, the same Miniflare, the same
// proxy workerd in front of the Worker), started through wrangler's `unstable_startWorker` API so that the
// DevTools inspector can be left off — the CLI has no switch for that.
//
// Why: with the inspector on, wrangler's InspectorProxyWorker (in the proxy workerd) enables the runtime's
// `Network` domain and forwards every inspector event to wrangler's Node process as one HTTP request each.
// workerd emits a `Network.dataReceived` event for every 4 KiB a Worker reads from a subrequest body, so a
// Worker that fetches 100 MiB from its origin makes ~25,600 such requests; they pile up as open sockets in the
// proxy (~1,000 a second here) until it hits the descriptor limit ("Too many open files") and every later
// request fails. That cost belongs to the dev tooling, not to either Worker, and it grows with the bytes a
// Worker pulls through fetch(), so it would also distort every miss-path figure. The bench measures without it.
//
// `watch: false` below is not enough to stop esbuild's watch of the sources, hence the bench's snapshot.
// The process prints `Ready on <url>` once the Worker answers, and disposes of the Worker on SIGTERM/SIGINT.
import { join } from "node:path";
import { parseArgs } from "node:util";

// Loopback only, whoever starts this: no Request.cf fetch from workers.cloudflare.com, no metrics.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";
// No reload when wrangler.jsonc changes (the bench runs a snapshot of the sources: see snapshot.mjs).
process.env.WRANGLER_CI_DISABLE_CONFIG_WATCHING = "true";
const { unstable_startWorker } = await import("wrangler");

const { values: args } = parseArgs({
  options: {
    config: { type: "string", short: "c", default: "wrangler.jsonc" },
    ip: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    "persist-to": { type: "string" },
    var: { type: "string", multiple: true, default: [] },
    "log-level": { type: "string", default: "log" },
    // Only for profiling (bench/profile.mjs): the DevTools inspector on this port. Never for measuring.
    "inspector-port": { type: "string" },
  },
});
if (!args.port || !args["persist-to"]) {
  console.error("dev-worker: --port and --persist-to are required");
  process.exit(2);
}

/** `--var NAME:VALUE` as a plain-text binding, as `wrangler dev --var` makes it. */
function plainTextVars(pairs) {
  const bindings = {};
  for (const pair of pairs) {
    const colon = pair.indexOf(":");
    if (colon < 1) throw new Error(`--var must be NAME:VALUE, not ${pair}`);
    bindings[pair.slice(0, colon)] = { type: "plain_text", value: pair.slice(colon + 1) };
  }
  return bindings;
}

const worker = await unstable_startWorker({
  config: args.config,
  bindings: plainTextVars(args.var),
  sendMetrics: false,
  dev: {
    remote: false,
    inspector: args["inspector-port"] ? { port: Number(args["inspector-port"]) } : false,
    watch: false,
    liveReload: false,
    persist: args["persist-to"],
    // A dev registry of its own, as `wrangler dev` always has one: with none, a service binding whose Worker
    // is not running (Tiercel's OPTIMIZER: the bench does not run the optimizer) is a workerd config error
    // and the Worker never answers; with one, the binding's calls fail and the originals are served. Its
    // own directory, so the bench never reaches a Worker that something else on the machine runs.
    registry: join(args["persist-to"], "dev-registry"),
    logLevel: args["log-level"],
    server: { hostname: args.ip, port: Number(args.port) },
  },
});
await worker.ready;
const url = await worker.url;
console.log(`Ready on ${url.origin}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  // Bounded: the parent follows SIGTERM with SIGKILL after 10 s anyway.
  const timer = setTimeout(() => process.exit(1), 8_000);
  try {
    await worker.dispose();
  } finally {
    clearTimeout(timer);
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
