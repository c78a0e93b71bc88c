// The test-only entry of one data center in the local world (test/support/world.mjs; docs/architecture.md,
// "The local multi-location world"). It runs in workerd in front of a Worker's real bundle, imported below as
// `./__world-main.js`, and changes nothing in it; it only does what the platform would do for a data center:
//
// - its own Cache API: every `caches.open(name)` and `caches.default` of the bundle is this data center's
//   (Miniflare keeps one Cache API for all its Workers, keyed by cache name, so the names are prefixed
//   with the data center's: `<dc>:<name>`);
// - distance to the shared parts: each call on a KV namespace, an R2 bucket or a Durable Object stub
//   (named in the WORLD variable) first waits the data center's delay, and is counted;
// - faults: a shared binding can be made to throw ("unreachable"), to see that a request is still answered.
//
// Origin traffic is delayed outside workerd, by the data center's loopback proxy (world.mjs). Paths under
// `/__world/` are answered here (counters and settings for the tests and the bench), never by the bundle.
import { env as startEnv } from "cloudflare:workers";
import main from "./__world-main.js";

export * from "./__world-main.js";

/**
 * { dc, name (this isolate's Worker: the dc, or `<dc>-<n>`), kinds: {BINDING: "kv" | "r2" | "do"}, sharedMs,
 *   bindingMs: {BINDING: ms}, faults: {BINDING: "throw"} }
 */
const world = JSON.parse(startEnv.WORLD ?? "{}");
world.kinds ??= {};
world.sharedMs ??= 0;
world.bindingMs ??= {};
world.faults ??= {};
/** This isolate's id, drawn on its first request (no random values at global scope in workerd). */
let isolate;
/** Calls on the shared parts, by `BINDING.method`. */
const calls = {};

if (world.dc && world.perDcCaches !== false) {
  const real = globalThis.caches;
  const prefix = `${world.dc}:`;
  const open = (name) => real.open(prefix + name);
  let defaultCache;
  const byDefault =
    (method) =>
    async (...args) => {
      defaultCache ??= open("default");
      return (await defaultCache)[method](...args);
    };
  const dcCaches = {
    open,
    has: (name) => real.has(prefix + name),
    delete: (name) => real.delete(prefix + name),
    default: { match: byDefault("match"), put: byDefault("put"), delete: byDefault("delete") },
  };
  Object.defineProperty(globalThis, "caches", { value: dcCaches, configurable: true, writable: false });
}

const sleep = (ms) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

/** One round trip from this data center to a shared part: counted, delayed, and failed if so set. */
async function crossing(binding, method) {
  const key = `${binding}.${method}`;
  calls[key] = (calls[key] ?? 0) + 1;
  await sleep(world.bindingMs[binding] ?? world.sharedMs);
  if (world.faults[binding] === "throw") throw new Error(`world: ${binding} is unreachable from ${world.dc}`);
}

/** A KV namespace, an R2 bucket or a Durable Object stub whose every method call crosses first. */
function distant(binding, target) {
  return new Proxy(target, {
    get(object, property) {
      const value = object[property];
      if (typeof value !== "function" || property === "then") return value;
      // Symbol-keyed methods (Symbol.dispose, say) are local: called on the real object, not delayed.
      if (typeof property === "symbol") return (...args) => Reflect.apply(value, object, args);
      return async (...args) => {
        await crossing(binding, property);
        // Not value.apply(...): on an RPC stub every property is a remote method, `apply` too.
        return Reflect.apply(value, object, args);
      };
    },
  });
}

/** A Durable Object namespace: ids are local; the stubs it hands out are distant. */
function distantNamespace(binding, namespace) {
  return new Proxy(namespace, {
    get(object, property) {
      const value = object[property];
      if (typeof value !== "function") return value;
      if (property === "get" || property === "getByName") {
        return (...args) => distant(binding, Reflect.apply(value, object, args));
      }
      return value.bind(object);
    },
  });
}

const envs = new WeakMap();

/**
 * The env the bundle sees: the same object for every request (Tiercel builds its pieces once per env). The
 * world-objects Worker gives it to its Durable Objects too (with no delay), so their calls are counted.
 */
export function worldEnv(env) {
  let out = envs.get(env);
  if (!out) {
    out = { ...env };
    for (const [binding, kind] of Object.entries(world.kinds)) {
      if (!env[binding]) continue;
      out[binding] = kind === "do" ? distantNamespace(binding, env[binding]) : distant(binding, env[binding]);
    }
    envs.set(env, out);
  }
  return out;
}

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** GET /__world/counters; POST /__world/settings {sharedMs?, bindingMs?, faults?} (merged). */
async function control(request, url) {
  if (url.pathname === "/__world/counters" && request.method === "GET") {
    isolate ??= crypto.randomUUID();
    return json({ dc: world.dc, name: world.name, isolate, calls });
  }
  if (url.pathname === "/__world/settings" && request.method === "POST") {
    const body = await request.json();
    if (typeof body.sharedMs === "number") world.sharedMs = body.sharedMs;
    Object.assign(world.bindingMs, body.bindingMs ?? {});
    for (const [binding, fault] of Object.entries(body.faults ?? {})) {
      if (fault) world.faults[binding] = fault;
      else delete world.faults[binding];
    }
    return json({ dc: world.dc, sharedMs: world.sharedMs, bindingMs: world.bindingMs, faults: world.faults });
  }
  return json({ error: "unknown world control path" }, 404);
}

export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/__world/")) return control(request, url);
    return main.fetch(request, world.dc ? worldEnv(env) : env, ctx);
  },
};
