import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/**
 * The optimizer Worker (wrangler.optimizer.jsonc) for the tests: bundled by wrangler exactly as it deploys,
 * then run in a workerd process of its own on an ephemeral loopback port. The cache Worker under test reaches
 * it through its real OPTIMIZER service binding, pointed at that port (vitest.config.ts). Its own process,
 * as on Cloudflare its own isolate: its CPU-bound transforms cannot hold up the cache Worker's event loop.
 */
export async function startOptimizer(): Promise<{ port: number; close(): Promise<void> }> {
  const outdir = await mkdtemp(join(tmpdir(), "tiercel-optimizer-"));
  await promisify(execFile)(
    "npx",
    ["wrangler", "deploy", "--dry-run", "--outdir", outdir, "-c", "wrangler.optimizer.jsonc"],
    {
      cwd: ROOT,
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    },
  );
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(outdir, "optimizer-worker.js"),
    modulesRoot: outdir,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: "2026-04-20",
    host: "127.0.0.1",
    port: 0,
  });
  const url = await mf.ready;
  return {
    port: Number(url.port),
    async close() {
      await mf.dispose();
      await rm(outdir, { recursive: true, force: true });
    },
  };
}
