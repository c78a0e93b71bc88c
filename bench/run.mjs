// `node bench/run.mjs [--quick]`: Tiercel against the first write-up's Worker (bench/baseline), both in
// workerd under wrangler's dev server on this machine, in one run, against one bench origin with injected
// distance. See bench/README.md for what is measured and how. Everything is loopback; every loop and every
// request is bounded. Each phase is saved to the run's JSON as soon as it ends, so a failing phase loses only
// its own figures.
import { existsSync, writeFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { getJson, keepAliveAgent, median, percentile, timedRequest } from "./lib/http.mjs";
import { objectPath, startOrigin } from "./lib/origin.mjs";
import { renderSvg, renderTables } from "./lib/report.mjs";
import { snapshotCode } from "./lib/snapshot.mjs";
import { machineInfo, summarize } from "./lib/summary.mjs";
import { killAllNow, kvBulkPut, memoryOf, resetPeak, startWorker, stopAll } from "./lib/wrangler.mjs";
import { hotpath, hotpathParameters } from "./phases/hotpath.mjs";
import { largeMedia } from "./phases/large-media.mjs";
import { propagation } from "./phases/propagation.mjs";
import { worldPhase } from "./phases/world.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;
const TOKEN = `bench-${crypto.randomUUID()}`;
const SITE_HOST = "bench.tiercel.test";
const BASELINE_HOST = "bench.baseline.test";
const HARD_LIMIT_MS = 15 * 60_000;
/** Per-request limits: a request that takes longer is recorded as "did not complete within N s". */
const TIMEOUT_MS = { miss: 120_000, probe: 45_000, hit: 60_000, burst: 60_000, load: 10_000 };

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
    strict: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
    only: { type: "string" },
  },
});
if (flags.help) {
  console.log(`node bench/run.mjs [--quick] [--origin-latency-ms 300] [--origin-mbps 100] [--runs 5]
  [--concurrency 32] [--duration-s 10] [--config-requests 10000] [--config-window-s 65]
  [--config-cache-seconds 30] [--keep-state] [--verbose] [--only world] [--strict]      (see bench/README.md)`);
  process.exit(0);
}
if (flags.only !== undefined && flags.only !== "world") throw new Error(`--only takes "world", not ${flags.only}`);
const onlyWorld = flags.only === "world";

function num(flag, envName, fallback) {
  const raw = flags[flag] ?? process.env[envName];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${flag} must be a non-negative number, not ${raw}`);
  return value;
}

const quick = flags.quick;
const P = {
  mode: onlyWorld ? "world" : quick ? "quick" : "full",
  originLatencyMs: num("origin-latency-ms", "BENCH_ORIGIN_LATENCY_MS", 300),
  originMbps: num("origin-mbps", "BENCH_ORIGIN_MBPS", 100),
  runs: Math.max(1, Math.round(num("runs", "BENCH_RUNS", quick ? 1 : 5))),
  tierSizes: [10 * KiB, 1 * MiB, 30 * MiB],
  missSizes: quick ? [10 * KiB, 1 * MiB, 30 * MiB] : [10 * KiB, 1 * MiB, 4 * MiB, 16 * MiB, 30 * MiB],
  /** Timed edge hits per object and run: fewer for large objects, whose body alone takes ~2 s to read. */
  edgeSamplesPerObject: 3,
  edgeSamplesLargeObject: 1,
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
  timeoutsMs: TIMEOUT_MS,
  /** (7) The hot path against the minimal Cache-API Worker (bench/phases/hotpath.mjs). */
  hotpath: hotpathParameters(quick),
  /** Issue 16's goals count in the exit code only with --strict (they are reported either way). */
  strict: flags.strict,
};
// At least two micro-cache periods, plus a little.
P.configWindowS = num("config-window-s", "BENCH_CONFIG_WINDOW_S", Math.max(2 * P.configCacheSeconds + 5, 10));

const started = Date.now();
const stamp = new Date(started).toISOString().replace(/[:.]/g, "-");
const log = (line) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmtSize = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
const nonce = () => crypto.randomUUID().slice(0, 8);
const errorText = (error) => String(error?.message ?? error).slice(0, 1000);

// ---------------------------------------------------------------------------------------------- teardown

let origin;
/** The bench site's id (written by writeSite). */
let siteId;
let stateDir;
/** The run's copy of the Worker sources (see lib/snapshot.mjs): every Worker is started from here. */
let codeDir;

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
    log(`${signal}: stopping the Workers (what was measured so far is kept in the run's JSON)`);
    void teardown()
      .then(() => saveRun(false))
      .finally(() => process.exit(130));
  });
}
const watchdog = setTimeout(() => {
  log(`still running after ${HARD_LIMIT_MS / 60_000} minutes: giving up (what was measured is in the JSON)`);
  killAllNow();
  try {
    writeFileSync(join(RESULTS, `${stamp}.json`), `${JSON.stringify(results(false), null, 2)}\n`);
  } catch {}
  process.exit(2);
}, HARD_LIMIT_MS);
watchdog.unref();

