// `node bench/run.mjs [--quick]`: Tiercel against the first write-up's Worker (bench/baseline), both in
// workerd under `wrangler dev` on this machine, in one run, against one bench origin with injected distance.
// See bench/README.md for what is measured and how. Everything is loopback; every loop is bounded.
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { getJson, keepAliveAgent, median, percentile, timedRequest } from "./lib/http.mjs";
import { objectPath, startOrigin } from "./lib/origin.mjs";
import { renderSvg, renderTables } from "./lib/report.mjs";
import { killAllNow, kvBulkPut, memoryOf, resetPeak, startWorker, stopAll } from "./lib/wrangler.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;
const TOKEN = `bench-${crypto.randomUUID()}`;
const SITE_HOST = "bench.tiercel.test";
const BASELINE_HOST = "bench.baseline.test";
const HARD_LIMIT_MS = 15 * 60_000;

// ---------------------------------------------------------------------------------------------- options

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    "origin-latency-ms": { type: "string" },
    "origin-mbps": { type: "string" },
    runs: { type: "string" },
    concurrency: { type: "string" },
    "duration-s": { type: "string" },
    "config-requests": { type: "string" },
    "config-window-s": { type: "string" },
    "config-cache-seconds": { type: "string" },
    "keep-state": { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log(`node bench/run.mjs [--quick] [--origin-latency-ms 300] [--origin-mbps 100] [--runs 7]
  [--concurrency 32] [--duration-s 10] [--config-requests 10000] [--config-window-s 65]
  [--config-cache-seconds 30] [--keep-state] [--verbose]      (see bench/README.md)`);
  process.exit(0);
}

function num(flag, envName, fallback) {
  const raw = flags[flag] ?? process.env[envName];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${flag} must be a non-negative number, not ${raw}`);
  return value;
}

const quick = flags.quick;
const P = {
  mode: quick ? "quick" : "full",
  originLatencyMs: num("origin-latency-ms", "BENCH_ORIGIN_LATENCY_MS", 300),
  originMbps: num("origin-mbps", "BENCH_ORIGIN_MBPS", 100),
  runs: Math.max(1, Math.round(num("runs", "BENCH_RUNS", quick ? 1 : 5))),
  tierSizes: [10 * KiB, 1 * MiB, 30 * MiB],
  missSizes: quick ? [10 * KiB, 1 * MiB, 30 * MiB] : [10 * KiB, 1 * MiB, 4 * MiB, 16 * MiB, 30 * MiB],
  edgeSamplesPerObject: 3,
  /** Pause after a miss of a large (> 4 MiB, streamed) object before the edge is probed (see bench/README.md). */
  settleMs: 2000,
  settleSmallMs: 200,
  concurrency: Math.max(1, Math.round(num("concurrency", "BENCH_CONCURRENCY", 32))),
  durationS: num("duration-s", "BENCH_DURATION_S", quick ? 3 : 10),
  collapseRequests: 100,
  collapseSize: 1 * MiB,
  configRequests: Math.max(1, Math.round(num("config-requests", "BENCH_CONFIG_REQUESTS", quick ? 2000 : 10_000))),
  configCacheSeconds: num("config-cache-seconds", "BENCH_CONFIG_CACHE_SECONDS", quick ? 5 : 30),
  memoryRuns: quick ? 1 : 2,
  memorySize: 30 * MiB,
};
// At least two micro-cache periods, plus a little.
P.configWindowS = num("config-window-s", "BENCH_CONFIG_WINDOW_S", Math.max(2 * P.configCacheSeconds + 5, 10));

const started = Date.now();
const log = (line) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmtSize = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
const nonce = () => crypto.randomUUID().slice(0, 8);

// ---------------------------------------------------------------------------------------------- teardown

let origin;
let stateDir;

async function teardown() {
  await stopAll();
  await origin?.close();
  if (stateDir && !flags["keep-state"]) await rm(stateDir, { recursive: true, force: true });
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping the Workers`);
    void teardown().finally(() => process.exit(130));
  });
}
const watchdog = setTimeout(() => {
  log(`still running after ${HARD_LIMIT_MS / 60_000} minutes: giving up`);
  killAllNow();
  process.exit(2);
}, HARD_LIMIT_MS);
watchdog.unref();

