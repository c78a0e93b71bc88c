// The multi-location phase (`node bench/run.mjs --only world`; also part of a full run): Tiercel and the
// baseline, each in its own local world of three data centers (test/support/world.mjs) with a configured
// distance to the shared parts and to the origin, reproduce the first write-up's per-location table — the
// first request per location with nothing cached (the origin), the first request per location for an object
// another location filled (the global tier), then that location's hits (its edge) — and count the origin
// fetches of simultaneous cold requests spread over all locations, against issue 14's goals (`goal:` checks:
// one origin fetch per cold object worldwide at 1 KiB–100 MiB, waiters' first byte, peak memory, one
// global-tier write per fill, every request answered with the shield unreachable). See bench/README.md.

import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBundle, startWorld } from "../../test/support/world.mjs";
import { keepAliveAgent, median, percentile, timedRequest } from "../lib/http.mjs";
import { objectPath, startOrigin } from "../lib/origin.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
/**
 * Seed 1's world, scaled down: the bucket is in us-east-1, so iad is next to it and sin is far; KV and the
 * Durable Objects are a round trip away from every location (the write-up: KV about 200–300 ms to first byte,
 * a local hit about half of that, the origin 0.5–1.5 s outside the US). Milliseconds per round trip.
 */
export const WORLD_DELAYS = {
  iad: { shared: 10, origin: 10 },
  fra: { shared: 40, origin: 100 },
  sin: { shared: 80, origin: 200 },
};
const HOSTS = { tiercel: "world.tiercel.test", baseline: "world.baseline.test" };
const TIMEOUT_MS = 60_000;
/** A burst of this size or more: each client reads the first PARTIAL_BYTES and goes away (see coldBurst). */
const PARTIAL_FROM = 100 * MiB;
const PARTIAL_BYTES = 1 * MiB;
const PARTIAL_TIMEOUT_MS = 45_000;

const fmtSize = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
const round = (value) => (Number.isFinite(value) ? Number(value.toFixed(1)) : null);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const nonce = () => crypto.randomUUID().slice(0, 8);

/**
 * `TIERCEL_WORLD_SIZES=100` (MiB; fractions allowed, e.g. `0.001,1`): only the cold bursts of these sizes,
 * for both Workers (the baseline skips sizes over 1 MiB, as in the full phase). Unset: every size.
 */
function burstSizesFromEnv() {
  const raw = process.env.TIERCEL_WORLD_SIZES;
  if (!raw) return undefined;
  const sizes = raw.split(",").map((part) => {
    const mib = Number(part.trim());
    if (!(mib > 0)) throw new Error(`TIERCEL_WORLD_SIZES: "${part}" is not a size in MiB`);
    return Math.round(mib * MiB);
  });
  return { tiercel: sizes, baseline: sizes.filter((size) => size <= 1 * MiB) };
}

/** Which tier answered: Tiercel's Cache-Status, the baseline's bench header. */
function tierOf(worker, headers) {
  if (worker === "baseline") return String(headers["x-bench-tier"] ?? "?").replace("cache", "edge");
  const status = String(headers["cache-status"] ?? "");
  if (/^Tiercel-Edge; hit/.test(status)) return "edge";
  if (/Tiercel-KV; hit/.test(status)) return "kv";
  if (/collapsed/.test(status)) return "collapsed";
  if (/fwd=miss/.test(status)) return "origin";
  return `other(${status})`;
}

/**
 * Runs the phase. `root`: the sources to bundle (the bench's snapshot); `runs`: rounds of the per-location
 * table; `burst`: simultaneous requests per cold object; `log(line)`. Returns the figures, the checks
 * (`{name, ok, detail}`, as the bench's own) and `table` (lines for stdout).
 */