// ---------------------------------------------------------------------------------------------- results

/** Everything measured so far; `summarize` turns it into figures and checks. */
const data = {
  code: null,
  phases: [],
  misses: [],
  globals: [],
  throughput: [],
  collapse: [],
  memory: [],
  config: null,
  propagation: null,
  hotpath: null,
};
let machine;

function results(complete) {
  if (onlyWorld) {
    const { code, phases, world } = data;
    const elapsedS = Number(((Date.now() - started) / 1000).toFixed(1));
    return {
      complete,
      when: new Date().toISOString(),
      elapsedS,
      parameters: P,
      machine,
      code,
      phases,
      world,
      checks: world?.checks ?? [],
    };
  }
  const summary = { ...summarize({ data, P, machine, started, complete }), propagation: data.propagation };
  if (data.world) Object.assign(summary, { world: data.world, checks: [...summary.checks, ...data.world.checks] });
  // Issue 15's goals (bench/phases/large-media.mjs): reported, and in the exit code with --strict.
  if (data.largeMedia) {
    const { checks, figures } = data.largeMedia;
    Object.assign(summary, {
      largeMedia: figures,
      checks: [...summary.checks, ...checks.map(({ figures: _f, ...c }) => c)],
    });
  }
  return summary;
}

/** The run's own JSON, rewritten after every phase, so a run that dies keeps what it had. */
async function saveRun(complete, summary = results(complete)) {
  await mkdir(RESULTS, { recursive: true });
  await writeFile(join(RESULTS, `${stamp}.json`), `${JSON.stringify(summary, null, 2)}\n`);
}

/** Runs one phase: a failure is recorded (and logged) instead of ending the run. */
async function phase(name, work) {
  const t0 = Date.now();
  log(name);
  try {
    await work();
    data.phases.push({ name, ok: true, seconds: (Date.now() - t0) / 1000 });
  } catch (error) {
    data.phases.push({ name, ok: false, seconds: (Date.now() - t0) / 1000, error: errorText(error) });
    log(`  phase failed: ${errorText(error).split("\n")[0]}`);
  }
  await saveRun(false);
}

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
/** The third peer of phase 7 only: `caches.default.match` / `fetch` / `put` and nothing else (bench/minimal). */
const MINIMAL = {
  name: "minimal",
  label: "Minimal",
  host: "bench.minimal.test",
  // The Cache API marks what `match` returns; the minimal Worker hands it back as it is.
  tierOf: (headers) => (headers["cf-cache-status"] === "HIT" ? "edge" : "origin"),
};

/**
 * wrangler's log level for the Workers: "warn" drops the access-log line wrangler's Node process prints for
 * every request (~20–40% of the edge-hit throughput here, for both Workers alike); --verbose keeps them.
 */
const LOG_LEVEL = ["--log-level", flags.verbose ? "log" : "warn"];

function startTiercel(label, persistTo, configCacheSeconds) {
  const extra = [...LOG_LEVEL, "--var", `ADMIN_TOKEN:${TOKEN}`];
  if (configCacheSeconds !== undefined) extra.push("--var", `CONFIG_CACHE_SECONDS:${configCacheSeconds}`);
  return startWorker({ label, cwd: codeDir, persistTo, extra, onLine: verboseLine(label) });
}