// ---------------------------------------------------------------------------------------------- workers

/** Which tier answered, from Tiercel's Cache-Status (RFC 9211). */
function tiercelTier(headers) {
  const status = String(headers["cache-status"] ?? "");
  if (/^Tiercel-Edge; hit/.test(status)) return "edge";
  if (/Tiercel-KV; hit/.test(status)) return "kv";
  if (/collapsed/.test(status)) return "collapsed";
  if (/fwd=miss/.test(status)) return "origin";
  return `other(${status})`;
}

/** Which tier answered, from the baseline's own bench header. */
function baselineTier(headers) {
  const tier = String(headers["x-bench-tier"] ?? "");
  return tier === "cache" ? "edge" : tier;
}

const WORKERS = [
  { name: "tiercel", label: "Tiercel", host: SITE_HOST, tierOf: tiercelTier },
  { name: "baseline", label: "Baseline", host: BASELINE_HOST, tierOf: baselineTier },
];

function startTiercel(label, persistTo, configCacheSeconds) {
  const extra = ["--var", `ADMIN_TOKEN:${TOKEN}`];
  if (configCacheSeconds !== undefined) extra.push("--var", `CONFIG_CACHE_SECONDS:${configCacheSeconds}`);
  return startWorker({ label, cwd: ROOT, persistTo, extra, onLine: verboseLine(label) });
}

