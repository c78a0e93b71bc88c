// Issue 15's goals, measured next to a minimal Cache-API Worker in the same runtime (wrangler dev, workerd).
// `largeMedia` is the phase bench/run.mjs calls; `node bench/phases/large-media.mjs` runs it alone (its own
// origin, Workers and state; about a minute here). Figures on this shared, loaded machine are indicative.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getJson, keepAliveAgent, median, timedRequest } from "../lib/http.mjs";
import { objectPath, startOrigin } from "../lib/origin.mjs";
import { snapshotCode } from "../lib/snapshot.mjs";
import { kvBulkPut, memoryOf, resetPeak, startWorker, stopAll } from "../lib/wrangler.mjs";

const MiB = 1024 * 1024;

/**
 * `tiercel` and `minimal`: `{ url, host, pid }` of running Workers (pid: the Worker's own workerd);
 * `token`: Tiercel's admin token; `siteId`; `origin`: the bench origin (`counts`). Sizes can be made smaller
 * (the 100, 500 and 200 MiB objects are 64 MiB here: the bench origin's largest object).
 */
export async function largeMedia({ tiercel, minimal, token, siteId, origin, log, sizes = {} }) {
  // The bench origin serves at most 64 MiB (bench/lib/origin.mjs): larger goals are measured at 64 MiB.
  const size = { miss: 30 * MiB, memory: 64 * MiB, tail: 64 * MiB, video: 64 * MiB, ...sizes };
  const agent = keepAliveAgent(4);
  const get = (worker, path, headers = {}, timeoutMs = 120_000) =>
    timedRequest(`${worker.url}${path}`, { host: worker.host, agent, headers, timeoutMs });
  const stamp = Date.now().toString(36);
  const figures = {};
  const checks = [];

  // A 30 MiB miss: total time against the minimal Worker's.
  const miss = {};
  for (const worker of [minimal, tiercel]) {
    const result = await get(worker, objectPath(size.miss, `lm-miss-${worker.name}-${stamp}`));
    if (result.bytes !== size.miss) throw new Error(`${worker.name}: ${result.bytes} of ${size.miss} bytes`);
    miss[worker.name] = result.totalMs;
  }
  figures.miss30 = { tiercelMs: miss.tiercel, minimalMs: miss.minimal, ratio: miss.tiercel / miss.minimal };
  checks.push({
    goal: "30 MiB miss total time ≤ 1.2 × minimal",
    ok: figures.miss30.ratio <= 1.2,
    figures: figures.miss30,
  });
  log(`  30 MiB miss: Tiercel ${miss.tiercel.toFixed(0)} ms, minimal ${miss.minimal.toFixed(0)} ms`);

  // A 100 MiB miss and hit: growth of the Worker's workerd (peak RSS over its RSS before).
  const memory = {};
  for (const worker of [minimal, tiercel]) {
    const before = memoryOf(worker.pid).rssKiB;
    const reset = resetPeak(worker.pid);
    const path = objectPath(size.memory, `lm-mem-${worker.name}-${stamp}`);
    const first = await get(worker, path);
    const second = await get(worker, path);
    const peak = reset ? memoryOf(worker.pid).hwmKiB : memoryOf(worker.pid).rssKiB;
    const ok = first.bytes === size.memory && second.bytes === size.memory;
    memory[worker.name] = { growthMiB: (peak - before) / 1024, bytesVerified: ok, peakIsHwm: reset };
  }
  figures.memory100 = memory;
  checks.push({
    goal: `${size.memory / MiB} MiB miss and hit (goal: 100 MiB): workerd growth < 32 MiB, bytes verified`,
    ok: memory.tiercel.growthMiB < 32 && memory.tiercel.bytesVerified,
    figures: memory,
  });
  log(
    `  ${size.memory / MiB} MiB: growth Tiercel ${memory.tiercel.growthMiB.toFixed(1)} MiB, minimal ${memory.minimal.growthMiB.toFixed(1)} MiB`,
  );

  // A tail range of a stored large object: bytes the tiers answered (admin stats) and TTFB against a small hit.
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
    const tail = await get(tiercel, tailPath, { range: "bytes=-1000" });
    if (tail.status !== 206 || tail.bytes !== 1000) throw new Error(`tail range: ${tail.status}, ${tail.bytes} bytes`);
    tailBytes.push((await statsBytes()) - before);
    tailTtfb.push(tail.ttfbMs);
  }
  figures.tail = {
    objectMiB: size.tail / MiB,
    bytesRead: Math.max(...tailBytes),
    tailTtfbMs: median(tailTtfb),
    smallHitTtfbMs: median(smallTtfb),
  };
  checks.push({
    goal: "tail range of a stored object: bytes read ≤ 2 × range + one chunk; TTFB ≤ small hit + 5 ms",
    ok: figures.tail.bytesRead <= 2 * 1000 + 8 * MiB && figures.tail.tailTtfbMs <= figures.tail.smallHitTtfbMs + 5,
    figures: figures.tail,
  });
  log(
    `  tail: ${figures.tail.bytesRead} bytes read, TTFB ${figures.tail.tailTtfbMs.toFixed(1)} ms (small hit ${figures.tail.smallHitTtfbMs.toFixed(1)} ms)`,
  );

  // A simulated video player: a cold object, 3 players at once, 20 sequential ranges each.
  const videoPath = objectPath(size.video, `lm-video-${stamp}`);
  const step = Math.floor(size.video / 20);
  const player = async () => {
    for (let i = 0; i < 20; i++) {
      const start = i * step;
      const result = await get(tiercel, videoPath, { range: `bytes=${start}-${start + 64 * 1024 - 1}` });
      if (result.status !== 206 || result.bytes !== 64 * 1024) throw new Error(`range ${i}: ${result.status}`);
    }
  };
  const t0 = performance.now();
  await Promise.all([player(), player(), player()]);
  figures.video = {
    objectMiB: size.video / MiB,
    originDownloads: origin.counts.get(videoPath) ?? 0,
    seconds: (performance.now() - t0) / 1000,
  };
  checks.push({
    goal: "video player, 3 × 20 ranges of a cold object: 1 origin download",
    ok: figures.video.originDownloads === 1,
    figures: figures.video,
  });
  log(`  video: ${figures.video.originDownloads} origin downloads in ${figures.video.seconds.toFixed(1)} s`);
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
  const site = { version: 1, id: siteId, hosts: [host], origin: { kind: "http", url: origin.url, allowPrivate: true } };
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
    const quiet = ["--log-level", "warn"];
    const [t, m] = await Promise.all([
      startWorker({ label: "tiercel", cwd: root, persistTo, extra: [...quiet, "--var", `ADMIN_TOKEN:${token}`] }),
      startWorker({
        label: "minimal",
        cwd: root,
        persistTo: join(state, "minimal"),
        extra: [...quiet, "-c", "bench/phases/minimal.wrangler.jsonc", "--var", `ORIGIN:${origin.url}`],
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
