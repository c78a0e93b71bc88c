// (7) The hot path against the minimal Cache-API Worker (bench/minimal, issue 16): edge-hit throughput, p50
// and CPU per request at two object sizes, and the miss's first byte at a few sizes, for every peer, in
// interleaved rounds (the order of the peers rotates each round, so drift on a loaded machine touches them
// alike). CPU per request is the Worker's workerd process's utime+stime (/proc/<pid>/stat) over a cell,
// minus that process's idle rate over the same time, divided by the requests answered (bench/README.md).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { keepAliveAgent, median, percentile } from "../lib/http.mjs";
import { objectPath } from "../lib/origin.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const nonce = () => crypto.randomUUID().slice(0, 8);

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (100 on Linux unless told otherwise). */
let ticksPerSecond;
function clockTicks() {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5000 }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU seconds (user + system) a process has used so far; NaN if it is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start at field 3; utime and stime are fields 14, 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return Number.NaN;
  }
}

/** The default parameters: `quick` for a smoke run, else the full bench's. */
export function hotpathParameters(quick) {
  return {
    hitSizes: [1 * KiB, 100 * KiB],
    missSizes: [1 * KiB, 100 * KiB, 1 * MiB, 16 * MiB],
    rounds: quick ? 1 : 3,
    missRounds: quick ? 1 : 3,
    durationS: quick ? 2 : 4,
    idleS: quick ? 1 : 2,
  };
}

/**
 * Runs the phase. `peers`: [{ name, label, instance }] with `instance.runtimePid()`; `get(peer, path, agent,
 * timeoutMs)` resolves with a timed answer and its `tier`. Returns the raw cells; `hotpathFigures` sums them up.
 */
export async function hotpath({ peers, get, concurrency, params, log = () => {} }) {
  const out = { params: { ...params, concurrency }, idle: {}, hits: [], misses: [], errors: [] };
  const agents = Object.fromEntries(peers.map((peer) => [peer.name, keepAliveAgent(concurrency)]));
  try {
    const paths = {};
    for (const peer of peers) {
      for (const size of params.hitSizes) {
        paths[`${peer.name}:${size}`] = await warmEdge(peer, size, get, agents[peer.name]);
      }
    }
    await sleep(1000);
    const idleBefore = await idleRates(peers, params.idleS);
    for (let round = 1; round <= params.rounds; round++) {
      for (const [s, size] of params.hitSizes.entries()) {
        for (const peer of rotate(peers, round + s)) {
          const cell = await load(peer, paths[`${peer.name}:${size}`], get, agents[peer.name], {
            concurrency,
            durationS: params.durationS,
          });
          out.hits.push({ worker: peer.name, size, round, ...cell });
        }
      }
      log(`  hot path: edge-hit round ${round}/${params.rounds} done`);
    }
    // Idle again after the load; the lower of the two rates is taken (the first may still hold start-up work).
    await sleep(1000);
    const idleAfter = await idleRates(peers, params.idleS);
    for (const peer of peers) {
      const rates = [idleBefore[peer.name], idleAfter[peer.name]].filter(Number.isFinite);
      out.idle[peer.name] = {
        before: idleBefore[peer.name],
        after: idleAfter[peer.name],
        cpuPerS: rates.length ? Math.min(...rates) : Number.NaN,
      };
    }
    for (let round = 1; round <= params.missRounds; round++) {
      for (const [s, size] of params.missSizes.entries()) {
        for (const peer of rotate(peers, round + s)) {
          out.misses.push(await miss(peer, size, round, get, agents[peer.name]));
        }
      }
      log(`  hot path: miss round ${round}/${params.missRounds} done`);
    }
  } finally {
    for (const agent of Object.values(agents)) agent.destroy();
  }
  return out;
}

/** Each peer's Worker process's CPU seconds per second while nothing is asked of it, all in one window. */
async function idleRates(peers, seconds) {
  const before = peers.map((peer) => cpuSeconds(peer.instance.runtimePid()));
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const elapsedS = (performance.now() - t0) / 1000;
  return Object.fromEntries(
    peers.map((peer, i) => [peer.name, (cpuSeconds(peer.instance.runtimePid()) - before[i]) / elapsedS]),
  );
}

/** The peers in an order that moves by one every round. */
function rotate(peers, by) {
  const k = by % peers.length;
  return [...peers.slice(k), ...peers.slice(0, k)];
}