function startBaseline(label, persistTo) {
  const extra = ["-c", "bench/baseline/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`];
  return startWorker({ label, cwd: ROOT, persistTo, extra, onLine: verboseLine(label) });
}

function verboseLine(label) {
  return (line) => {
    if (flags.verbose || /error|uncaught|exception|kv-put-failed|skipped/i.test(line)) {
      log(`  ${label}| ${line.slice(0, 300)}`);
    }
  };
}

/** One timed GET through a Worker, with the tier that answered. */
async function get(worker, instance, path, agent, timeoutMs = 120_000) {
  const result = await timedRequest(`${instance.url}${path}`, { host: worker.host, agent, timeoutMs });
  return { ...result, tier: worker.tierOf(result.headers) };
}

/**
 * After a miss: waits (bounded) until the data center answers the object from its edge tier, then takes
 * `samples` timed edge hits. Returns their median TTFB and total, and how many tries it took.
 */
async function edgeSamples(worker, instance, path, agent, samples, size) {
  await sleep(size > 4 * MiB ? P.settleMs : P.settleSmallMs);
  for (let attempt = 1; attempt <= 10; attempt++) {
    let probe;
    try {
      probe = await get(worker, instance, path, agent, 45_000);
    } catch (error) {
      log(`  ${worker.label}: probe of ${path} on ${instance.label} failed: ${error.message}`);
      return { ttfbMs: Number.NaN, totalMs: Number.NaN, attempts: attempt, error: error.message };
    }
    if (probe.status === 200 && probe.tier === "edge") {
      const ttfb = [];
      const total = [];
      for (let i = 0; i < samples; i++) {
        const hit = await get(worker, instance, path, agent);
        if (hit.tier !== "edge") throw new Error(`${worker.label}: expected an edge hit for ${path}, got ${hit.tier}`);
        ttfb.push(hit.ttfbMs);
        total.push(hit.totalMs);
      }
      return { ttfbMs: median(ttfb), totalMs: median(total), attempts: attempt };
    }
    await sleep(250 * attempt);
  }
  log(`  ${worker.label}: ${path} never became an edge hit on ${instance.label}`);
  return { ttfbMs: Number.NaN, totalMs: Number.NaN, attempts: 10, error: "never an edge hit" };
}

// ---------------------------------------------------------------------------------------------- phases

async function warmUp(worker, instance, agent) {
  const path = objectPath(10 * KiB, `warm-${worker.name}`);
  for (let i = 0; i < 30; i++) {
    const response = await get(worker, instance, path, agent);
    if (response.status !== 200) {
      throw new Error(`${worker.label} on ${instance.label}: warm-up got ${response.status} (${response.tier})`);
    }
  }
  return path;
}

/** (1, 2) Misses of fresh objects through data center A, then edge hits there. */
async function missRuns(agents) {
  const misses = [];
  for (let run = 1; run <= P.runs; run++) {
    for (const size of P.missSizes) {
      // Alternate which Worker goes first, so drift over the run touches both alike.
      const order = (run + P.missSizes.indexOf(size)) % 2 ? WORKERS : [...WORKERS].reverse();
      for (const worker of order) {
        const path = objectPath(size, `${worker.name}-r${run}-${nonce()}`);
        const first = await get(worker, worker.a, path, agents[worker.name]);
        if (first.status !== 200 || first.bytes !== size) {
          throw new Error(`${worker.label}: miss of ${path}: ${first.status}, ${first.bytes} bytes`);
        }
        const sample = {
          worker: worker.name,
          run,
          size,
          path,
          tier: first.tier,
          ttfbMs: first.ttfbMs,
          headersMs: first.headersMs,
          totalMs: first.totalMs,
          kvPut: first.headers["x-bench-kv-put"],
        };
        if (P.tierSizes.includes(size)) {
          const edge = await edgeSamples(worker, worker.a, path, agents[worker.name], P.edgeSamplesPerObject, size);
          sample.edgeTtfbMs = edge.ttfbMs;
          sample.edgeTotalMs = edge.totalMs;
          sample.edgeAttempts = edge.attempts;
          if (edge.error) sample.edgeError = edge.error;
        }
        sample.originRequests = origin.count(path);
        misses.push(sample);
      }
    }
    log(`  run ${run}/${P.runs} done`);
  }
  return misses;
}

/** (2b) The global tier: data center B has A's KV but an empty Cache API. */
async function globalRuns(agents, misses) {
  const samples = [];
  for (const miss of misses) {
    if (!P.tierSizes.includes(miss.size)) continue;
    const worker = WORKERS.find((w) => w.name === miss.worker);
    if (miss.kvPut === "failed") {
      samples.push({ worker: worker.name, run: miss.run, size: miss.size, path: miss.path, skipped: "kv-put-failed" });
      continue;
    }
    const before = origin.count(miss.path);
    let first;
    try {
      first = await get(worker, worker.b, miss.path, agents[worker.name], 60_000);
    } catch (error) {
      samples.push({ worker: worker.name, run: miss.run, size: miss.size, path: miss.path, skipped: error.message });
      log(`  ${worker.label}: global-tier read of ${miss.path} failed: ${error.message}`);
      continue;
    }
    if (first.status !== 200 || first.bytes !== miss.size) {
      throw new Error(`${worker.label}: global-tier read of ${miss.path}: ${first.status}, ${first.bytes} bytes`);
    }
    const edge = await edgeSamples(worker, worker.b, miss.path, agents[worker.name], P.edgeSamplesPerObject, miss.size);
    samples.push({
      worker: worker.name,
      run: miss.run,
      size: miss.size,
      path: miss.path,
      tier: first.tier,
      ttfbMs: first.ttfbMs,
      headersMs: first.headersMs,
      totalMs: first.totalMs,
      originRequests: origin.count(miss.path) - before,
      edgeTtfbMs: edge.ttfbMs,
      edgeTotalMs: edge.totalMs,
      edgeError: edge.error,
    });
  }
  return samples;
}

/** (3) Edge hits at a fixed concurrency for a bounded time. */
async function throughput(worker, path) {
  const agent = keepAliveAgent(P.concurrency);
  const latencies = [];
  const tiers = {};
  let errors = 0;
  // Short warm-up of every connection.
  await Promise.all(Array.from({ length: P.concurrency }, () => get(worker, worker.a, path, agent)));
  const t0 = performance.now();
  const end = t0 + P.durationS * 1000;
  const maxRequests = 500_000;
  let sent = 0;
  const loop = async () => {
    while (performance.now() < end && sent < maxRequests) {
      sent++;
      try {
        const response = await get(worker, worker.a, path, agent, 10_000);
        latencies.push(response.totalMs);
        tiers[response.tier] = (tiers[response.tier] ?? 0) + 1;
        if (response.status !== 200) errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: P.concurrency }, loop));
  const elapsedS = (performance.now() - t0) / 1000;
  agent.destroy();
  return {
    worker: worker.name,
    concurrency: P.concurrency,
    durationS: Number(elapsedS.toFixed(2)),
    requests: latencies.length,
    errors,
    tiers,
    rps: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

/** (4) N concurrent requests for one cold object: how many reach the origin. */
async function collapse(worker) {
  const path = objectPath(P.collapseSize, `collapse-${worker.name}-${nonce()}`);
  const agent = keepAliveAgent(P.collapseRequests);
  const results = await Promise.allSettled(
    Array.from({ length: P.collapseRequests }, () => get(worker, worker.a, path, agent, 60_000)),
  );
  agent.destroy();
  const tiers = {};
  let ok = 0;
  for (const result of results) {
    if (result.status === "fulfilled") {
      tiers[result.value.tier] = (tiers[result.value.tier] ?? 0) + 1;
      if (result.value.status === 200 && result.value.bytes === P.collapseSize) ok++;
    } else tiers.error = (tiers.error ?? 0) + 1;
  }
  const ttfb = results.filter((r) => r.status === "fulfilled").map((r) => r.value.ttfbMs);
  return {
    worker: worker.name,
    requests: P.collapseRequests,
    size: P.collapseSize,
    ok,
    originRequests: origin.count(path),
    tiers,
    ttfbP50Ms: percentile(ttfb, 50),
    ttfbMaxMs: percentile(ttfb, 100),
  };
}

/** Samples a process's RSS every 10 ms while `work` runs and for `tailMs` after; the peak from VmHWM. */
async function peakDuring(pid, work, tailMs) {
  const reset = resetPeak(pid);
  let sampled = memoryOf(pid).rssKiB;
  let stop = false;
  const sampler = (async () => {
    for (let i = 0; i < 100_000 && !stop; i++) {
      sampled = Math.max(sampled, memoryOf(pid).rssKiB || 0);
      await sleep(10);
    }
  })();
  const value = await work();
  await sleep(tailMs);
  stop = true;
  await sampler;
  const { hwmKiB } = memoryOf(pid);
  return { value, peakKiB: reset ? Math.max(hwmKiB, sampled) : sampled, hwmReset: reset };
}

async function idleRss(pid) {
  const samples = [];
  for (let i = 0; i < 10; i++) {
    samples.push(memoryOf(pid).rssKiB);
    await sleep(100);
  }
  return median(samples);
}

/** (6) Peak memory of the Worker's workerd while a 30 MiB object streams through: a miss, then an edge hit. */
async function memory(worker, agent) {
  const pid = worker.a.runtimePid();
  if (!pid) throw new Error(`${worker.label}: no workerd runtime found under wrangler`);
  const runs = [];
  for (let i = 0; i < P.memoryRuns; i++) {
    const path = objectPath(P.memorySize, `mem-${worker.name}-${nonce()}`);
    const idleKiB = await idleRss(pid);
    const miss = await peakDuring(pid, () => get(worker, worker.a, path, agent), P.settleMs);
    await sleep(500);
    const idleAfterKiB = await idleRss(pid);
    // Make sure the edge has it (edgeSamples waits for that), then measure one edge hit alone.
    const ready = await edgeSamples(worker, worker.a, path, agent, 1, P.memorySize);
    if (ready.error) continue;
    const hit = await peakDuring(pid, () => get(worker, worker.a, path, agent), 1000);
    runs.push({
      idleKiB,
      missPeakKiB: miss.peakKiB,
      missTier: miss.value.tier,
      idleAfterKiB,
      edgePeakKiB: hit.peakKiB,
      edgeTier: hit.value.tier,
      hwmReset: miss.hwmReset,
    });
  }
  const med = (field) => median(runs.map((run) => run[field]));
  return {
    worker: worker.name,
    pid,
    size: P.memorySize,
    idleKiB: med("idleKiB"),
    missPeakKiB: med("missPeakKiB"),
    edgePeakKiB: med("edgePeakKiB"),
    missDeltaKiB: median(runs.map((run) => run.missPeakKiB - run.idleKiB)),
    edgeDeltaKiB: median(runs.map((run) => run.edgePeakKiB - run.idleAfterKiB)),
    runs,
  };
}

/** (5) KV reads for site config over `configRequests` edge hits spread evenly over the window. */
async function configReads(worker, instance, path) {
  const statsUrl = `${instance.url}/_tiercel/api/v1/stats`;
  const before = (await getJson(statsUrl, { token: TOKEN })).config;
  const agent = keepAliveAgent(16);
  const interval = (P.configWindowS * 1000) / P.configRequests;
  const t0 = performance.now();
  let launched = 0;
  let done = 0;
  let errors = 0;
  const inFlight = new Set();
  const deadline = t0 + P.configWindowS * 1000 + 60_000;
  while (launched < P.configRequests && performance.now() < deadline) {
    const due = Math.min(P.configRequests, Math.floor((performance.now() - t0) / interval) + 1);
    while (launched < due && inFlight.size < 16) {
      launched++;
      const request = get(worker, instance, path, agent, 10_000)
        .then((response) => {
          if (response.status !== 200) errors++;
        })
        .catch(() => {
          errors++;
        })
        .finally(() => {
          done++;
          inFlight.delete(request);
        });
      inFlight.add(request);
    }
    await sleep(Math.max(1, Math.min(interval, 20)));
  }
  await Promise.all(inFlight);
  const elapsedS = (performance.now() - t0) / 1000;
  agent.destroy();
  const after = (await getJson(statsUrl, { token: TOKEN })).config;
  const delta = Object.fromEntries(Object.keys(after).map((key) => [key, after[key] - (before[key] ?? 0)]));
  return { requests: done, errors, elapsedS: Number(elapsedS.toFixed(1)), ...delta };
}

// ---------------------------------------------------------------------------------------------- main

/** Starts Workers side by side; if one fails, the error is thrown once all have settled (teardown stops them). */
async function startAll(starts) {
  const results = await Promise.allSettled(starts);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((result) => result.value);
}

async function main() {
  log(
    `bench (${P.mode}): origin ${P.originLatencyMs} ms + ${P.originMbps || "∞"} Mbit/s, ${P.runs} runs, ` +
      `sizes ${P.missSizes.map(fmtSize).join(", ")}`,
  );
  origin = await startOrigin({ latencyMs: P.originLatencyMs, mbps: P.originMbps });
  log(`bench origin on ${origin.url}`);
  stateDir = await mkdtemp(join(tmpdir(), "tiercel-bench-"));
  const dir = (name) => join(stateDir, name);

  // The site, written the way scripts/start.mjs writes it: under site:<id> and host:<host>.
  const site = {
    version: 1,
    id: `bench-${nonce()}${nonce()}`,
    hosts: [SITE_HOST],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
  };
  const value = JSON.stringify(site);
  const pairs = [{ key: `site:${site.id}`, value }, ...site.hosts.map((host) => ({ key: `host:${host}`, value }))];
  await kvBulkPut({ cwd: ROOT, persistTo: dir("tiercel-a"), binding: "SITES", pairs });
  // Data center C (micro-cache off) starts from the same KV: the site and nothing else.
  await cp(join(dir("tiercel-a"), "v3", "kv"), join(dir("tiercel-c"), "v3", "kv"), { recursive: true });
  log(`site ${site.id} for ${SITE_HOST} -> ${origin.url} written to local KV`);

  const [tiercel, baseline] = WORKERS;
  [tiercel.a, baseline.a] = await startAll([
    startTiercel("tiercel-A", dir("tiercel-a")),
    startBaseline("baseline-A", dir("baseline-a")),
  ]);
  log(`data center A: Tiercel on ${tiercel.a.url}, baseline on ${baseline.a.url}`);

  const agents = { tiercel: keepAliveAgent(1), baseline: keepAliveAgent(1) };
  const warmPaths = {};
  for (const worker of WORKERS) warmPaths[worker.name] = await warmUp(worker, worker.a, agents[worker.name]);

  log("(1, 2) misses through the origin, then edge hits, in data center A");
  const misses = await missRuns(agents);

  log(`(3) edge-hit throughput, ${P.concurrency} concurrent, ${P.durationS} s each`);
  const throughputs = [];
  for (const worker of WORKERS) throughputs.push(await throughput(worker, warmPaths[worker.name]));

  log(`(4) ${P.collapseRequests} concurrent requests for one cold ${fmtSize(P.collapseSize)} object`);
  const collapses = [];
  for (const worker of WORKERS) collapses.push(await collapse(worker));

  log(`(6) memory while ${fmtSize(P.memorySize)} streams through`);
  const memories = [];
  for (const worker of WORKERS) memories.push(await memory(worker, agents[worker.name]));

  for (const agent of Object.values(agents)) agent.destroy();
  log("stopping data center A; copying its KV into data center B (empty Cache API)");
  await Promise.all([tiercel.a.stop(), baseline.a.stop()]);
  for (const worker of WORKERS) {
    const from = join(dir(`${worker.name}-a`), "v3", "kv");
    await cp(from, join(dir(`${worker.name}-b`), "v3", "kv"), { recursive: true });
  }
  let tiercelC;
  [tiercel.b, baseline.b, tiercelC] = await startAll([
    startTiercel("tiercel-B", dir("tiercel-b"), P.configCacheSeconds),
    startBaseline("baseline-B", dir("baseline-b")),
    startTiercel("tiercel-C", dir("tiercel-c"), 0),
  ]);
  log(`data center B: Tiercel on ${tiercel.b.url}, baseline on ${baseline.b.url}; C (micro-cache off) ${tiercelC.url}`);

  const agentsB = { tiercel: keepAliveAgent(1), baseline: keepAliveAgent(1) };
  for (const worker of WORKERS) await warmUp(worker, worker.b, agentsB[worker.name]);
  log("(1) global tier: first reads in data center B, then its edge");
  const globals = await globalRuns(agentsB, misses);
  for (const agent of Object.values(agentsB)) agent.destroy();

  log(
    `(5) site-config KV reads: ${P.configRequests} requests over ${P.configWindowS} s, ` +
      `micro-cache ${P.configCacheSeconds} s (B) and off (C), side by side`,
  );
  await warmUp(tiercel, tiercelC, keepAliveAgent(1));
  const warm = warmPaths.tiercel;
  const [configOn, configOff] = await Promise.all([
    configReads(tiercel, tiercel.b, warm),
    configReads(tiercel, tiercelC, warm),
  ]);
  const per10k = (r) => (r.kvReads / r.requests) * 10_000;
  const config = {
    on: { cacheSeconds: P.configCacheSeconds, ...configOn, kvReadsPer10k: per10k(configOn) },
    off: { cacheSeconds: 0, ...configOff, kvReadsPer10k: per10k(configOff) },
    windowS: P.configWindowS,
  };
  config.cutPercent = 100 * (1 - config.on.kvReadsPer10k / config.off.kvReadsPer10k);

  log("stopping the Workers");
  await teardown();

  const results = summarize({ misses, globals, throughputs, collapses, memories, config });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  await mkdir(RESULTS, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  await writeFile(join(RESULTS, `${stamp}.json`), json);
  await writeFile(join(RESULTS, "latest.json"), json);
  await writeFile(join(RESULTS, "latest.svg"), renderSvg(results));
  console.log(renderTables(results));
  console.log(`\nresults: bench/results/${stamp}.json (and latest.json, latest.svg)`);
  return results.checks.every((check) => check.ok) ? 0 : 1;
}

/** Medians per (worker, size, tier), the checks, and the raw samples. */
function summarize({ misses, globals, throughputs, collapses, memories, config }) {
  const med = (rows, field) => {
    const values = rows.map((row) => row[field]).filter((v) => typeof v === "number" && Number.isFinite(v));
    return values.length ? Number(median(values).toFixed(2)) : null;
  };
  const tiers = [];
  const missPath = [];
  for (const worker of WORKERS) {
    for (const size of P.tierSizes) {
      const m = misses.filter((row) => row.worker === worker.name && row.size === size);
      const g = globals.filter((row) => row.worker === worker.name && row.size === size && !row.skipped);
      tiers.push({
        worker: worker.name,
        size,
        originTtfbMs: med(m, "ttfbMs"),
        globalTtfbMs: med(g, "ttfbMs"),
        edgeTtfbMs: med(m, "edgeTtfbMs"),
        edgeTtfbMsB: med(g, "edgeTtfbMs"),
        globalNote: g.length === 0 ? "KV refused the value (> 25 MiB): never stored in the global tier" : undefined,
        samples: { origin: m.length, global: g.length },
      });
    }
    for (const size of P.missSizes) {
      const m = misses.filter((row) => row.worker === worker.name && row.size === size);
      missPath.push({
        worker: worker.name,
        size,
        ttfbMs: med(m, "ttfbMs"),
        headersMs: med(m, "headersMs"),
        totalMs: med(m, "totalMs"),
      });
    }
  }

  const tier = (w, size) => tiers.find((row) => row.worker === w && row.size === size);
  const miss = (w, size) => missPath.find((row) => row.worker === w && row.size === size);
  const smallest = P.missSizes[0];
  const largest = P.missSizes.at(-1);
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok, detail });
  for (const w of WORKERS) {
    for (const size of P.tierSizes) {
      const row = tier(w.name, size);
      const order = [row.edgeTtfbMs, row.globalTtfbMs, row.originTtfbMs].filter((v) => v !== null);
      check(
        `${w.label} ${fmtSize(size)}: edge < global tier < origin`,
        order.every((v, i) => i === 0 || order[i - 1] < v),
        order.join(" < "),
      );
    }
  }
  const tSmall = miss("tiercel", smallest).ttfbMs;
  const tLarge = miss("tiercel", largest).ttfbMs;
  check(
    `Tiercel miss TTFB about flat with size (${fmtSize(largest)} within 1.5× of ${fmtSize(smallest)})`,
    tLarge <= 1.5 * tSmall,
    `${tSmall} → ${tLarge} ms`,
  );
  const bSmall = miss("baseline", smallest).ttfbMs;
  const bLarge = miss("baseline", largest).ttfbMs;
  check("Baseline miss TTFB grows with size", bLarge > 2 * bSmall, `${bSmall} → ${bLarge} ms`);
  const tc = collapses.find((row) => row.worker === "tiercel");
  check(
    `Tiercel: ${P.collapseRequests} concurrent cold requests make 1 origin request`,
    tc.originRequests === 1,
    `${tc.originRequests}`,
  );
  check(`micro-cache cuts site-config KV reads by ≥ 99%`, config.cutPercent >= 99, `${config.cutPercent.toFixed(2)}%`);
  const extraOrigin = misses
    .filter((row) => row.originRequests !== 1)
    .map((row) => `${row.path}: ${row.originRequests}`);
  check("every miss reached the origin exactly once", extraOrigin.length === 0, extraOrigin.join("; ") || "yes");
  const globalOrigin = globals.filter((row) => !row.skipped && (row.originRequests !== 0 || row.tier !== "kv"));
  check(
    "every global-tier read came from KV, not the origin",
    globalOrigin.length === 0,
    globalOrigin.map((row) => `${row.path}: ${row.tier}`).join("; ") || "yes",
  );

  return {
    when: new Date().toISOString(),
    elapsedS: Number(((Date.now() - started) / 1000).toFixed(1)),
    parameters: P,
    machine: { node: process.version, cpus: (globalThis.navigator?.hardwareConcurrency ?? null) || undefined },
    tiers,
    missPath,
    throughput: throughputs,
    collapse: collapses,
    config,
    memory: memories,
    checks,
    samples: { misses, globals },
  };
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  log(`failed: ${error.stack ?? error}`);
  await teardown();
}
// Nothing of ours should be left running; exit even if a stray handle would keep the loop alive.
process.exit(exitCode);
