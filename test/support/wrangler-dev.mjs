import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./free-port.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** wrangler without its network look-ups (the machines have no internet). */
export const wranglerEnv = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

/**
 * The Worker under `wrangler dev` on a free loopback port, with its own state directory and admin token, for
 * the end-to-end tests (`stateDir` is theirs to write scratch files to). `stop()` ends wrangler and its
 * children and removes the state.
 */
export async function startWranglerDev({ token }) {
  const dir = await mkdtemp(join(tmpdir(), "tiercel-e2e-"));
  const port = await freePort();
  const args = ["wrangler", "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", dir];
  // Its own inspector port too: wrangler's default (9229) is taken by any other wrangler dev on the machine.
  args.push("--inspector-port", String(await freePort()));
  args.push("--show-interactive-dev-session=false", "--var", `ADMIN_TOKEN:${token}`);
  const worker = spawn("npx", args, { cwd: ROOT, env: wranglerEnv, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const stop = async () => {
    try {
      process.kill(-worker.pid, "SIGTERM");
    } catch {}
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await new Promise((resolve, reject) => {
      let output = "";
      const timer = setTimeout(() => reject(new Error(`wrangler dev did not start:\n${output}`)), 90_000);
      const watch = (chunk) => {
        output += chunk;
        if (output.includes("Ready on")) {
          clearTimeout(timer);
          resolve();
        }
      };
      worker.stdout.on("data", watch);
      worker.stderr.on("data", watch);
      worker.on("exit", (code) => reject(new Error(`wrangler dev exited with ${code}:\n${output}`)));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, stateDir: dir, stop };
}
