// `node --experimental-websocket bench/profile.mjs [--worker tiercel|minimal] [--size 1024] [--duration-s 10]
//   [--concurrency 8] [--interval-us 100] [--top 30] [--out profile.cpuprofile]`
//
// Where an edge hit's time goes: runs one Worker under wrangler's dev server with the DevTools inspector on
// (bench/lib/dev-worker.mjs --inspector-port), makes one object an edge hit, then samples the isolate with
// the Chrome DevTools Protocol's Profiler domain while edge hits run at a fixed concurrency, and prints the
// functions with the most self time (and writes the .cpuprofile, which Chrome's DevTools can open). Only the
// Worker's JavaScript is sampled: time in the runtime's C++ (the Cache API, streams' native side, sockets)
// shows as the JavaScript frame that called it, or as "(program)". Loopback only; every wait is bounded.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { keepAliveAgent, timedRequest } from "./lib/http.mjs";
import { objectPath, startOrigin } from "./lib/origin.mjs";
import { snapshotCode } from "./lib/snapshot.mjs";
import { freePort, killAllNow, kvBulkPut, startWorker, stopAll } from "./lib/wrangler.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values: flags } = parseArgs({
  options: {
    worker: { type: "string", default: "tiercel" },
    size: { type: "string", default: "1024" },
    "duration-s": { type: "string", default: "10" },
    concurrency: { type: "string", default: "8" },
    "interval-us": { type: "string", default: "100" },
    top: { type: "string", default: "30" },
    out: { type: "string" },
    // Profile misses instead: every request a fresh object, from an origin with no added latency.
    miss: { type: "boolean", default: false },
  },
});
if (typeof WebSocket === "undefined") {
  console.error(
    "bench/profile.mjs needs a WebSocket client: run it as node --experimental-websocket bench/profile.mjs",
  );
  process.exit(2);
}
const size = Number(flags.size);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line) => console.error(line);
const watchdog = setTimeout(() => {
  log("still running after 4 minutes: giving up");
  killAllNow();
  process.exit(2);
}, 4 * 60_000);
watchdog.unref();

/** A minimal CDP client over one WebSocket: `send(method, params)` resolves with the result. */
async function cdp(url) {
  // wrangler's inspector proxy wants an Origin it knows (Node's WebSocket takes headers as an extension).
  const socket = new WebSocket(url, { headers: { origin: "http://localhost" } });
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", resolve, { once: true });
    socket.addEventListener("error", () => reject(new Error(`could not connect to ${url}`)), { once: true });
  });
  let next = 1;
  const pending = new Map();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data));
    const waiter = message.id !== undefined && pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${message.error.message}`));
    else waiter.resolve(message.result);
  });
  return {
    send(method, params = {}) {
      const id = next++;
      socket.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        setTimeout(() => {
          if (pending.delete(id)) reject(new Error(`${method}: no answer in 60 s`));
        }, 60_000);
      });
    },
    close: () => socket.close(),
  };
}

/** Self time per function (name, file, line) from a .cpuprofile, largest first. */
export function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    const frame = node.callFrame;
    const file = frame.url ? frame.url.split("/").slice(-2).join("/") : "";
    const key = `${frame.functionName || "(anonymous)"}  ${file}${file ? `:${frame.lineNumber + 1}` : ""}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  const idle = self.get("(idle)  ") ?? 0;
  const rows = [...self.entries()]
    .filter(([key]) => key !== "(idle)  ")
    .sort((a, b) => b[1] - a[1])
    .map(([key, us]) => ({ fn: key, ms: us / 1000, share: us / Math.max(1, total - idle) }));
  return { totalMs: total / 1000, idleMs: idle / 1000, rows };
}

const origin = await startOrigin({ latencyMs: flags.miss ? 0 : 300, mbps: 0 });
const stateDir = await mkdtemp(join(tmpdir(), "tiercel-profile-"));
const codeDir = join(stateDir, "code");
let exitCode = 1;
try {
  await snapshotCode(ROOT, codeDir);
  const host = `${flags.worker}.bench.test`;
  const extra = ["--log-level", "warn"];
  if (flags.worker === "tiercel") {
    const site = { version: 1, id: `profile-${crypto.randomUUID().slice(0, 12)}`, hosts: [host] };
    site.origin = { kind: "http", url: origin.url, allowPrivate: true };
    await kvBulkPut({
      cwd: codeDir,
      persistTo: join(stateDir, "worker"),
      binding: "SITES",
      pairs: [{ key: `host:${host}`, value: JSON.stringify(site) }],
    });
  } else if (flags.worker === "minimal" || flags.worker === "baseline") {
    extra.push("-c", `bench/${flags.worker}/wrangler.jsonc`, "--var", `ORIGIN:${origin.url}`);
  } else {
    throw new Error(`--worker must be tiercel, minimal or baseline, not ${flags.worker}`);
  }
  const inspectorPort = await freePort();
  extra.push("--inspector-port", String(inspectorPort));
  const instance = await startWorker({ label: flags.worker, cwd: codeDir, persistTo: join(stateDir, "worker"), extra });
  const path = objectPath(size, `profile-${crypto.randomUUID().slice(0, 8)}`);
  const agent = keepAliveAgent(Number(flags.concurrency));
  let fresh = 0;
  const next = () =>
    flags.miss ? objectPath(size, `profile-miss-${fresh++}-${crypto.randomUUID().slice(0, 8)}`) : path;
  const get = () => timedRequest(`${instance.url}${next()}`, { host, agent, timeoutMs: 10_000 });
  for (let i = 0; i < 5; i++) await get();
  await sleep(500);
  // Warm the isolate's code before sampling.
  for (let i = 0; i < 200; i++) await get();

  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl && /core:user/.test(t.id ?? t.title ?? "")) ?? targets[0];
  if (!target?.webSocketDebuggerUrl) throw new Error(`no inspector target: ${JSON.stringify(targets).slice(0, 500)}`);
  const client = await cdp(target.webSocketDebuggerUrl);
  await client.send("Profiler.enable");
  await client.send("Profiler.setSamplingInterval", { interval: Number(flags["interval-us"]) });
  await client.send("Profiler.start");
  const end = performance.now() + Number(flags["duration-s"]) * 1000;
  let requests = 0;
  await Promise.all(
    Array.from({ length: Number(flags.concurrency) }, async () => {
      while (performance.now() < end) {
        await get();
        requests++;
      }
    }),
  );
  const { profile } = await client.send("Profiler.stop");
  client.close();
  agent.destroy();
  if (flags.out) await writeFile(flags.out, JSON.stringify(profile));
  const { totalMs, idleMs, rows } = selfTimes(profile);
  console.log(
    `${flags.worker}, ${size}-byte ${flags.miss ? "misses" : "edge hits"}, ${flags.concurrency} concurrent, ${requests} requests: ` +
      `${(totalMs - idleMs).toFixed(0)} ms sampled busy of ${totalMs.toFixed(0)} ms ` +
      `(${(((totalMs - idleMs) * 1000) / requests).toFixed(0)} µs of JavaScript-visible time per request)`,
  );
  console.log("self ms   share  function");
  for (const row of rows.slice(0, Number(flags.top))) {
    console.log(`${row.ms.toFixed(1).padStart(7)}  ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.fn}`);
  }
  exitCode = 0;
} catch (error) {
  log(`failed: ${error.stack ?? error}`);
} finally {
  await stopAll();
  await origin.close();
  await rm(stateDir, { recursive: true, force: true });
}
process.exit(exitCode);