export async function worldPhase({
  root,
  runs = 3,
  burst = 50,
  burstSizes = burstSizesFromEnv() ?? {
    tiercel: [1 * KiB, 1 * MiB, 10 * MiB, 100 * MiB],
    baseline: [1 * KiB, 1 * MiB],
  },
  originMbps = 100,
  log,
}) {
  const dataCenters = Object.keys(WORLD_DELAYS);
  const origin = await startOrigin({ latencyMs: 0, mbps: originMbps });
  const bundles = [];
  const worlds = {};
  const out = { delays: WORLD_DELAYS, dataCenters, originMbps, runs, locations: [], bursts: [], errors: [] };
  try {
    const started = performance.now();
    const [tiercelBundle, baselineBundle] = await Promise.all([
      buildBundle({ root }),
      buildBundle({ root, config: "bench/baseline/wrangler.jsonc" }),
    ]);
    bundles.push(tiercelBundle, baselineBundle);
    const site = { version: 1, id: `world-bench-${nonce()}`, hosts: [HOSTS.tiercel] };
    [worlds.tiercel, worlds.baseline] = await Promise.all([
      startWorld({
        root,
        bundleDir: tiercelBundle,
        delays: WORLD_DELAYS,
        originUrl: origin.url,
        sites: [site],
        // Stored objects on disk, not in workerd's memory: the memory goal is about Tiercel's own.
        persistTo: await mkdtemp(join(tmpdir(), "tiercel-world-state-")).then((dir) => {
          bundles.push(dir);
          return dir;
        }),
      }),
      startWorld({
        root,
        bundleDir: baselineBundle,
        config: "bench/baseline/wrangler.jsonc",
        delays: WORLD_DELAYS,
        vars: { ORIGIN: origin.url },
      }),
    ]);
    out.startS = round((performance.now() - started) / 1000);
    log(`  two worlds of ${dataCenters.join(", ")} up in ${out.startS} s (bundles built once)`);

    for (const worker of ["tiercel", "baseline"]) {
      const world = worlds[worker];
      const agent = keepAliveAgent(1);
      const get = (dc, path, timeoutMs = TIMEOUT_MS) =>
        timedRequest(`${world.url(dc)}${path}`, { host: HOSTS[worker], agent, timeoutMs }).then((answer) => ({
          ...answer,
          tier: tierOf(worker, answer.headers),
        }));
      // Every data center's isolate answers once before anything is timed (a warm isolate, a cached config).
      for (const dc of dataCenters) await get(dc, objectPath(1 * KiB, `warm-${worker}-${dc}`));
      for (let run = 1; run <= runs; run++) {
        // (a) Nothing cached anywhere: each location's first request for its own fresh object.
        const own = Object.fromEntries(
          dataCenters.map((dc) => [dc, objectPath(10 * KiB, `w-${worker}-${dc}-${nonce()}`)]),
        );
        for (const dc of dataCenters) {
          const answer = await get(dc, own[dc]);
          out.locations.push(sample(worker, run, dc, "origin", answer, origin.count(own[dc])));
        }
        await sleep(300);
        // (b) Each location's first request for the object the previous location filled: the global tier;
        // (c) then that location's hits of it: its edge.
        for (const [i, dc] of dataCenters.entries()) {
          const path = own[dataCenters[(i + dataCenters.length - 1) % dataCenters.length]];
          const before = origin.count(path);
          const answer = await get(dc, path);
          out.locations.push(sample(worker, run, dc, "global", answer, origin.count(path) - before));
          await sleep(200);
          for (let hit = 0; hit < 5; hit++) {
            const again = await get(dc, path);
            out.locations.push(sample(worker, run, dc, "edge", again, origin.count(path) - before));
          }
        }
      }
      agent.destroy();
      // (d) Simultaneous cold requests for one object, spread evenly over the data centers.
      for (const size of burstSizes[worker]) {
        out.bursts.push(await coldBurst(worker, world, origin, size, burst, dataCenters));
        const last = out.bursts.at(-1);
        log(
          `  ${worker} ${fmtSize(size)}: ${last.whole}/${last.requests} whole, ${last.originRequests} origin, ${last.allDoneMs} ms`,
        );
      }
      // (e) The same with the shield unreachable from every location (a world fault): degrade, never fail.
      if (worker === "tiercel") {
        await Promise.all(dataCenters.map((dc) => world.setFault(dc, "SHIELD", "throw")));
        try {
          out.unreachable = {
            ...(await coldBurst(worker, world, origin, 1 * MiB, burst, dataCenters)),
            worker: "shield-down",
          };
        } finally {
          await Promise.all(dataCenters.map((dc) => world.setFault(dc, "SHIELD", null)));
        }
      }
      log(`  ${worker}: per-location table and bursts done`);
    }
  } catch (error) {
    out.errors.push(String(error?.stack ?? error).slice(0, 2000));
    log(`  world phase failed: ${String(error?.message ?? error).split("\n")[0]}`);
  } finally {
    await Promise.allSettled(Object.values(worlds).map((world) => world.stop()));
    await origin.close();
    await Promise.allSettled(bundles.map((dir) => rm(dir, { recursive: true, force: true })));
  }
  out.table = summarizeLocations(out);
  out.checks = checks(out);
  out.lines = render(out);
  return out;
}

