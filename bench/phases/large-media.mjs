// Issue 15's goals, measured next to a minimal Cache-API Worker in the same runtime (wrangler dev, workerd).
// `largeMedia` is the phase bench/run.mjs calls; `node bench/phases/large-media.mjs` runs it alone (its own
// origin, Workers and state). Figures on this shared, loaded machine are indicative.
//
// The sizes (a 30 MiB miss; 100, 500 and 200 MiB objects) are the defaults. To time-box a run, make
// them smaller and pick goals: `TIERCEL_LM_SIZES=miss:30,memory:64,tail:64,video:64` (MiB) and
// `TIERCEL_LM_ONLY=miss,memory,tail,video` (a comma list), read by both ways of running it.

import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getJson, keepAliveAgent, median } from "../lib/http.mjs";
import { matchesPattern, objectPath, startOrigin } from "../lib/origin.mjs";
import { snapshotCode } from "../lib/snapshot.mjs";
import { kvBulkPut, memoryOf, resetPeak, startWorker, stopAll } from "../lib/wrangler.mjs";
import { cpuSeconds } from "./hotpath.mjs";

const MiB = 1024 * 1024;

/** Sizes and goals from the environment (see the top of the file). */
function fromEnv() {
  const sizes = {};
  for (const pair of (process.env.TIERCEL_LM_SIZES ?? "").split(",").filter(Boolean)) {
    const [name, mib] = pair.split(":");
    if (!["miss", "memory", "tail", "video"].includes(name) || !(Number(mib) > 0)) {
      throw new Error(`TIERCEL_LM_SIZES: "${pair}" is not <miss|memory|tail|video>:<MiB>`);
    }
    sizes[name] = Math.round(Number(mib) * MiB);
  }
  const only = (process.env.TIERCEL_LM_ONLY ?? "").split(",").filter(Boolean);
  return { sizes, only: only.length > 0 ? only : undefined };
}

/**
 * A GET whose body is checked against the origin's pattern as it arrives (`start`: the offset of its first
 * byte in the object), so "bytes verified" means the bytes, not only their number.
 */
function checkedGet(url, { host, agent, headers = {}, start = 0, timeoutMs = 120_000 }) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttfbMs = 0;
    let bytes = 0;
    let intact = true;
    const req = request(url, { agent, headers: { host, ...headers } }, (res) => {
      head = `${res.statusCode}, ${res.headers["cache-status"] ?? ""}`;
      res.on("data", (chunk) => {
        if (bytes === 0) ttfbMs = performance.now() - t0;
        if (intact && !matchesPattern(chunk, start + bytes)) intact = false;
        bytes += chunk.length;
      });
      res.on("end", () => {
        clearTimeout(timer);
        const totalMs = performance.now() - t0;
        resolve({ status: res.statusCode, headers: res.headers, bytes, intact, ttfbMs, totalMs });
      });
      res.on("error", fail);
    });
    let head = "no response head";
    const timer = setTimeout(
      () => fail(new Error(`timed out after ${timeoutMs} ms (${head}, ${bytes} body bytes): ${url}`)),
      timeoutMs,
    );
    function fail(error) {
      clearTimeout(timer);
      req.destroy();
      reject(error);
    }
    req.on("error", fail);
    req.end();
  });
}

/**
 * A process's CPU seconds once it has gone idle (its background work, the stores, done): sampled every
 * 250 ms until a sample adds under 10 ms, for at most 10 s. NaN where /proc is not there.
 */
async function cpuWhenIdle(pid) {
  let last = cpuSeconds(pid);
  for (let i = 0; i < 40 && Number.isFinite(last); i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = cpuSeconds(pid);
    if (now - last < 0.01) return now;
    last = now;
  }
  return last;
}

/** A check in the form bench/run.mjs reports (`goal`: counts in the exit code with --strict only). */
const goal = (name, ok, figures) => ({
  name: `goal: ${name}`,
  ok: Boolean(ok),
  detail: JSON.stringify(figures),
  goal: true,
  figures,
});

