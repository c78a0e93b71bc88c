// A snapshot of the code the bench runs, taken once at the start.
//
// wrangler's dev server rebuilds and reloads a Worker whenever its sources or its wrangler.jsonc change (the
// esbuild watch cannot be turned off). A reload in the middle of a run cuts the bodies in flight and empties
// the isolate's memory (micro-cache, collapsing), which silently corrupts figures; and the repository may be
// edited while the bench runs. So every Worker of a run is started from one copy of the sources, in the run's
// temporary directory, that nothing else touches: data centers A, B and C run identical code.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

/** What a Worker needs to be bundled by wrangler: its configs, its sources, the type and package files. */
const ENTRIES = [
  "wrangler.jsonc",
  "package.json",
  "tsconfig.json",
  "worker-configuration.d.ts",
  "src",
  // wrangler.jsonc's build hook: wrangler runs it before every dev and (dry-run) deploy.
  "scripts/deploy-guard.mjs",
  "bench/baseline/wrangler.jsonc",
  "bench/baseline/worker.js",
  "bench/minimal/wrangler.jsonc",
  "bench/minimal/worker.js",
];

/**
 * Copies the Worker sources of `root` into `dest` (node_modules is linked, not copied) and returns where
 * they came from: the commit and the files that differed from it (uncommitted changes are measured too).
 */
export async function snapshotCode(root, dest) {
  for (const entry of ENTRIES) {
    const from = join(root, entry);
    if (!existsSync(from)) continue;
    await mkdir(dirname(join(dest, entry)), { recursive: true });
    await cp(from, join(dest, entry), { recursive: true });
  }
  await symlink(join(root, "node_modules"), join(dest, "node_modules"), "dir");
  return provenance(root);
}

async function provenance(root) {
  const git = (...args) => promisify(execFile)("git", args, { cwd: root, timeout: 10_000 });
  try {
    const commit = (await git("rev-parse", "HEAD")).stdout.trim();
    const status = (await git("status", "--porcelain", "--", ...ENTRIES)).stdout;
    const uncommitted = status.split("\n").filter(Boolean);
    return { commit, uncommitted };
  } catch (error) {
    return { commit: null, uncommitted: [], gitError: String(error.message).split("\n")[0] };
  }
}