function sample(worker, run, dc, column, answer, originRequests) {
  const ok = answer.status === 200;
  return {
    worker,
    run,
    dc,
    column,
    tier: answer.tier,
    status: answer.status,
    bytes: answer.bytes,
    ok,
    ttfbMs: round(answer.ttfbMs),
    totalMs: round(answer.totalMs),
    originRequests,
  };
}

/**
 * Writes to the global tier so far: `put`s on every shared binding but the site store, from every isolate of
 * every location and from the Durable Objects (counted by the world's entry).
 */
async function globalWrites(world) {
  const maps = [await world.objectCounters()];
  for (const dc of world.dataCenters) {
    for (const [i] of world.urlsOf(dc).entries()) maps.push((await world.counters(dc, i)).shared);
  }
  const writes = { kv: 0, r2: 0, shield: 0 };
  for (const calls of maps) {
    for (const [call, n] of Object.entries(calls)) {
      // KV puts (records, and bodies up to the large-object size); R2 objects (one put, or one multipart upload).
      if (call === "CACHE_KV.put") writes.kv += n;
      else if (call === "CACHE_R2.put" || call === "CACHE_R2.createMultipartUpload") writes.r2 += n;
      else if (call.startsWith("SHIELD.")) writes.shield += n;
    }
  }
  return writes;
}

/** Samples the RSS of the world's workerd processes every `everyMs` until stopped; the peak sum, in KiB. */
function memorySampler(world, everyMs = 50) {
  let peak = 0;
  const sample = () => {
    const now = world.memory();
    if (now && Number.isFinite(now.rssKiB)) peak = Math.max(peak, now.rssKiB);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak || null;
    },
  };
}

/**
 * GET that reads the first `bytes` of the body and then closes the connection (a client that goes away):
 * `{status, headers, ttfbMs, bytes}`; `bytes` is what was read (at most the limit, plus the last chunk).
 */
