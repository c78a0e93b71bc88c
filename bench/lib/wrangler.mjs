// Workers under wrangler's dev server (see dev-worker.mjs): start one (bounded wait for "Ready on"), find its
// workerd runtime, read its memory, and stop its whole process tree — also on errors, Ctrl-C and exit.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const DEV_WORKER = fileURLToPath(new URL("./dev-worker.mjs", import.meta.url));

/** wrangler reaches for the internet unless told not to; the bench is loopback only. */
export const WRANGLER_ENV = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

const live = new Set();

/** Stops every instance still running (started or starting). */
export function stopAll() {
  return Promise.allSettled([...live].map((instance) => instance.stop()));
}

/** Kills every live instance's process group and known descendants at once (sync: safe in an exit handler). */
export function killAllNow() {
  for (const instance of live) instance.killNow();
}
process.on("exit", killAllNow);

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Descendant pids of `root`, from /proc (parent links). */
export function descendants(root) {
  const children = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  const out = [];
  const queue = [root];
  for (let i = 0; i < queue.length && i < 1000; i++) {
    for (const child of children.get(queue[i]) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** How many descriptors a process has open (NaN if it is gone). */
export function openDescriptors(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** VmRSS and VmHWM of a process, in KiB (NaN if it is gone). */
export function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name) => Number(new RegExp(`^${name}:\\s+([0-9]+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
  } catch {
    return { rssKiB: Number.NaN, hwmKiB: Number.NaN };
  }
}

/** Resets the peak RSS (VmHWM) of a process we own to its current RSS; false where the kernel refuses. */
export function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * `wrangler kv bulk put --local` into a persistence directory, as scripts/start.mjs writes the demo site.
 * `configPath` is the wrangler config whose binding is meant (the repository's by default).
 */
export async function kvBulkPut({ cwd, persistTo, binding, pairs, configPath, timeoutMs = 60_000 }) {
  const dir = await mkdtemp(join(tmpdir(), "tiercel-bench-kv-"));
  try {
    const file = join(dir, "pairs.json");
    await writeFile(file, JSON.stringify(pairs));
    const args = ["wrangler", "kv", "bulk", "put", "--local", "--persist-to", persistTo, "--binding", binding, file];
    if (configPath) args.push("-c", configPath);
    await new Promise((resolve, reject) => {
      const child = spawn("npx", args, { cwd, env: WRANGLER_ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const keep = (chunk) => {
        output = (output + chunk).slice(-4000);
      };
      child.stdout.on("data", keep);
      child.stderr.on("data", keep);
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
        reject(new Error(`wrangler kv bulk put timed out\n${output}`));
      }, timeoutMs);
      child.on("exit", (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`wrangler kv bulk put exited with ${code}\n${output}`));
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Starts a Worker the way `wrangler dev` does, on a free loopback port with its own persistence directory,
 * through `dev-worker.mjs` (wrangler's dev server with the DevTools inspector off: see that file for why), and
 * waits (bounded) for "Ready on". `extra` are further arguments (`--var NAME:VALUE`, `-c config`). Output is
 * kept (the last 20 KB) for errors.
 */
export async function startWorker({ label, cwd, persistTo, extra = [], readyTimeoutMs = 120_000, onLine }) {
  const port = await freePort();
  const args = [DEV_WORKER, "--ip", "127.0.0.1", "--port", String(port), "--persist-to", persistTo, ...extra];
  // Its own process group, so the whole tree (node, esbuild, two workerd) can be signalled at once.
  const child = spawn(process.execPath, args, {
    cwd,
    env: WRANGLER_ENV,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let exited = false;
  let known = [];
  child.on("exit", () => {
    exited = true;
  });

  const instance = {
    label,
    port,
    url: `http://127.0.0.1:${port}`,
    persistTo,
    child,
    get output() {
      return output;
    },
    /**
     * The workerd process running the Worker itself. The other one is wrangler's proxy in front of it, the
     * only one listening on the public port (`--socket-addr=entry=127.0.0.1:<port>`).
     */
    runtimePid() {
      known = descendants(child.pid);
      const runtimes = known.filter((pid) => cmdline(pid)[0]?.endsWith("/workerd"));
      const proxyArg = `--socket-addr=entry=127.0.0.1:${port}`;
      const workers = runtimes.filter((pid) => !cmdline(pid).includes(proxyArg));
      return workers.length === 1 ? workers[0] : undefined;
    },
    /**
     * Open descriptors of each of its workerd processes, by role ("proxy" on the public port, "worker" for
     * the runtime), so a report can show none of them piles up sockets.
     */
    descriptors() {
      known = descendants(child.pid);
      const worker = instance.runtimePid();
      const out = {};
      for (const pid of known.filter((p) => cmdline(p)[0]?.endsWith("/workerd"))) {
        out[pid === worker ? "worker" : "proxy"] = openDescriptors(pid);
      }
      return out;
    },
    killNow() {
      for (const pid of [...known, ...(exited ? [] : [child.pid])].filter(alive)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
      live.delete(instance);
    },
    /** SIGTERM to the group, up to 10 s for a clean exit (KV and cache flushed), then SIGKILL. */
    async stop() {
      if (!live.has(instance)) return;
      known = descendants(child.pid);
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && known.some(alive)) await new Promise((r) => setTimeout(r, 100));
      instance.killNow();
    },
  };
  live.add(instance);

  const onData = (chunk) => {
    const text = chunk.toString();
    output = (output + text).slice(-20_000);
    if (onLine) for (const line of text.split("\n")) if (line.trim()) onLine(line);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);

  const deadline = Date.now() + readyTimeoutMs;
  // dev-worker.mjs's own line (wrangler's "[wrangler:info] Ready on" can come before the Worker answers).
  while (!/^Ready on http/m.test(output)) {
    if (exited || Date.now() > deadline) {
      await instance.stop();
      throw new Error(
        `${label}: the dev server ${exited ? "exited" : `not ready after ${readyTimeoutMs} ms`}\n${output.slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The proxy is up at "Ready"; the Worker's own workerd follows within a few seconds. Wait for it, so its
  // memory and descriptors can be read from the first request on.
  for (let i = 0; i < 300 && !instance.runtimePid(); i++) await new Promise((r) => setTimeout(r, 100));
  known = descendants(child.pid);
  return instance;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
