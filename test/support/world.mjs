// A local world of several data centers (docs/architecture.md, "The local multi-location world"): for the
// node:test end-to-end tests and the bench. One Miniflare (one workerd process) runs
//
// - one Worker per data center, each its own isolate running the real bundle of a wrangler config (Tiercel's
//   by default) behind test/support/world-entry.js, which gives the data center its own Cache API and puts a
//   delay in front of its every call on the shared parts (KV, R2, Durable Object stubs);
// - one Worker, "world-objects", that runs the same bundle and defines its Durable Object classes; every data
//   center binds them by scriptName, so there is one set of Durable Objects;
// - nothing else: the optimizer Worker is left out (sites with optimize options serve their originals).
//
// All of them bind the same KV namespace and R2 bucket ids, so they share one global tier. Each data center's
// origin traffic (every fetch() the bundle makes) goes through its own delaying loopback proxy here, which
// counts requests and forwards only to loopback. Everything listens on 127.0.0.1.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ENTRY = fileURLToPath(new URL("./world-entry.js", import.meta.url));
/** The Worker that defines the Durable Object classes every data center binds. */
export const OBJECTS_WORKER = "world-objects";

// Loopback only: no Request.cf fetch from workers.cloudflare.com, no metrics (wrangler and Miniflare read these).
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";
const wranglerEnv = { ...process.env };

const sleep = (ms) => new Promise((done) => setTimeout(done, Math.max(0, ms)));
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * Bundles a wrangler config's Worker the way it deploys (`wrangler deploy --dry-run --outdir`), into a new
 * temporary directory. Returns the directory; build once and pass it as `bundleDir` to several worlds.
 */