function partialRequest(url, { host, bytes: limit, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let ttfbMs;
    let bytes = 0;
    let head = "no headers";
    const req = httpRequest(url, { headers: { host }, agent: false }, (res) => {
      head = `headers at ${Math.round(performance.now() - start)} ms: ${res.statusCode}, ${res.headers["cache-status"] ?? ""}; ${res.headers["server-timing"] ?? ""}`;
      res.on("data", (chunk) => {
        ttfbMs ??= performance.now() - start;
        bytes += chunk.length;
        if (bytes >= limit) {
          clearTimeout(timer);
          resolve({ status: res.statusCode, headers: res.headers, ttfbMs, totalMs: performance.now() - start, bytes });
          req.destroy();
        }
      });
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, ttfbMs, totalMs: performance.now() - start, bytes });
      });
      res.on("error", () => {});
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms with ${bytes} bytes (${head}): GET ${url}`));
    }, timeoutMs);
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

/**
 * `count` simultaneous cold requests for one object of `size` bytes, spread evenly over the locations. From
 * PARTIAL_FROM (100 MiB) each client reads the first PARTIAL_BYTES and goes away: sending 100 MiB to each of
 * 50+ clients through one workerd on this machine takes longer than the phase may (the origin fetches and the
 * global-tier writes, which the fill makes whatever its readers do, are what is counted then).
 */
async function coldBurst(worker, world, origin, size, count, dataCenters) {
  const partial = size >= PARTIAL_FROM;
  const path = objectPath(size, `burst-${worker}-${nonce()}`);
  const agents = Object.fromEntries(dataCenters.map((dc) => [dc, keepAliveAgent(count)]));
  await sleep(1500); // whatever the previous step stored in the background is counted before, not in, the burst
  const writesBefore = await globalWrites(world);
  const idle = world.memory();
  const peakReset = world.resetPeakMemory();
  const sampler = memorySampler(world);
  const t0 = performance.now();
  const outcomes = [];
  const settled = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => {
      const dc = dataCenters[i % dataCenters.length];
      const url = `${world.url(dc)}${path}`;
      const timeoutMs = partial ? PARTIAL_TIMEOUT_MS : size >= 10 * MiB ? 2 * TIMEOUT_MS : TIMEOUT_MS;
      const answered = partial
        ? partialRequest(url, { host: HOSTS[worker], bytes: PARTIAL_BYTES, timeoutMs })
        : timedRequest(url, { host: HOSTS[worker], agent: agents[dc], timeoutMs });
      return answered.then(
        (answer) => {
          const doneMs = performance.now() - t0;
          outcomes[i] = {
            dc,
            status: answer.status,
            bytes: answer.bytes,
            ttfbMs: round(answer.ttfbMs),
            doneMs: round(doneMs),
            cacheStatus: String(answer.headers["cache-status"] ?? ""),
            serverTiming: String(answer.headers["server-timing"] ?? ""),
          };
          return { ...answer, dc, tier: tierOf(worker, answer.headers), doneMs };
        },
        (error) => {
          outcomes[i] = { dc, error: String(error?.message ?? error), doneMs: round(performance.now() - t0) };
          throw error;
        },
      );
    }),
  );
  for (const agent of Object.values(agents)) agent.destroy();
  // The world's one workerd (every location, KV, the Cache API): its peak while the burst ran.
  const after = world.memory();
  const sampledPeak = sampler.stop();
  // The stores run after the answers (Tiercel: in waitUntil): give them a moment before counting.
  await sleep(size >= 10 * MiB ? 3000 : 1500);
  let writesAfter = await globalWrites(world);
  // A fill whose readers went away is still being stored: wait for its record (bounded).
  for (let i = 0; partial && i < 30 && writesAfter.kv === writesBefore.kv; i++) {
    await sleep(1000);
    writesAfter = await globalWrites(world);
  }
  const writes = Object.fromEntries(Object.entries(writesAfter).map(([k, n]) => [k, n - writesBefore[k]]));
  const done = settled.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const whole = done.filter((r) => r.status === 200 && (partial ? r.bytes >= PARTIAL_BYTES : r.bytes === size));
  const perDc = {};
  for (const dc of dataCenters) perDc[dc] = world.originRequests(dc, path);
  const tiers = {};
  for (const answer of done) tiers[answer.tier] = (tiers[answer.tier] ?? 0) + 1;
  // Tiercel's shield: the request whose fill the others joined leads (its Shield member is not `collapsed`).
  const shieldOf = (answer) => /Tiercel-Shield; fwd=miss[^,]*/.exec(String(answer.headers["cache-status"] ?? ""))?.[0];
  const leaders = done.filter((r) => shieldOf(r) && !/collapsed/.test(shieldOf(r)));
  const waiters = done.filter((r) => shieldOf(r) && /collapsed/.test(shieldOf(r)));
  const leader = leaders.sort((a, b) => a.ttfbMs - b.ttfbMs)[0];
  const byDc = (list) =>
    Object.fromEntries(
      dataCenters.map((dc) => [
        dc,
        round(
          percentile(
            list.filter((r) => r.dc === dc).map((r) => r.ttfbMs),
            50,
          ),
        ),
      ]),
    );
  return {
    worker,
    size,
    partial,
    requests: count,
    whole: whole.length,
    incomplete: count - done.length,
    firstErrors: [
      ...new Set(settled.filter((r) => r.status === "rejected").map((r) => String(r.reason?.message))),
    ].slice(0, 3),
    originRequests: origin.count(path),
    originRequestsByDc: perDc,
    tiers,
    ttfbP50Ms: round(
      percentile(
        done.map((r) => r.ttfbMs),
        50,
      ),
    ),
    ttfbMaxMs: round(
      percentile(
        done.map((r) => r.ttfbMs),
        100,
      ),
    ),
    allDoneMs: done.length ? round(Math.max(...done.map((r) => r.doneMs))) : null,
    leaders: leaders.length,
    waiters: waiters.length,
    leaderDc: leader?.dc ?? null,
    leaderTtfbMs: leader ? round(leader.ttfbMs) : null,
    waitersTtfbP50Ms: waiters.length
      ? round(
          percentile(
            waiters.map((r) => r.ttfbMs),
            50,
          ),
        )
      : null,
    ttfbP50ByDc: byDc(done),
    globalWrites: writes,
    workerdSampledPeakMiB: sampledPeak ? round(sampledPeak / 1024) : null,
    workerdIdleMiB: idle ? round(idle.rssKiB / 1024) : null,
    workerdPeakMiB: after && peakReset ? round(after.hwmKiB / 1024) : null,
    // Each request's outcome, in the JSON (status, bytes read, first byte, end, Cache-Status, Server-Timing;
    // or the error): where a slow first byte waited.
    perRequest: outcomes,
  };
}

/** Medians per (worker, data center, column): TTFB and total; for edge, the p50 of every hit. */
function summarizeLocations(out) {
  const rows = [];
  for (const worker of ["tiercel", "baseline"]) {
    for (const dc of out.dataCenters) {
      const row = { worker, dc };
      for (const column of ["origin", "global", "edge"]) {
        const samples = out.locations.filter((s) => s.worker === worker && s.dc === dc && s.column === column);
        const good = samples.filter((s) => s.ok);
        row[column] = {
          ttfbMs: good.length ? round(median(good.map((s) => s.ttfbMs))) : null,
          totalMs: good.length ? round(median(good.map((s) => s.totalMs))) : null,
          samples: samples.length,
          tiers: [...new Set(samples.map((s) => s.tier))],
          originRequests: samples.reduce((sum, s) => sum + (s.originRequests ?? 0), 0),
        };
      }
      rows.push(row);
    }
  }
  return rows;
}

function checks(out) {
  const list = [];
  const check = (name, ok, detail) => list.push({ name: `world: ${name}`, ok: Boolean(ok), detail });
  check("the phase ran", out.errors.length === 0, out.errors[0]?.split("\n")[0] ?? "ok");
  for (const worker of ["tiercel", "baseline"]) {
    const rows = out.table.filter((row) => row.worker === worker);
    const globalsFromKv = rows.every((row) => row.global.tiers.length === 1 && row.global.tiers[0] === "kv");
    check(
      `${worker}: each location's first read of an object filled elsewhere is a global-tier hit, no origin request`,
      rows.length === out.dataCenters.length && globalsFromKv && rows.every((row) => row.global.originRequests === 0),
      rows.map((row) => `${row.dc} ${row.global.tiers.join("/")}`).join(", "),
    );
    check(
      `${worker}: then every hit in that location is an edge hit`,
      rows.length > 0 && rows.every((row) => row.edge.tiers.length === 1 && row.edge.tiers[0] === "edge"),
      rows.map((row) => `${row.dc} ${row.edge.tiers.join("/")}`).join(", "),
    );
    // The delays are what the tiers save: a far location's global tier and edge each well under its origin.
    const far = rows.find((row) => row.dc === "sin");
    check(
      `${worker}: in sin (far from the origin) global-tier TTFB < origin TTFB, edge < global`,
      far && far.edge.ttfbMs < far.global.ttfbMs && far.global.ttfbMs < far.origin.ttfbMs,
      far ? `origin ${far.origin.ttfbMs} ms, global ${far.global.ttfbMs} ms, edge ${far.edge.ttfbMs} ms` : "missing",
    );
  }
  for (const burst of out.bursts) {
    const label = `${burst.worker}: ${burst.requests} simultaneous cold requests for ${fmtSize(burst.size)} over ${out.dataCenters.length} locations`;
    const what = burst.partial ? `answered (each client read the first ${fmtSize(PARTIAL_BYTES)})` : "answered whole";
    check(`${label} all ${what}`, burst.whole === burst.requests, `${burst.whole} of ${burst.requests}`);
  }
  // Issue 14's goals (`goal`: they count in the exit code only with --strict; figures on a loaded machine are
  // indicative).
  const goal = (name, ok, detail) => list.push({ name: `world: goal: ${name}`, ok: Boolean(ok), detail, goal: true });
  const tiercelBursts = out.bursts.filter((b) => b.worker === "tiercel");
  const where = `over ${out.dataCenters.length} locations`;
  for (const b of tiercelBursts) {
    goal(
      `${b.requests} simultaneous cold requests for ${fmtSize(b.size)} ${where} → exactly 1 origin fetch`,
      b.originRequests === 1 && b.whole === b.requests,
      `${b.originRequests} origin fetch(es), ${b.whole}/${b.requests} ${b.partial ? `answered (first ${fmtSize(PARTIAL_BYTES)} read)` : "whole"}`,
    );
    goal(
      `${fmtSize(b.size)}: global-tier writes per fill = 1 (KV records; R2 bodies at most 1)`,
      b.globalWrites.kv === 1 && b.globalWrites.r2 <= 1,
      `KV puts ${b.globalWrites.kv}, R2 objects ${b.globalWrites.r2}, shield calls ${b.globalWrites.shield}`,
    );
    goal(
      `${fmtSize(b.size)}: waiters' first byte p50 ≤ 1.2 × the first request's`,
      b.leaderTtfbMs !== null && b.waitersTtfbP50Ms !== null && b.waitersTtfbP50Ms <= 1.2 * b.leaderTtfbMs,
      `waiters p50 ${ms(b.waitersTtfbP50Ms)} ms (${b.waiters}), first ${ms(b.leaderTtfbMs)} ms (${b.leaderDc}); p50 by location ${JSON.stringify(b.ttfbP50ByDc)}`,
    );
  }
  const tenMiB = tiercelBursts.find((b) => b.size === 10 * MiB);
  const peak = tenMiB ? Math.max(tenMiB.workerdSampledPeakMiB ?? 0, tenMiB.workerdPeakMiB ?? 0) : null;
  goal(
    `${tenMiB?.requests ?? "?"} × 10 MiB completes with peak memory of the world's workerd < 500 MiB`,
    tenMiB && tenMiB.whole === tenMiB.requests && peak !== null && peak > 0 && peak < 500,
    tenMiB ? `peak ${ms(peak)} MiB (sampled every 50 ms and VmHWM; idle ${ms(tenMiB.workerdIdleMiB)} MiB)` : "missing",
  );
  const down = out.unreachable;
  goal(
    `with the shield unreachable from every location, all ${down?.requests ?? "?"} cold requests are answered`,
    down && down.whole === down.requests,
    down ? `${down.whole}/${down.requests} whole, ${down.originRequests} origin fetches (one per isolate)` : "missing",
  );
  return list;
}