/**
 * `tiercel` and `minimal`: `{ name, url, host, pid }` of running Workers (pid: the Worker's own workerd);
 * `token`: Tiercel's admin token; `siteId`; `origin`: the bench origin (`counts`). `sizes` and `only` default
 * to the environment's (see the top of the file), else the sizes and every goal.
 */
export async function largeMedia({ tiercel, minimal, token, siteId, origin, log, sizes, only }) {
  const env = fromEnv();
  const size = { miss: 30 * MiB, memory: 100 * MiB, tail: 500 * MiB, video: 200 * MiB, ...env.sizes, ...sizes };
  const wanted = new Set(only ?? env.only ?? ["miss", "memory", "tail", "video"]);
  const agent = keepAliveAgent(4);
  const get = (worker, path, headers = {}, start = 0) =>
    checkedGet(`${worker.url}${path}`, { host: worker.host, agent, headers, start });
  const stamp = Date.now().toString(36);
  const figures = {};
  const checks = [];
  const mib = (bytes) => `${(bytes / MiB).toFixed(0)} MiB`;

  if (wanted.has("miss")) {
    // A miss: total time against the minimal Worker's (both read the body to its end, checked), and the CPU
    // time of the Worker's workerd for it, its stores included (until it has been idle for a while).
    const miss = {};
    const cpuMs = {};
    for (const worker of [minimal, tiercel]) {
      const before = cpuSeconds(worker.pid);
      const result = await get(worker, objectPath(size.miss, `lm-miss-${worker.name}-${stamp}`));
      if (result.bytes !== size.miss || !result.intact) {
        throw new Error(`${worker.name}: ${result.bytes} of ${size.miss} bytes, intact: ${result.intact}`);
      }
      miss[worker.name] = result.totalMs;
      cpuMs[worker.name] = Math.round((await cpuWhenIdle(worker.pid)) * 1000 - before * 1000);
    }
    figures.miss = {
      objectMiB: size.miss / MiB,
      tiercelMs: miss.tiercel,
      minimalMs: miss.minimal,
      tiercelCpuMs: cpuMs.tiercel,
      minimalCpuMs: cpuMs.minimal,
    };
    figures.miss.ratio = miss.tiercel / miss.minimal;
    checks.push(
      goal(`${mib(size.miss)} miss total time ≤ 1.2 × the minimal Worker's`, figures.miss.ratio <= 1.2, figures.miss),
    );
    log(
      `  ${mib(size.miss)} miss: Tiercel ${miss.tiercel.toFixed(0)} ms (workerd CPU ${cpuMs.tiercel} ms), minimal ${miss.minimal.toFixed(0)} ms (CPU ${cpuMs.minimal} ms)`,
    );
  }

  if (wanted.has("memory")) {
    // A miss and a hit: growth of the Worker's workerd (peak RSS over its RSS before), bytes checked.
    const memory = {};
    for (const worker of [minimal, tiercel]) {
      const before = memoryOf(worker.pid).rssKiB;
      const reset = resetPeak(worker.pid);
      const path = objectPath(size.memory, `lm-mem-${worker.name}-${stamp}`);
      // Asked until it is a hit (at most 4 times): a fill whose stores fell behind a fast client stores
      // nothing, and the next fill of the key is stored at the stores' pace (src/core/store.ts).
      const answers = [];
      const isHit = (r) => /hit/i.test(r.headers["cache-status"] ?? r.headers["cf-cache-status"] ?? "");
      while (answers.length < 4 && !(answers.length > 0 && isHit(answers.at(-1)))) {
        answers.push(await get(worker, path));
        const last = answers.at(-1);
        log(
          `    ${worker.name} #${answers.length}: ${last.totalMs.toFixed(0)} ms, ${last.headers["cache-status"] ?? ""}`,
        );
      }
      const peak = reset ? memoryOf(worker.pid).hwmKiB : memoryOf(worker.pid).rssKiB;
      const ok = answers.every((r) => r.status === 200 && r.bytes === size.memory && r.intact);
      memory[worker.name] = {
        growthMiB: (peak - before) / 1024,
        bytesVerified: ok,
        peakIsHwm: reset,
        requestsToHit: isHit(answers.at(-1)) ? answers.length : null,
        statuses: answers.map((r) => r.headers["cache-status"] ?? r.headers["cf-cache-status"]),
      };
    }
    figures.memory = { objectMiB: size.memory / MiB, ...memory };
    checks.push(
      goal(
        `${mib(size.memory)} miss and hit: workerd growth < 32 MiB, bytes verified`,
        memory.tiercel.growthMiB < 32 && memory.tiercel.bytesVerified && memory.tiercel.requestsToHit !== null,
        figures.memory,
      ),
    );
    log(
      `  ${mib(size.memory)}: growth Tiercel ${memory.tiercel.growthMiB.toFixed(1)} MiB (hit on request ${memory.tiercel.requestsToHit}), minimal ${memory.minimal.growthMiB.toFixed(1)} MiB`,
    );
  }

  if (wanted.has("tail")) {
    // A tail range of a stored large object: bytes the tier read for it (the stats' bytes of a hit are what
    // was read: the range alone for a ranged read) and its TTFB against a small object's hit.
    const tailPath = objectPath(size.tail, `lm-tail-${stamp}`);
    await get(tiercel, tailPath);
    const small = objectPath(2048, `lm-small-${stamp}`);
    await get(tiercel, small);
    const statsBytes = async () => {
      const body = await getJson(`${tiercel.url}/_tiercel/api/v1/stats`, { token, agent });
      return body.sites?.[siteId]?.bytes ?? Number.NaN;
    };
    const smallTtfb = [];
    const tailTtfb = [];
    const tailBytes = [];
    for (let i = 0; i < 10; i++) {
      smallTtfb.push((await get(tiercel, small)).ttfbMs);
      const before = await statsBytes();
      const tail = await get(tiercel, tailPath, { range: "bytes=-1000" }, size.tail - 1000);
      if (tail.status !== 206 || tail.bytes !== 1000 || !tail.intact) {
        throw new Error(`tail range: ${tail.status}, ${tail.bytes} bytes, intact: ${tail.intact}`);
      }
      tailBytes.push((await statsBytes()) - before);
      tailTtfb.push(tail.ttfbMs);
    }
    figures.tail = {
      objectMiB: size.tail / MiB,
      bytesRead: Math.max(...tailBytes),
      tailTtfbMs: median(tailTtfb),
      smallHitTtfbMs: median(smallTtfb),
    };
    checks.push(
      goal(
        `tail range of a stored ${mib(size.tail)} object: bytes read ≤ 2 × range + one chunk; TTFB ≤ small hit + 5 ms`,
        figures.tail.bytesRead <= 2 * 1000 + 8 * MiB && figures.tail.tailTtfbMs <= figures.tail.smallHitTtfbMs + 5,
        figures.tail,
      ),
    );
    log(
      `  tail: ${figures.tail.bytesRead} bytes read, TTFB ${figures.tail.tailTtfbMs.toFixed(1)} ms (small hit ${figures.tail.smallHitTtfbMs.toFixed(1)} ms)`,
    );
  }

  if (wanted.has("video")) {
    // A simulated video player: a cold object, 3 players at once, 20 sequential ranges each, bytes checked.
    const videoPath = objectPath(size.video, `lm-video-${stamp}`);
    const step = Math.floor(size.video / 20);
    const ttfbs = [];
    const player = async () => {
      for (let i = 0; i < 20; i++) {
        const start = i * step;
        const range = { range: `bytes=${start}-${start + 64 * 1024 - 1}` };
        const result = await get(tiercel, videoPath, range, start);
        if (result.status !== 206 || result.bytes !== 64 * 1024 || !result.intact) {
          throw new Error(`range ${i}: ${result.status}, ${result.bytes} bytes, intact: ${result.intact}`);
        }
        ttfbs.push(result.ttfbMs);
      }
    };
    const t0 = performance.now();
    await Promise.all([player(), player(), player()]);
    figures.video = {
      objectMiB: size.video / MiB,
      originDownloads: origin.counts.get(videoPath) ?? 0,
      seconds: (performance.now() - t0) / 1000,
      rangeTtfbMs: { p50: median(ttfbs), max: Math.max(...ttfbs) },
    };
    checks.push(
      goal(
        `video player, 3 × 20 ranges of a cold ${mib(size.video)} object: 1 origin download`,
        figures.video.originDownloads === 1,
        figures.video,
      ),
    );
    log(
      `  video: ${figures.video.originDownloads} origin downloads in ${figures.video.seconds.toFixed(1)} s (range TTFB p50 ${figures.video.rangeTtfbMs.p50.toFixed(0)} ms, max ${figures.video.rangeTtfbMs.max.toFixed(0)} ms)`,
    );
  }
  agent.destroy();
  return { figures, checks };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const log = (line) => console.error(line);
  const state = await mkdtemp(join(tmpdir(), "tiercel-large-media-"));
  // Workers run from a copy of the sources, as in bench/run.mjs (wrangler's build watches them otherwise).
  const root = join(state, "code");
  await snapshotCode(fileURLToPath(new URL("../..", import.meta.url)), root);
  const origin = await startOrigin({ latencyMs: 0, mbps: 0 });
  const token = `bench-${crypto.randomUUID()}`;
  const siteId = `bench-lm-${crypto.randomUUID().slice(0, 8)}`;
  const host = "bench.tiercel.test";
  // TIERCEL_LM_SITE (JSON) is merged into the bench site, to compare settings (`{"cache":{"globalMaxBytes":1}}`).
  const site = {
    version: 1,
    id: siteId,
    hosts: [host],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
    ...JSON.parse(process.env.TIERCEL_LM_SITE ?? "{}"),
  };
  const value = JSON.stringify(site);
  const persistTo = join(state, "tiercel");
  let code = 0;
  try {
    await kvBulkPut({
      cwd: root,
      persistTo,
      binding: "SITES",
      pairs: [
        { key: `site:${siteId}`, value },
        { key: `host:${host}`, value },
      ],
    });
    const quiet = process.env.TIERCEL_LM_LOG ? [] : ["--log-level", "warn"];
    const [t, m] = await Promise.all([
      startWorker({
        label: "tiercel",
        cwd: root,
        persistTo,
        extra: [...quiet, "--var", `ADMIN_TOKEN:${token}`],
        // TIERCEL_LM_LOG=1: Tiercel's own log lines (store.skipped, tier.skipped…) on stderr.
        ...(process.env.TIERCEL_LM_LOG ? { onLine: (line) => console.error(`[tiercel] ${line}`) } : {}),
      }),
      startWorker({
        label: "minimal",
        cwd: root,
        persistTo: join(state, "minimal"),
        extra: [...quiet, "-c", "bench/minimal/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`],
      }),
    ]);
    const result = await largeMedia({
      tiercel: { name: "tiercel", url: t.url, host, pid: t.runtimePid() },
      minimal: { name: "minimal", url: m.url, host, pid: m.runtimePid() },
      token,
      siteId,
      origin,
      log,
    });
    console.log(JSON.stringify(result, null, 2));
    code = result.checks.every((check) => check.ok) ? 0 : 1;
  } finally {
    await stopAll();
    await origin.close?.();
    await rm(state, { recursive: true, force: true });
  }
  process.exit(code);
}