/** A fresh object of `size` bytes, asked for until it is an edge hit (bounded). Returns its path. */
async function warmEdge(peer, size, get, agent) {
  const path = objectPath(size, `hot-${peer.name}-${nonce()}`);
  for (let attempt = 1; attempt <= 12; attempt++) {
    const answer = await get(peer, path, agent, 60_000);
    if (answer.status !== 200 || answer.bytes !== size) {
      throw new Error(`${peer.label}: ${path} answered ${answer.status} with ${answer.bytes} bytes`);
    }
    if (answer.tier === "edge" && attempt > 1) return path;
    await sleep(200 * attempt);
  }
  throw new Error(`${peer.label}: ${path} never became an edge hit`);
}

/** Edge hits at `concurrency` for `durationS`, with the Worker's CPU over the same time. */
async function load(peer, path, get, agent, { concurrency, durationS }) {
  const pid = peer.instance.runtimePid();
  // Every connection warmed before the clock starts.
  await Promise.all(Array.from({ length: concurrency }, () => get(peer, path, agent, 10_000).catch(() => {})));
  const latencies = [];
  const ttfbs = [];
  const tiers = {};
  let errors = 0;
  let sent = 0;
  const cpuBefore = cpuSeconds(pid);
  const t0 = performance.now();
  const end = t0 + durationS * 1000;
  const loop = async () => {
    while (performance.now() < end && sent < 500_000) {
      sent++;
      try {
        const answer = await get(peer, path, agent, 10_000);
        latencies.push(answer.totalMs);
        ttfbs.push(answer.ttfbMs);
        tiers[answer.tier] = (tiers[answer.tier] ?? 0) + 1;
        if (answer.status !== 200) errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsedS = (performance.now() - t0) / 1000;
  const cpuS = cpuSeconds(pid) - cpuBefore;
  const requests = latencies.length;
  return {
    requests,
    errors,
    tiers,
    elapsedS: Number(elapsedS.toFixed(3)),
    rps: requests / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    ttfbP50Ms: percentile(ttfbs, 50),
    cpuS: Number(cpuS.toFixed(3)),
  };
}

/** One miss of a fresh object, read whole; then a pause so its background store does not touch the next. */
async function miss(peer, size, round, get, agent) {
  const path = objectPath(size, `hotmiss-${peer.name}-r${round}-${nonce()}`);
  const sample = { worker: peer.name, size, round, path };
  try {
    const answer = await get(peer, path, agent, 120_000);
    Object.assign(sample, { status: answer.status, tier: answer.tier, ttfbMs: answer.ttfbMs, bytes: answer.bytes });
    Object.assign(sample, { headersMs: answer.headersMs, totalMs: answer.totalMs });
    // Tiercel's own account of where the time before the first byte went (site: config, purge state and the
    // control feed's check, at most once per window; edge and kv: the tier reads; origin: to its headers).
    const steps = serverTiming(answer.headers?.["server-timing"]);
    if (steps) sample.steps = steps;
    if (answer.status !== 200 || answer.bytes !== size || answer.tier !== "origin") {
      sample.error = `${answer.status}, ${answer.bytes} of ${size} bytes, answered by ${answer.tier}`;
    }
  } catch (error) {
    sample.error = String(error?.message ?? error).slice(0, 300);
  }
  await sleep(size > 4 * MiB ? 2000 : 300);
  return sample;
}

/** `name;dur=ms, …` as { name: ms }, or undefined when there is none. */
export function serverTiming(field) {
  if (typeof field !== "string" || !field) return undefined;
  const steps = {};
  for (const [, name, dur] of field.matchAll(/([\w-]+);dur=([\d.]+)/g)) steps[name] = Number(dur);
  return Object.keys(steps).length ? steps : undefined;
}

const finite = (value) => typeof value === "number" && Number.isFinite(value);
const round2 = (value) => (finite(value) ? Number(value.toFixed(2)) : null);

/**
 * Medians per peer and size, and every figure of the other peers as a ratio against the minimal Worker's
 * (throughput: peer ÷ minimal, higher is better; p50 and CPU: peer ÷ minimal, lower is better; miss first
 * byte: peer − minimal in ms).
 */
export function hotpathFigures(raw) {
  if (!raw) return null;
  const workers = [...new Set([...raw.hits, ...raw.misses].map((row) => row.worker))];
  const medianOf = (rows, field) => {
    const values = rows.map((row) => row[field]).filter(finite);
    return values.length ? median(values) : Number.NaN;
  };
  for (const row of raw.hits) {
    const idle = raw.idle[row.worker]?.cpuPerS ?? Number.NaN;
    const busyS = Math.max(0, row.cpuS - idle * row.elapsedS);
    row.cpuUsPerRequest = row.requests > 0 ? (busyS * 1e6) / row.requests : Number.NaN;
  }
  const hits = [];
  for (const worker of workers) {
    for (const size of raw.params.hitSizes) {
      const rows = raw.hits.filter((row) => row.worker === worker && row.size === size);
      const clean = rows.filter((row) => row.errors === 0 && (row.tiers.edge ?? 0) === row.requests);
      hits.push({
        worker,
        size,
        cells: rows.length,
        clean: clean.length,
        rps: round2(medianOf(rows, "rps")),
        p50Ms: round2(medianOf(rows, "p50Ms")),
        p99Ms: round2(medianOf(rows, "p99Ms")),
        cpuUsPerRequest: round2(medianOf(rows, "cpuUsPerRequest")),
      });
    }
  }
  const misses = [];
  for (const worker of workers) {
    for (const size of raw.params.missSizes) {
      const rows = raw.misses.filter((row) => row.worker === worker && row.size === size);
      const ok = rows.filter((row) => !row.error);
      const row = {
        worker,
        size,
        samples: ok.length,
        failed: rows.length - ok.length,
        ttfbMs: round2(medianOf(ok, "ttfbMs")),
      };
      const names = [...new Set(ok.flatMap((sample) => Object.keys(sample.steps ?? {})))];
      if (names.length) {
        row.stepsMs = Object.fromEntries(
          names.map((name) => [
            name,
            round2(
              medianOf(
                ok.map((sample) => sample.steps ?? {}),
                name,
              ),
            ),
          ]),
        );
      }
      misses.push(row);
    }
  }
  const hit = (w, s) => hits.find((row) => row.worker === w && row.size === s);
  const missRow = (w, s) => misses.find((row) => row.worker === w && row.size === s);
  const ratio = (a, b) => (finite(a) && finite(b) && b > 0 ? round2(a / b) : null);
  for (const row of hits) {
    const m = hit("minimal", row.size);
    row.vsMinimal = {
      rps: ratio(row.rps, m?.rps),
      p50: ratio(row.p50Ms, m?.p50Ms),
      cpu: ratio(row.cpuUsPerRequest, m?.cpuUsPerRequest),
    };
  }
  for (const row of misses) {
    const m = missRow("minimal", row.size);
    row.vsMinimalMs = finite(row.ttfbMs) && finite(m?.ttfbMs) ? round2(row.ttfbMs - m.ttfbMs) : null;
  }
  return { params: raw.params, idle: raw.idle, hits, misses };
}

/**
 * Issue 16's goals as checks, each marked `goal` (the run's exit code counts them only with --strict): edge-hit
 * throughput ≥ 0.9 × the minimal Worker's and ≥ 1.0 × the baseline's at each hit size, edge-hit p50 ≤ 1.2 ×
 * the minimal's, miss first byte ≤ the minimal's + 2 ms at every size, CPU per edge hit ≤ 1.15 × the minimal's.
 */
export function hotpathChecks(figures) {
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok: Boolean(ok), detail, goal: true });
  const show = (value) => (finite(value) ? String(value) : "missing");
  const size = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
  const hitSizes = figures?.params.hitSizes ?? [1 * KiB, 100 * KiB];
  const missSizes = figures?.params.missSizes ?? [];
  const hit = (w, s) => figures?.hits.find((row) => row.worker === w && row.size === s);
  for (const s of hitSizes) {
    const [t, m, b] = [hit("tiercel", s), hit("minimal", s), hit("baseline", s)];
    const clean = [t, m, b].every((row) => row && row.cells > 0 && row.clean === row.cells);
    const vsBaseline = t && b && finite(t.rps) && finite(b.rps) ? round2(t.rps / b.rps) : null;
    check(
      `goal: ${size(s)} edge-hit throughput ≥ 0.9 × the minimal Worker's and ≥ 1.0 × the baseline's, all edge hits`,
      clean && t.vsMinimal.rps >= 0.9 && vsBaseline >= 1.0,
      `${show(t?.vsMinimal.rps)} × minimal, ${show(vsBaseline)} × baseline (${show(t?.rps)}, ${show(m?.rps)}, ${show(b?.rps)} req/s)`,
    );
    check(
      `goal: ${size(s)} edge-hit p50 ≤ 1.2 × the minimal Worker's`,
      t && finite(t.vsMinimal.p50) && t.vsMinimal.p50 <= 1.2,
      `${show(t?.vsMinimal.p50)} × (${show(t?.p50Ms)} vs ${show(m?.p50Ms)} ms)`,
    );
    check(
      `goal: ${size(s)} CPU per edge hit ≤ 1.15 × the minimal Worker's`,
      t && finite(t.vsMinimal.cpu) && t.vsMinimal.cpu <= 1.15,
      `${show(t?.vsMinimal.cpu)} × (${show(t?.cpuUsPerRequest)} vs ${show(m?.cpuUsPerRequest)} µs)`,
    );
  }
  const rows = missSizes.map((s) => figures.misses.find((row) => row.worker === "tiercel" && row.size === s));
  check(
    "goal: miss first byte ≤ the minimal Worker's + 2 ms at every size",
    rows.length > 0 && rows.every((row) => row && row.failed === 0 && finite(row.vsMinimalMs) && row.vsMinimalMs <= 2),
    missSizes
      .map((s, i) => `${size(s)} ${rows[i]?.vsMinimalMs >= 0 ? "+" : ""}${show(rows[i]?.vsMinimalMs)} ms`)
      .join(", ") || "missing",
  );
  return checks;
}

/** The section of the report: every peer's figures and their ratios against the minimal Worker. */
export function renderHotpath(figures, table) {
  if (!figures) return ["\n7. The hot path against the minimal Cache-API Worker: not measured (phase failed)"];
  const label = { tiercel: "Tiercel", baseline: "Baseline", minimal: "Minimal", base: "T (base)" };
  const size = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
  const n = (value, digits = 1) => (finite(value) ? value.toFixed(digits) : "n/a");
  const x = (value) => (finite(value) ? `${value.toFixed(2)}×` : "n/a");
  const p = figures.params;
  const hitRows = figures.hits.map((row) => [
    size(row.size),
    label[row.worker] ?? row.worker,
    n(row.rps, 0),
    x(row.vsMinimal.rps),
    n(row.p50Ms),
    x(row.vsMinimal.p50),
    n(row.p99Ms),
    n(row.cpuUsPerRequest, 0),
    x(row.vsMinimal.cpu),
    row.clean === row.cells ? "yes" : `${row.clean} of ${row.cells}`,
  ]);
  const workers = ["minimal", "tiercel", "baseline", "base"].filter((w) => figures.misses.some((m) => m.worker === w));
  const missRows = p.missSizes.map((s) => {
    const cells = [size(s)];
    for (const worker of workers) {
      const row = figures.misses.find((m) => m.worker === worker && m.size === s);
      cells.push(
        row
          ? `${n(row.ttfbMs)}${worker === "minimal" ? "" : ` (${row.vsMinimalMs >= 0 ? "+" : ""}${n(row.vsMinimalMs)})`}`
          : "n/a",
      );
    }
    return cells;
  });
  const stepRows = figures.misses
    .filter((row) => row.stepsMs && ["tiercel", "base"].includes(row.worker))
    .map((row) => [
      size(row.size),
      label[row.worker] ?? row.worker,
      ...["site", "edge", "kv", "shield", "origin"].map((name) => n(row.stepsMs[name])),
    ]);
  const steps = stepRows.length
    ? [
        "   Tiercel's misses by its Server-Timing (ms, medians; site includes the control feed's check, made at most",
        "   once per control window, so by most of these sparse misses):",
        table(["size", "worker", "site", "edge", "kv", "shield", "origin"], stepRows),
      ]
    : [];
  return [
    `\n7. The hot path against the minimal Cache-API Worker (medians of ${p.rounds} interleaved rounds; ` +
      `${p.concurrency} concurrent, ${p.durationS} s per cell)`,
    table(
      ["size", "worker", "req/s", "÷ min", "p50 ms", "÷ min", "p99 ms", "CPU µs/req", "÷ min", "all edge"],
      hitRows,
    ),
    "   CPU µs/req: the Worker's workerd process (utime+stime from /proc), its idle rate subtracted, ÷ requests",
    `\n   Miss first byte (ms; medians of ${p.missRounds} interleaved rounds; in brackets: − the minimal Worker's)`,
    table(["size", ...workers.map((w) => label[w])], missRows),
    ...steps,
  ];
}