function pad(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)));
  return rows.map((row) => row.map((cell, i) => String(cell).padStart(widths[i])).join("  "));
}

const ms = (value) => (value === null || value === undefined ? "—" : value.toFixed(0));

function render(out) {
  const lines = [];
  const delays = out.dataCenters.map((dc) => `${dc} ${out.delays[dc].shared}/${out.delays[dc].origin}`).join(", ");
  lines.push(`\n8. The multi-location world (ms; shared/origin delay per round trip: ${delays})`);
  const rows = [["location", "worker", "origin TTFB", "origin total", "global TTFB", "global total", "edge p50"]];
  for (const dc of out.dataCenters) {
    for (const worker of ["tiercel", "baseline"]) {
      const row = out.table.find((r) => r.worker === worker && r.dc === dc);
      if (!row) continue;
      rows.push([
        dc,
        worker === "tiercel" ? "Tiercel" : "Baseline",
        ms(row.origin.ttfbMs),
        ms(row.origin.totalMs),
        ms(row.global.ttfbMs),
        ms(row.global.totalMs),
        ms(row.edge.ttfbMs),
      ]);
    }
  }
  lines.push(...pad(rows));
  lines.push(
    `   10 KiB objects, medians of ${out.runs} runs. origin = a location's first request with nothing cached; global =`,
    "   its first request for an object another location filled (KV); edge = its next 5 requests (its Cache API).",
  );
  if (out.bursts.length) {
    lines.push("", "   Simultaneous cold requests for one object, spread evenly over the locations:");
    const burstRows = [
      [
        "worker",
        "size",
        "requests",
        "whole",
        "origin fetches",
        "by location",
        "KV/R2 writes",
        "TTFB p50",
        "first / waiters",
        "last done",
        "workerd MiB",
      ],
    ];
    const label = { tiercel: "Tiercel", baseline: "Baseline", "shield-down": "Tiercel, shield unreachable" };
    for (const b of [...out.bursts, ...(out.unreachable ? [out.unreachable] : [])]) {
      burstRows.push([
        label[b.worker],
        fmtSize(b.size),
        b.requests,
        b.whole,
        b.originRequests,
        Object.entries(b.originRequestsByDc)
          .map(([dc, n]) => `${dc} ${n}`)
          .join(", "),
        `${b.globalWrites.kv}/${b.globalWrites.r2}`,
        ms(b.ttfbP50Ms),
        b.leaderTtfbMs === null ? "—" : `${ms(b.leaderTtfbMs)} / ${ms(b.waitersTtfbP50Ms)}`,
        ms(b.allDoneMs),
        `${ms(b.workerdIdleMiB)} → ${ms(Math.max(b.workerdSampledPeakMiB ?? 0, b.workerdPeakMiB ?? 0))}`,
      ]);
    }
    lines.push(...pad(burstRows).map((line) => `   ${line}`));
    lines.push(
      "   Tiercel's cold misses go through the shield of their key (one origin fetch worldwide); the baseline",
      "   fetches per isolate. KV/R2 writes: global-tier writes the burst caused (every isolate and the Durable",
      "   Objects; the goal: 1 per fill). first / waiters: TTFB of the request that led the shield's fill, p50 of",
      "   those that joined it. workerd MiB: the RSS of the world's one workerd (all locations, the",
      "   objects, KV, R2, Cache API) before → its peak during (sampled every 50 ms, and VmHWM where it can be reset).",
    );
  }
  if (out.errors.length) lines.push(`   the phase failed: ${out.errors[0].split("\n")[0]}`);
  return lines;
}