export async function buildBundle({ config = "wrangler.jsonc", root = ROOT, timeoutMs = 120_000 } = {}) {
  const outdir = await mkdtemp(join(tmpdir(), "tiercel-world-bundle-"));
  const args = ["wrangler", "deploy", "--dry-run", "--outdir", outdir, "-c", config];
  await new Promise((done, fail) => {
    const child = spawn("npx", args, {
      cwd: root,
      env: wranglerEnv,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
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
      fail(new Error(`wrangler deploy --dry-run timed out\n${output}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) done();
      else fail(new Error(`wrangler deploy --dry-run -c ${config} exited with ${code}\n${output}`));
    });
  });
  return outdir;
}

/** The bundle's files as Miniflare modules, its main module renamed to what world-entry.js imports. */
async function bundleModules(bundleDir, mainName) {
  const modules = [{ type: "ESModule", path: join(bundleDir, "__world-entry.mjs"), contents: await readFile(ENTRY) }];
  const types = { ".js": "ESModule", ".mjs": "ESModule", ".wasm": "CompiledWasm", ".txt": "Text", ".bin": "Data" };
  for (const name of await readdir(bundleDir, { recursive: true })) {
    const type = types[/\.[a-z]+$/.exec(name)?.[0] ?? ""];
    if (!type) continue;
    const path = name === mainName ? "__world-main.js" : name;
    modules.push({ type, path: join(bundleDir, path), contents: await readFile(join(bundleDir, name)) });
  }
  return modules;
}

/**
 * The world-objects Worker's main module: the Durable Object classes of the bundle, each constructed with the
 * counted env of world-entry.js (so the objects' own KV, R2 and Durable Object calls are counted too).
 */
function objectsEntry(classNames) {
  const lines = [
    'import entry, { worldEnv } from "./__world-entry.mjs";',
    'import * as main from "./__world-main.js";',
    'export * from "./__world-main.js";',
    "export default entry;",
  ];
  for (const name of classNames) {
    if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name)) throw new Error(`world: Durable Object class name ${name}`);
    lines.push(`export class ${name} extends main.${name} { constructor(ctx, env) { super(ctx, worldEnv(env)); } }`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * A data center's way to the origin: a loopback HTTP proxy that waits `delay()` ms before forwarding each
 * request (so the delay lands before the origin's first byte, once per request), streams both bodies as they
 * are, and counts requests per path. It forwards to loopback hosts only.
 */
async function startOriginProxy(delay) {
  const counts = new Map();
  let total = 0;
  const sockets = new Set();
  const server = createServer(async (req, res) => {
    const host = req.headers.host ?? "";
    const target = new URL(`http://${host}${req.url}`);
    if (!LOOPBACK.has(target.hostname)) {
      res.writeHead(502, { "content-type": "text/plain" }).end(`world: ${target.hostname} is not loopback\n`);
      return;
    }
    total += 1;
    counts.set(target.pathname, (counts.get(target.pathname) ?? 0) + 1);
    await sleep(delay());
    const upstream = httpRequest(
      { host: target.hostname, port: target.port || 80, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
        // A body the origin cut short is cut short for the data center too, never ended cleanly.
        answer.on("close", () => {
          if (!answer.complete) res.destroy();
        });
        res.on("close", () => {
          if (!res.writableFinished) answer.destroy();
        });
      },
    );
    upstream.on("error", (error) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(`world: ${error.message}\n`);
      else res.destroy();
    });
    req.pipe(upstream);
    // The data center went away before its answer was whole: so does the request to the origin.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", done);
  });
  return {
    address: `127.0.0.1:${server.address().port}`,
    requests: (path) => (path === undefined ? total : (counts.get(path) ?? 0)),
    byPath: () => Object.fromEntries(counts),
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((done) => server.close(() => done()));
    },
  };
}

/** Which bindings are shared parts, and of what kind (from the config's Miniflare options). */
function sharedKinds(options) {
  const kinds = {};
  for (const name of Object.keys(options.kvNamespaces ?? {})) kinds[name] = "kv";
  for (const name of Object.keys(options.r2Buckets ?? {})) kinds[name] = "r2";
  for (const name of Object.keys(options.durableObjects ?? {})) kinds[name] = "do";
  return kinds;
}

/**
 * Starts the world. Options:
 * - `dataCenters`: names (lower-case letters and digits), default ["sin", "fra", "iad"];
 * - `isolates`: isolates per data center, a number or `{dc: n}` (default 1, at most 8): each its own Worker
 *   (its own memory) on its own socket, all sharing the data center's Cache API, delays and origin proxy;
 * - `delays`: per data center `{shared, origin}` in ms (missing: 0), e.g. `{sin: {shared: 80, origin: 200}}`;
 *   `objects: {origin}` delays the Durable Objects' own origin fetches (a shield's), 0 by default;
 * - `originUrl`: the origin of any site in `sites` that names none (`{kind: "http", url, allowPrivate: true}`);
 * - `sites`: site configs written to the SITES namespace (`host:<host>` for each host, and `site:<id>`);
 * - `config`: the wrangler config to run, relative to `root` (the repository by default, or a copy of it such
 *   as the bench's snapshot): Tiercel's `wrangler.jsonc` by default, `bench/baseline/wrangler.jsonc` runs the
 *   bench's baseline; `bundleDir`: a bundle of it from `buildBundle()` (else one is built and removed by stop());
 * - `vars`: extra plain-text variables for every data center; `adminToken` (random by default);
 * - `persistTo`: a directory for the shared storage (KV, R2, Cache API, Durable Objects) rather than memory,
 *   so the workerd's RSS is Tiercel's own rather than the stored objects' (the bench's memory figures);
 * - `onOutput(line)`: workerd's output, line by line (it is always kept too, the last 200 lines, in
 *   `output()`; with TIERCEL_WORLD_VERBOSE=1 in the environment and no `onOutput`, it is printed to stderr).
 */
export async function startWorld(options = {}) {
  const {
    dataCenters = ["sin", "fra", "iad"],
    isolates = 1,
    delays = {},
    originUrl,
    sites = [],
    config = "wrangler.jsonc",
    root = ROOT,
    vars = {},
    persistTo,
    adminToken = `world-${crypto.randomUUID()}`,
    onOutput = process.env.TIERCEL_WORLD_VERBOSE ? (line) => console.error(`[world] ${line}`) : undefined,
  } = options;
  for (const dc of dataCenters) {
    if (!/^[a-z][a-z0-9]{0,15}$/.test(dc)) throw new Error(`world: data center name ${JSON.stringify(dc)}`);
  }
  if (new Set(dataCenters).size !== dataCenters.length || dataCenters.includes(OBJECTS_WORKER)) {
    throw new Error("world: data center names must be distinct");
  }
  for (const name of Object.keys(delays)) {
    if (name !== "objects" && !dataCenters.includes(name)) throw new Error(`world: delays for unknown ${name}`);
  }
  const isolateNames = {};
  for (const dc of dataCenters) {
    const count = typeof isolates === "number" ? isolates : (isolates[dc] ?? 1);
    if (!Number.isInteger(count) || count < 1 || count > 8) throw new Error(`world: ${dc} isolates ${count}`);
    isolateNames[dc] = Array.from({ length: count }, (_, i) => (i === 0 ? dc : `${dc}-${i + 1}`));
  }
  const cleanup = [];
  const kept = [];
  const stop = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
    cleanup.length = 0;
  };
  try {
    // The bundle (a wrangler child process) and wrangler's reading of the config, side by side.
    const building = options.bundleDir ? Promise.resolve(options.bundleDir) : buildBundle({ config, root });
    const { Miniflare } = await import("miniflare");
    const { unstable_getMiniflareWorkerOptions } = await import("wrangler");
    const { workerOptions, main } = unstable_getMiniflareWorkerOptions(resolve(root, config));
    const bundleDir = await building;
    if (!options.bundleDir) cleanup.push(() => rm(bundleDir, { recursive: true, force: true }));
    const mainName = `${(main ?? "worker.js").replace(/^.*\//, "").replace(/\.[cm]?[jt]s$/, "")}.js`;
    const modules = await bundleModules(bundleDir, mainName);

    // What the world leaves out: the optimizer Worker and Cloudflare's image service (both remote services).
    const base = { ...workerOptions };
    delete base.serviceBindings;
    delete base.images;
    delete base.modulesRules;
    const kinds = sharedKinds(base);
    const objectClasses = base.durableObjects ?? {};

    const live = {};
    for (const dc of dataCenters) live[dc] = { shared: delays[dc]?.shared ?? 0, origin: delays[dc]?.origin ?? 0 };
    const objectsDelay = { origin: delays.objects?.origin ?? 0 };
    const proxies = {};
    for (const dc of [...dataCenters, OBJECTS_WORKER]) {
      const delay = dc === OBJECTS_WORKER ? () => objectsDelay.origin : () => live[dc].origin;
      proxies[dc] = await startOriginProxy(delay);
      cleanup.push(() => proxies[dc].close());
    }

    const takeLines = (stream) => {
      let rest = "";
      stream.on("data", (chunk) => {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          if (!line.trim()) continue;
          if (onOutput) onOutput(line);
          kept.push(line);
          if (kept.length > 200) kept.shift();
        }
      });
    };

    const objectsModules = [
      {
        type: "ESModule",
        path: join(bundleDir, "__world-objects.mjs"),
        contents: objectsEntry([...new Set(Object.values(objectClasses).map((object) => object.className))]),
      },
      ...modules,
    ];
    const worker = (name, dc, bindings, durableObjects) => ({
      ...base,
      name,
      modules: name === OBJECTS_WORKER ? objectsModules : modules,
      modulesRoot: bundleDir,
      bindings: { ...base.bindings, ...bindings },
      durableObjects,
      outboundService: {
        external: { address: proxies[name === OBJECTS_WORKER ? OBJECTS_WORKER : dc].address, http: {} },
      },
      ...(dc ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
    });
    const workers = [
      worker(
        OBJECTS_WORKER,
        undefined,
        { ...vars, WORLD: JSON.stringify({ name: OBJECTS_WORKER, kinds, sharedMs: 0 }) },
        objectClasses,
      ),
      ...dataCenters.flatMap((dc) =>
        isolateNames[dc].map((name) =>
          worker(
            name,
            dc,
            {
              ...vars,
              ADMIN_TOKEN: adminToken,
              WORLD: JSON.stringify({ dc, name, kinds, sharedMs: live[dc].shared }),
            },
            Object.fromEntries(
              Object.entries(objectClasses).map(([binding, object]) => [
                binding,
                { ...object, scriptName: OBJECTS_WORKER },
              ]),
            ),
          ),
        ),
      ),
    ];
    const mf = new Miniflare({
      host: "127.0.0.1",
      port: 0,
      cf: false,
      ...(persistTo
        ? {
            kvPersist: join(persistTo, "kv"),
            r2Persist: join(persistTo, "r2"),
            cachePersist: join(persistTo, "cache"),
            durableObjectsPersist: join(persistTo, "do"),
          }
        : {}),
      handleRuntimeStdio: (stdout, stderr) => {
        takeLines(stdout);
        takeLines(stderr);
      },
      workers,
    });
    cleanup.push(() => mf.dispose());
    await mf.ready;

    const isolateUrls = {};
    for (const dc of dataCenters) {
      isolateUrls[dc] = [];
      for (const name of isolateNames[dc]) isolateUrls[dc].push((await mf.unsafeGetDirectURL(name)).origin);
    }
    const urls = Object.fromEntries(dataCenters.map((dc) => [dc, isolateUrls[dc][0]]));
    const everyIsolate = (dc, work) => Promise.all((isolateUrls[dc] ?? throwUnknown(dc)).map(work));

    const world = {
      dataCenters: [...dataCenters],
      urls,
      adminToken,
      miniflare: mf,
      bundleDir,
      /** The base URL of a data center's isolate `i` (0: its first; send the site's Host). */
      url: (dc, i = 0) => (isolateUrls[dc] ?? throwUnknown(dc))[i] ?? throwUnknown(`${dc} isolate ${i}`),
      /** The base URLs of all of a data center's isolates. */
      urlsOf: (dc) => [...(isolateUrls[dc] ?? throwUnknown(dc))],
      /** Origin requests made through a data center's proxy ("world-objects": the Durable Objects'), per path. */
      originRequests(dc, path) {
        if (dc === undefined) return Object.values(proxies).reduce((sum, proxy) => sum + proxy.requests(path), 0);
        return (proxies[dc] ?? throwUnknown(dc)).requests(path);
      },
      /**
       * The counters of a data center's isolate `i`: its calls on the shared parts by `BINDING.method`, its
       * isolate's random id, the data center's origin requests (total and per path, all its isolates), and
       * Tiercel's own isolate stats (`isolate` of `GET /_tiercel/api/v1/stats`: `{since, sites, config, flush}`, this
       * isolate's alone; null for a Worker without a SITES binding).
       */
      async counters(dc, i = 0) {
        const own = await getJson(`${world.url(dc, i)}/__world/counters`);
        let stats = null;
        // Only a Worker with a site store has the admin API (another, the baseline, would fetch the path).
        if (kinds.SITES) {
          try {
            const auth = { authorization: `Bearer ${adminToken}` };
            stats = (await getJson(`${world.url(dc, i)}/_tiercel/api/v1/stats?window=5m`, auth)).isolate ?? null;
          } catch {}
        }
        return {
          dc,
          name: own.name,
          isolate: own.isolate,
          shared: own.calls,
          origin: { requests: proxies[dc].requests(), byPath: proxies[dc].byPath() },
          stats,
        };
      },
      /** The Durable Objects' own calls on the shared parts (KV, R2, other objects), by `BINDING.method`. */
      async objectCounters() {
        const objects = await mf.getWorker(OBJECTS_WORKER);
        const response = await objects.fetch("http://world.internal/__world/counters");
        return (await response.json()).calls;
      },
      /**
       * Changes a data center's delays from now on: `{shared, origin}` in ms, and `bindings: {NAME: ms}` for
       * one shared binding (a Durable Object namespace, say) instead of `shared`.
       */
      async setDelays(dc, { shared, origin, bindings } = {}) {
        const now = live[dc] ?? throwUnknown(dc);
        if (origin !== undefined) now.origin = origin;
        if (shared !== undefined) now.shared = shared;
        await everyIsolate(dc, (url) => postJson(`${url}/__world/settings`, { sharedMs: shared, bindingMs: bindings }));
      },
      /** Makes every call on `binding` from `dc` (all its isolates) throw ("throw"), or work again (null). */
      async setFault(dc, binding, fault) {
        await everyIsolate(dc, (url) => postJson(`${url}/__world/settings`, { faults: { [binding]: fault } }));
      },
      /**
       * The workerd process running the whole world (every data center, the objects, Miniflare's KV, R2 and
       * Cache API): its pid and memory from /proc (`rssKiB`, `hwmKiB` the peak; Linux only, else null).
       */
      memory() {
        const pid = workerdPid(isolateUrls[dataCenters[0]][0]);
        return pid ? { pid, ...memoryOf(pid) } : null;
      },
      /** Resets the peak (`hwmKiB`) of the world's workerd to its current RSS; false where it cannot. */
      resetPeakMemory() {
        const pid = workerdPid(isolateUrls[dataCenters[0]][0]);
        try {
          if (pid) writeFileSync(`/proc/${pid}/clear_refs`, "5");
          return Boolean(pid);
        } catch {
          return false;
        }
      },
      /** A shared KV namespace, from Node: no delay, not counted (to seed or inspect the global tier). */
      kv: (binding) => mf.getKVNamespace(binding, OBJECTS_WORKER),
      /** A shared R2 bucket, from Node. */
      r2: (binding) => mf.getR2Bucket(binding, OBJECTS_WORKER),
      /** A data center's own Cache API cache `name` (what its `caches.open(name)` opens), from Node. */
      async cache(dc, name) {
        if (!live[dc]) throwUnknown(dc);
        return (await mf.getCaches()).open(`${dc}:${name}`);
      },
      /** Writes a site config the way scripts/start.mjs does: `host:<host>` for each host, and `site:<id>`. */
      async putSite(site) {
        const full = site.origin ? site : { ...site, origin: { kind: "http", url: originUrl, allowPrivate: true } };
        if (!full.origin.url && full.origin.kind === "http")
          throw new Error("world: a site needs an origin or originUrl");
        const kv = await world.kv("SITES");
        const value = JSON.stringify(full);
        await kv.put(`site:${full.id}`, value);
        for (const host of full.hosts) await kv.put(`host:${host}`, value);
        return full;
      },
      /** The last 200 lines workerd printed. */
      output: () => [...kept],
      stop,
    };
    for (const site of sites) await world.putSite(site);
    return world;
  } catch (error) {
    await stop();
    if (kept.length) error.message += `\nworkerd said:\n${kept.slice(-30).join("\n")}`;
    throw error;
  }
}

/** The workerd child of this process that listens on `url`'s port (matched by socket inode in /proc). */
function workerdPid(url) {
  try {
    const port = Number(new URL(url).port).toString(16).toUpperCase().padStart(4, "0");
    const inodes = new Set();
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      let text = "";
      try {
        text = readFileSync(table, "utf8");
      } catch {
        continue; // no IPv6 here
      }
      for (const line of text.split("\n").slice(1)) {
        const fields = line.trim().split(/\s+/);
        // local address is field 1 (ADDR:PORT), state 0A is LISTEN, inode is field 9.
        if (fields[1]?.endsWith(`:${port}`) && fields[3] === "0A") inodes.add(`socket:[${fields[9]}]`);
      }
    }
    for (const name of readdirSync("/proc")) {
      if (!/^[0-9]+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== process.pid) continue;
        if (!readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0")[0]?.endsWith("workerd")) continue;
        for (const fd of readdirSync(`/proc/${name}/fd`)) {
          let link = "";
          try {
            link = readlinkSync(`/proc/${name}/fd/${fd}`);
          } catch {} // closed meanwhile
          if (inodes.has(link)) return Number(name);
        }
      } catch {
        // gone meanwhile, or not ours to read
      }
    }
  } catch {
    // no /proc
  }
  return null;
}

/** VmRSS and VmHWM of a process, in KiB (NaN if it is gone). */
function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name) => Number(new RegExp(`^${name}:\\s+([0-9]+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
  } catch {
    return { rssKiB: Number.NaN, hwmKiB: Number.NaN };
  }
}

function throwUnknown(dc) {
  throw new Error(`world: no data center ${JSON.stringify(dc)}`);
}

/** A bounded JSON GET over loopback. */
async function getJson(url, headers = {}) {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}