function startBaseline(label, persistTo) {
  const extra = [...LOG_LEVEL, "-c", "bench/baseline/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`];
  return startWorker({ label, cwd: codeDir, persistTo, extra, onLine: verboseLine(label) });
}

function startMinimal(label, persistTo) {
  const extra = [...LOG_LEVEL, "-c", "bench/minimal/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`];
  return startWorker({ label, cwd: codeDir, persistTo, extra, onLine: verboseLine(label) });
}

function verboseLine(label) {
  return (line) => {
    if (flags.verbose || /error|uncaught|exception|kv-put-failed|skipped/i.test(line)) {
      log(`  ${label}| ${line.slice(0, 300)}`);
    }
  };
}

/** The instance, or an error saying which data center is missing (it failed to start). */
function need(instance, what) {
  if (!instance) throw new Error(`${what} is not running (it failed to start; see the phases)`);
  return instance;
}

/** One timed GET through a Worker, with the tier that answered. */
async function get(worker, instance, path, agent, timeoutMs = TIMEOUT_MS.hit) {
  const result = await timedRequest(`${instance.url}${path}`, { host: worker.host, agent, timeoutMs });
  return { ...result, tier: worker.tierOf(result.headers) };
}

const edgeSampleCount = (size) => (size > 4 * MiB ? P.edgeSamplesLargeObject : P.edgeSamplesPerObject);

/**
 * After a miss: waits (bounded) until the data center answers the object from its edge tier, then takes
 * `samples` timed edge hits. Returns their median TTFB and total, how many tries it took, and any error.
 */
async function edgeSamples(worker, instance, path, agent, samples, size) {
  await sleep(size > 4 * MiB ? P.settleMs : P.settleSmallMs);
  for (let attempt = 1; attempt <= 10; attempt++) {
    let probe;
    try {
      probe = await get(worker, instance, path, agent, TIMEOUT_MS.probe);
    } catch (error) {
      log(`  ${worker.label}: probe of ${path} on ${instance.label} failed: ${errorText(error)}`);
      return { ttfbMs: Number.NaN, totalMs: Number.NaN, attempts: attempt, error: errorText(error) };
    }
    if (probe.status === 200 && probe.tier === "edge") return timedEdgeHits(worker, instance, path, agent, samples);
    await sleep(250 * attempt);
  }
  log(`  ${worker.label}: ${path} never became an edge hit on ${instance.label}`);
  return { ttfbMs: Number.NaN, totalMs: Number.NaN, attempts: 10, error: "never an edge hit (10 tries)" };
}

async function timedEdgeHits(worker, instance, path, agent, samples) {
  const ttfb = [];
  const total = [];
  for (let i = 0; i < samples; i++) {
    let hit;
    try {
      hit = await get(worker, instance, path, agent);
    } catch (error) {
      return { ttfbMs: Number.NaN, totalMs: Number.NaN, error: errorText(error) };
    }
    if (hit.tier !== "edge") return { ttfbMs: Number.NaN, totalMs: Number.NaN, error: `hit ${i + 1}: ${hit.tier}` };
    ttfb.push(hit.ttfbMs);
    total.push(hit.totalMs);
  }
  return { ttfbMs: median(ttfb), totalMs: median(total), attempts: 1 };
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

/** What a sample keeps of one answer. */
function answerFields(answer) {
  const { status, bytes, tier, ttfbMs, headersMs, totalMs } = answer;
  return { status, bytes, tier, ttfbMs, headersMs, totalMs };
}

/** (1, 2) One miss of a fresh object through data center A, then (tier sizes) edge hits there. */
async function missSample(worker, agent, run, size) {
  const path = objectPath(size, `${worker.name}-r${run}-${nonce()}`);
  const sample = { worker: worker.name, run, size, path };
  try {
    const first = await get(worker, worker.a, path, agent, TIMEOUT_MS.miss);
    Object.assign(sample, answerFields(first), { kvPut: first.headers["x-bench-kv-put"] });
    if (first.status !== 200 || first.bytes !== size) sample.error = `${first.status}, ${first.bytes} of ${size} bytes`;
  } catch (error) {
    sample.error = errorText(error);
  }
  if (!sample.error && P.tierSizes.includes(size)) {
    const edge = await edgeSamples(worker, worker.a, path, agent, edgeSampleCount(size), size);
    Object.assign(sample, { edgeTtfbMs: edge.ttfbMs, edgeTotalMs: edge.totalMs, edgeAttempts: edge.attempts });
    if (edge.error) sample.edgeError = edge.error;
  } else {
    // Tiercel is still writing a large object to KV and the Cache API for ~0.5–1 s after the client has
    // the last byte; locally those share the workerd process, so the next miss would wait on them. Every
    // miss starts on a quiet data center (edgeSamples above pauses the same way).
    await sleep(size > 4 * MiB ? P.settleMs : P.settleSmallMs);
  }
  if (sample.error) log(`  ${worker.label}: miss of ${path}: ${sample.error}`);
  sample.originRequests = origin.count(path);
  return sample;
}

async function missRuns(workers, agents) {
  if (workers.length === 0) throw new Error("no Worker is running in data center A");
  for (let run = 1; run <= P.runs; run++) {
    for (const size of P.missSizes) {
      // Alternate which Worker goes first, so drift over the run touches both alike.
      const order = (run + P.missSizes.indexOf(size)) % 2 ? workers : [...workers].reverse();
      for (const worker of order) data.misses.push(await missSample(worker, agents[worker.name], run, size));
    }
    log(`  run ${run}/${P.runs} done`);
  }
}

/** (1) The global tier: data center B has A's KV but an empty Cache API. */
async function globalSample(worker, agent, miss) {
  const sample = { worker: worker.name, run: miss.run, size: miss.size, path: miss.path };
  if (miss.error) return { ...sample, skipped: "the miss in A failed" };
  if (miss.kvPut === "failed") return { ...sample, skipped: "kv-put-failed" };
  const before = origin.count(miss.path);
  try {
    const first = await get(worker, worker.b, miss.path, agent, TIMEOUT_MS.hit);
    Object.assign(sample, answerFields(first));
    if (first.status !== 200 || first.bytes !== miss.size) sample.error = `${first.status}, ${first.bytes} bytes`;
  } catch (error) {
    sample.error = errorText(error);
  }
  sample.originRequests = origin.count(miss.path) - before;
  if (sample.error) {
    log(`  ${worker.label}: global-tier read of ${miss.path}: ${sample.error}`);
    return sample;
  }
  const edge = await edgeSamples(worker, worker.b, miss.path, agent, edgeSampleCount(miss.size), miss.size);
  return { ...sample, edgeTtfbMs: edge.ttfbMs, edgeTotalMs: edge.totalMs, edgeError: edge.error };
}

async function globalRuns(agents) {
  for (const miss of data.misses) {
    if (!P.tierSizes.includes(miss.size)) continue;
    const worker = WORKERS.find((w) => w.name === miss.worker);
    if (!worker.b) continue;
    data.globals.push(await globalSample(worker, agents[worker.name], miss));
  }
}

/** (3) Edge hits at a fixed concurrency for a bounded time. */
async function throughput(worker, path) {
  const instance = need(worker.a, `${worker.label} in data center A`);
  const agent = keepAliveAgent(P.concurrency);
  const latencies = [];
  const tiers = {};
  let errors = 0;
  // Short warm-up of every connection.
  await Promise.all(Array.from({ length: P.concurrency }, () => get(worker, instance, path, agent)));
  const t0 = performance.now();
  const end = t0 + P.durationS * 1000;
  const maxRequests = 500_000;
  let sent = 0;
  const loop = async () => {
    while (performance.now() < end && sent < maxRequests) {
      sent++;
      try {
        const response = await get(worker, instance, path, agent, TIMEOUT_MS.load);
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

/**
 * (4) N concurrent requests for one cold object: how many reach the origin, and how long the burst takes.
 * A request that has no answer within the burst limit counts as "did not complete".
 */
async function collapse(worker) {
  const instance = need(worker.a, `${worker.label} in data center A`);
  const path = objectPath(P.collapseSize, `collapse-${worker.name}-${nonce()}`);
  const descriptorsBefore = instance.descriptors();
  const agent = keepAliveAgent(P.collapseRequests);
  const t0 = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: P.collapseRequests }, async () => {
      const response = await get(worker, instance, path, agent, TIMEOUT_MS.burst);
      return { ...response, doneMs: performance.now() - t0 };
    }),
  );
  agent.destroy();
  const done = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failed = results.filter((r) => r.status === "rejected").map((r) => errorText(r.reason));
  const ttfbs = done.map((r) => r.ttfbMs);
  const tiers = {};
  for (const response of done) tiers[response.tier] = (tiers[response.tier] ?? 0) + 1;
  if (failed.length) tiers["did not complete"] = failed.length;
  // Let closed connections go, then look at the descriptors: a leak shows as a number far above "before".
  await sleep(2000);
  const serve = origin.serveTimes(path);
  return {
    worker: worker.name,
    requests: P.collapseRequests,
    size: P.collapseSize,
    ok: done.filter((r) => r.status === 200 && r.bytes === P.collapseSize).length,
    incomplete: failed.length,
    timeoutS: TIMEOUT_MS.burst / 1000,
    firstErrors: [...new Set(failed)].slice(0, 3),
    originRequests: origin.count(path),
    originServeMsMax: serve.length ? Math.max(...serve) : null,
    tiers,
    ttfbP50Ms: percentile(ttfbs, 50),
    ttfbMaxMs: percentile(ttfbs, 100),
    allDoneMs: failed.length ? null : Math.max(...done.map((r) => r.doneMs)),
    descriptorsBefore,
    descriptorsAfter: instance.descriptors(),
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
  try {
    const value = await work();
    await sleep(tailMs);
    const { hwmKiB } = memoryOf(pid);
    return { value, peakKiB: reset ? Math.max(hwmKiB, sampled) : sampled, hwmReset: reset };
  } finally {
    stop = true;
    await sampler;
  }
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
  const instance = need(worker.a, `${worker.label} in data center A`);
  const pid = instance.runtimePid();
  if (!pid) throw new Error(`${worker.label}: no workerd runtime found under the dev server`);
  const runs = [];
  for (let i = 0; i < P.memoryRuns; i++) {
    const path = objectPath(P.memorySize, `mem-${worker.name}-${nonce()}`);
    const idleKiB = await idleRss(pid);
    const miss = await peakDuring(pid, () => get(worker, instance, path, agent, TIMEOUT_MS.miss), P.settleMs);
    await sleep(500);
    const idleAfterKiB = await idleRss(pid);
    // Make sure the edge has it (edgeSamples waits for that), then measure one edge hit alone.
    const ready = await edgeSamples(worker, instance, path, agent, 1, P.memorySize);
    if (ready.error) {
      runs.push({ idleKiB, missPeakKiB: miss.peakKiB, missTier: miss.value.tier, edgeError: ready.error });
      continue;
    }
    const hit = await peakDuring(pid, () => get(worker, instance, path, agent), 1000);
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
  const med = (values) => median(values.filter(Number.isFinite));
  return {
    worker: worker.name,
    pid,
    size: P.memorySize,
    idleKiB: med(runs.map((run) => run.idleKiB)),
    missPeakKiB: med(runs.map((run) => run.missPeakKiB)),
    edgePeakKiB: med(runs.map((run) => run.edgePeakKiB)),
    missDeltaKiB: med(runs.map((run) => run.missPeakKiB - run.idleKiB)),
    edgeDeltaKiB: med(runs.map((run) => run.edgePeakKiB - run.idleAfterKiB)),
    runs,
  };
}

/** (5) KV reads for site config over `configRequests` edge hits spread evenly over the window. */
async function configReads(worker, instance, path) {
  const statsUrl = `${instance.url}/_tiercel/api/v1/stats`;
  // This isolate's site-config counters (`isolate.config` in the stats answer).
  const configOf = async () => (await getJson(statsUrl, { token: TOKEN })).isolate.config;
  const before = await configOf();
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
      const request = get(worker, instance, path, agent, TIMEOUT_MS.load)
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
  const after = await configOf();
  const delta = Object.fromEntries(Object.keys(after).map((key) => [key, after[key] - (before[key] ?? 0)]));
  return { requests: done, errors, elapsedS: Number(elapsedS.toFixed(1)), ...delta };
}

async function configPhase(tiercel, tiercelC) {
  const b = need(tiercel.b, "Tiercel in data center B");
  const c = need(tiercelC, "Tiercel in data center C");
  const agent = keepAliveAgent(1);
  const warm = await warmUp(tiercel, c, agent);
  agent.destroy();
  const [configOn, configOff] = await Promise.all([configReads(tiercel, b, warm), configReads(tiercel, c, warm)]);
  const per10k = (r) => (r.kvReads / r.requests) * 10_000;
  data.config = {
    on: { cacheSeconds: P.configCacheSeconds, ...configOn, kvReadsPer10k: per10k(configOn) },
    off: { cacheSeconds: 0, ...configOff, kvReadsPer10k: per10k(configOff) },
    windowS: P.configWindowS,
  };
  data.config.cutPercent = 100 * (1 - data.config.on.kvReadsPer10k / data.config.off.kvReadsPer10k);
}

// ---------------------------------------------------------------------------------------------- main

/** Starts Workers side by side; each that fails is recorded and left undefined (the others go on). */
async function startAll(starts) {
  const settled = await Promise.allSettled(starts.map(([, start]) => start()));
  const failures = [];
  settled.forEach((result, i) => {
    if (result.status === "rejected") failures.push(`${starts[i][0]}: ${errorText(result.reason)}`);
  });
  if (failures.length) log(`  failed to start: ${failures.join("; ")}`);
  return { instances: settled.map((r) => (r.status === "fulfilled" ? r.value : undefined)), failures };
}

/** The site, written the way scripts/start.mjs writes it: under site:<id> and host:<host>. */
async function writeSite(dir) {
  const site = {
    version: 1,
    id: `bench-${nonce()}${nonce()}`,
    hosts: [SITE_HOST],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
  };
  siteId = site.id;
  const value = JSON.stringify(site);
  const pairs = [{ key: `site:${site.id}`, value }, ...site.hosts.map((host) => ({ key: `host:${host}`, value }))];
  await kvBulkPut({ cwd: codeDir, persistTo: dir("tiercel-a"), binding: "SITES", pairs });
  // Data center C (micro-cache off) starts from the same KV: the site and nothing else.
  await cp(join(dir("tiercel-a"), "v3", "kv"), join(dir("tiercel-c"), "v3", "kv"), { recursive: true });
  log(`site ${site.id} for ${SITE_HOST} -> ${origin.url} written to local KV`);
}

async function dataCenterA(dir) {
  const [tiercel, baseline] = WORKERS;
  await phase("start data center A", async () => {
    const { instances, failures } = await startAll([
      ["tiercel-A", () => startTiercel("tiercel-A", dir("tiercel-a"))],
      ["baseline-A", () => startBaseline("baseline-A", dir("baseline-a"))],
      ["minimal-A", () => startMinimal("minimal-A", dir("minimal-a"))],
    ]);
    [tiercel.a, baseline.a, MINIMAL.a] = instances;
    if (failures.length) throw new Error(failures.join("; "));
    log(`  Tiercel on ${tiercel.a.url}, baseline on ${baseline.a.url}`);
  });

  const agents = { tiercel: keepAliveAgent(1), baseline: keepAliveAgent(1) };
  const warmPaths = {};
  await phase("warm-up in A", async () => {
    for (const worker of WORKERS) {
      if (worker.a) warmPaths[worker.name] = await warmUp(worker, worker.a, agents[worker.name]);
    }
  });
  const live = WORKERS.filter((worker) => warmPaths[worker.name]);

  await phase("(1, 2) misses through the origin, then edge hits, in data center A", () => missRuns(live, agents));
  for (const worker of live) {
    await phase(`(3) edge-hit throughput, ${P.concurrency} concurrent, ${P.durationS} s: ${worker.label}`, async () => {
      data.throughput.push(await throughput(worker, warmPaths[worker.name]));
    });
  }
  await phase("(7) the hot path against the minimal Cache-API Worker: edge hits and misses, interleaved", async () => {
    const peers = [...live, MINIMAL].map((worker) => ({
      ...worker,
      instance: need(worker.a, `${worker.label} in data center A`),
    }));
    const timed = (peer, path, agent, timeoutMs) => get(peer, peer.instance, path, agent, timeoutMs);
    data.hotpath = await hotpath({ peers, get: timed, concurrency: P.concurrency, params: P.hotpath, log });
  });
  for (const worker of live) {
    await phase(`(6) memory while ${fmtSize(P.memorySize)} streams through: ${worker.label}`, async () => {
      data.memory.push(await memory(worker, agents[worker.name]));
    });
  }
  if (tiercel.a) {
    await phase("(control plane) propagation, and the hot path with and without a pending change", async () => {
      const figures = await propagation({
        url: tiercel.a.url,
        token: TOKEN,
        originUrl: origin.url,
        requests: quick ? 100 : 300,
      });
      data.propagation = figures;
      log(`  ${JSON.stringify(figures)}`);
      if (!figures.propagation.allSeen) throw new Error("a settings change was not served within 100 requests");
    });
  }
  // The cold burst is the last thing A does: whatever it leaves behind cannot touch another figure.
  for (const worker of live) {
    const what = `${P.collapseRequests} concurrent requests for one cold ${fmtSize(P.collapseSize)} object`;
    await phase(`(4) ${what}: ${worker.label}`, async () => {
      data.collapse.push(await collapse(worker));
    });
  }
  for (const agent of Object.values(agents)) agent.destroy();
  await phase("(large media) issue 15, next to a minimal Cache-API Worker", async () => {
    const extra = [...LOG_LEVEL, "-c", "bench/minimal/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`];
    const minimal = await startWorker({ label: "minimal-A", cwd: codeDir, persistTo: dir("minimal-a"), extra });
    const at = (w, name) => ({ name, url: w.url, host: SITE_HOST, pid: w.runtimePid() });
    const args = {
      tiercel: at(tiercel.a, "tiercel"),
      minimal: at(minimal, "minimal"),
      token: TOKEN,
      siteId,
      origin,
      log,
    };
    data.largeMedia = await largeMedia(args).finally(() => minimal.stop());
    for (const check of data.largeMedia.checks) log(`  ${check.ok ? "ok  " : "FAIL"} ${check.name}`);
  });
}

async function dataCenterB(dir) {
  const [tiercel, baseline] = WORKERS;
  let tiercelC;
  await phase(
    "stop data center A; copy its global tier (KV, R2) into data center B (empty Cache API); start B and C",
    async () => {
      await Promise.all([tiercel.a?.stop(), baseline.a?.stop(), MINIMAL.a?.stop()]);
      // The global tier is KV and, for Tiercel's large objects, R2: both are shared by every data center.
      for (const worker of WORKERS) {
        for (const store of ["kv", "r2"]) {
          const from = join(dir(`${worker.name}-a`), "v3", store);
          if (existsSync(from)) await cp(from, join(dir(`${worker.name}-b`), "v3", store), { recursive: true });
        }
      }
      const { instances, failures } = await startAll([
        ["tiercel-B", () => startTiercel("tiercel-B", dir("tiercel-b"), P.configCacheSeconds)],
        ["baseline-B", () => startBaseline("baseline-B", dir("baseline-b"))],
        ["tiercel-C", () => startTiercel("tiercel-C", dir("tiercel-c"), 0)],
      ]);
      [tiercel.b, baseline.b, tiercelC] = instances;
      if (failures.length) throw new Error(failures.join("; "));
      log(`  B: Tiercel on ${tiercel.b.url}, baseline on ${baseline.b.url}; C (micro-cache off) on ${tiercelC.url}`);
    },
  );

  const agents = { tiercel: keepAliveAgent(1), baseline: keepAliveAgent(1) };
  await phase("(1) global tier: first reads in data center B, then its edge", async () => {
    for (const worker of WORKERS) if (worker.b) await warmUp(worker, worker.b, agents[worker.name]);
    await globalRuns(agents);
  });
  for (const agent of Object.values(agents)) agent.destroy();

  await phase(
    `(5) site-config KV reads: ${P.configRequests} requests over ${P.configWindowS} s, ` +
      `micro-cache ${P.configCacheSeconds} s (B) and off (C), side by side`,
    () => configPhase(tiercel, tiercelC),
  );
}

async function main() {
  machine = await machineInfo(ROOT);
  if (onlyWorld) log(`bench (world only, ${quick ? 1 : 3} runs): results/${stamp}.json`);
  else
    log(
      `bench (${P.mode}): origin ${P.originLatencyMs} ms + ${P.originMbps || "∞"} Mbit/s, ${P.runs} runs, ` +
        `sizes ${P.missSizes.map(fmtSize).join(", ")}; results/${stamp}.json`,
    );
  origin = await startOrigin({ latencyMs: P.originLatencyMs, mbps: P.originMbps });
  log(`bench origin on ${origin.url}`);
  stateDir = await mkdtemp(join(tmpdir(), "tiercel-bench-"));
  const dir = (name) => join(stateDir, name);
  codeDir = dir("code");
  data.code = await snapshotCode(ROOT, codeDir);
  log(`sources snapshot of ${data.code.commit ?? "?"} (${data.code.uncommitted.length} uncommitted changes)`);

  if (!onlyWorld) {
    await phase("write the bench site to Tiercel's local KV", () => writeSite(dir));
    await dataCenterA(dir);
    await dataCenterB(dir);
    await stopAll();
  }
  await phase("(8) the multi-location world: the per-location table and cold bursts over all locations", async () => {
    data.world = await worldPhase({ root: codeDir, runs: quick ? 1 : 3, originMbps: P.originMbps, log });
  });

  log("stopping the Workers");
  await teardown();
  return finish();
}

/** The final JSON, the chart, the table; latest.* only from a complete full run (what the README quotes). */
async function finish() {
  const complete = data.phases.every((p) => p.ok);
  const final = results(complete);
  await saveRun(complete, final);
  const written = [`bench/results/${stamp}.json`];
  const svg = onlyWorld ? null : renderSvg(final);
  if (svg) await writeFile(join(RESULTS, `${stamp}.svg`), svg);
  if (svg) written.push(`${stamp}.svg`);
  if (complete && P.mode === "full") {
    await writeFile(join(RESULTS, "latest.json"), `${JSON.stringify(final, null, 2)}\n`);
    await writeFile(join(RESULTS, "latest.svg"), svg);
    written.push("latest.json", "latest.svg");
  }
  // The world's table (bench/phases/world.mjs) goes just before the checks.
  const worldLines = (final.world?.lines ?? []).join("\n");
  const checkLines = final.checks.map((c) => `  ${c.ok ? "ok  " : "FAIL"}  ${c.name}  (${c.detail})`).join("\n");
  if (onlyWorld)
    console.log(
      `World only (${final.elapsedS} s, code ${final.code?.commit ?? "?"})${worldLines}\n\nChecks\n${checkLines}`,
    );
  else console.log(renderTables(final).replace("\nChecks\n", `${worldLines}\n\nChecks\n`));
  console.log(`\nresults: ${written.join(", ")}`);
  if (!complete) console.log("latest.json and latest.svg were not updated: the run is incomplete");
  else if (P.mode !== "full") console.log("latest.json and latest.svg were not updated: they hold the latest full run");
  // Issue 16's goals (phase 7) are reported either way; they decide the exit code only with --strict.
  return complete && final.checks.every((check) => check.ok || (check.goal && !P.strict)) ? 0 : 1;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  log(`failed: ${error.stack ?? error}`);
  await teardown();
  await saveRun(false).catch(() => {});
}
// Nothing of ours should be left running; exit even if a stray handle would keep the loop alive.
process.exit(exitCode);
