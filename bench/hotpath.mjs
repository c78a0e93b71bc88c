// `node bench/hotpath.mjs [--rounds N] [--duration-s S] [--miss-rounds N] [--concurrency C] [--strict]`: only
// phase 7 of the bench (bench/phases/hotpath.mjs) — Tiercel, the baseline and the minimal Cache-API Worker in
// one data center, edge hits and misses interleaved — in about a minute, for working on the hot path. The full
// bench (`node bench/run.mjs`) runs the same phase with the others. Loopback only; every wait is bounded.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { timedRequest } from "./lib/http.mjs";
import { startOrigin } from "./lib/origin.mjs";
import { snapshotCode } from "./lib/snapshot.mjs";
import { killAllNow, kvBulkPut, startWorker, stopAll } from "./lib/wrangler.mjs";
import { hotpath, hotpathChecks, hotpathFigures, hotpathParameters, renderHotpath } from "./phases/hotpath.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string" },
    "miss-rounds": { type: "string" },
    "duration-s": { type: "string" },
    concurrency: { type: "string", default: "32" },
    "origin-latency-ms": { type: "string", default: "300" },
    "origin-mbps": { type: "string", default: "100" },
    only: { type: "string" },
    strict: { type: "boolean", default: false },
    json: { type: "string" },
    // Another checkout of Tiercel (e.g. \`git worktree add\` or \`git archive\` of main) run as a fourth peer,
    // "base", interleaved with the others: before/after figures from one run on the same loaded machine.
    base: { type: "string" },
  },
});
const params = hotpathParameters(true);
if (flags.rounds) params.rounds = Number(flags.rounds);
if (flags["miss-rounds"]) params.missRounds = Number(flags["miss-rounds"]);
if (flags["duration-s"]) params.durationS = Number(flags["duration-s"]);
const only = flags.only?.split(",");

const started = Date.now();
const log = (line) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
const watchdog = setTimeout(() => {
  log("still running after 5 minutes: giving up");
  killAllNow();
  process.exit(2);
}, 5 * 60_000);
watchdog.unref();

const origin = await startOrigin({
  latencyMs: Number(flags["origin-latency-ms"]),
  mbps: Number(flags["origin-mbps"]),
});
const stateDir = await mkdtemp(join(tmpdir(), "tiercel-hotpath-"));
const codeDir = join(stateDir, "code");
let exitCode = 1;
try {
  const code = await snapshotCode(ROOT, codeDir);
  const baseDir = join(stateDir, "base-code");
  if (flags.base) await snapshotCode(flags.base, baseDir);
  log(`code ${code.commit?.slice(0, 12)} + ${code.uncommitted.length} uncommitted changes; origin ${origin.url}`);
  const token = `bench-${crypto.randomUUID()}`;
  const site = {
    version: 1,
    id: `bench-${crypto.randomUUID().slice(0, 16)}`,
    hosts: ["bench.tiercel.test"],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
  };
  const value = JSON.stringify(site);
  for (const name of flags.base ? ["tiercel", "base"] : ["tiercel"]) {
    await kvBulkPut({
      cwd: codeDir,
      persistTo: join(stateDir, name),
      binding: "SITES",
      pairs: [
        { key: `site:${site.id}`, value },
        { key: "host:bench.tiercel.test", value },
      ],
    });
  }
  const quiet = ["--log-level", "warn"];
  const all = [
    {
      name: "tiercel",
      label: "Tiercel",
      host: "bench.tiercel.test",
      extra: [...quiet, "--var", `ADMIN_TOKEN:${token}`],
      tierOf: (h) =>
        /^Tiercel-Edge; hit/.test(h["cache-status"] ?? "")
          ? "edge"
          : /fwd=miss/.test(h["cache-status"] ?? "")
            ? "origin"
            : `other(${h["cache-status"]})`,
    },
    {
      name: "baseline",
      label: "Baseline",
      host: "bench.baseline.test",
      extra: [...quiet, "-c", "bench/baseline/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`],
      tierOf: (h) => (h["x-bench-tier"] === "cache" ? "edge" : (h["x-bench-tier"] ?? "other")),
    },
    {
      name: "minimal",
      label: "Minimal",
      host: "bench.minimal.test",
      extra: [...quiet, "-c", "bench/minimal/wrangler.jsonc", "--var", `ORIGIN:${origin.url}`],
      tierOf: (h) => (h["cf-cache-status"] === "HIT" ? "edge" : "origin"),
    },
  ];
  if (flags.base) all.push({ ...all[0], name: "base", label: "Tiercel (base)", cwd: baseDir });
  const peers = all.filter((peer) => !only || only.includes(peer.name));
  await Promise.all(
    peers.map(async (peer) => {
      peer.instance = await startWorker({
        label: peer.label,
        cwd: peer.cwd ?? codeDir,
        persistTo: join(stateDir, peer.name),
        extra: peer.extra,
      });
    }),
  );
  log(`started ${peers.map((peer) => `${peer.label} on ${peer.instance.url}`).join(", ")}`);
  const get = async (peer, path, agent, timeoutMs) => {
    const answer = await timedRequest(`${peer.instance.url}${path}`, { host: peer.host, agent, timeoutMs });
    return { ...answer, tier: peer.tierOf(answer.headers) };
  };
  const raw = await hotpath({ peers, get, concurrency: Number(flags.concurrency), params, log });
  const figures = hotpathFigures(raw);
  if (flags.json) await writeFile(flags.json, `${JSON.stringify({ raw, figures }, null, 2)}\n`);
  const table = (headers, rows) => {
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => String(row[i]).length)));
    const line = (cells) => cells.map((cell, i) => String(cell).padStart(widths[i])).join("  ");
    return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
  };
  console.log(renderHotpath(figures, table).join("\n"));
  const checks = hotpathChecks(figures);
  for (const check of checks) console.log(`  ${check.ok ? "ok  " : "FAIL"}  ${check.name}  (${check.detail})`);
  console.log(
    `(${((Date.now() - started) / 1000).toFixed(0)} s; on a loaded machine these figures are only indicative)`,
  );
  exitCode = !flags.strict || checks.every((check) => check.ok) ? 0 : 1;
} catch (error) {
  log(`failed: ${error.stack ?? error}`);
} finally {
  await stopAll();
  await origin.close();
  await rm(stateDir, { recursive: true, force: true });
}
process.exit(exitCode);
