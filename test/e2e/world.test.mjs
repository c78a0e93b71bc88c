// End to end: the local world of several data centers (test/support/world.mjs), with Tiercel's real bundle in
// each and a counting origin on loopback. Run by `npm test` with `node --test test/e2e/`; alone with
// `node --test test/e2e/world.test.mjs`.
import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import { after, before, test } from "node:test";
import { Response } from "miniflare";
import { startWorld } from "../support/world.mjs";

const HOST = "world.tiercel.test";
const SITE = { version: 1, id: "world-e2e-site", hosts: [HOST] };
/** A site with the shield turned off: each data center fetches its origin itself, through its own distance. */
const DIRECT = "direct.world.tiercel.test";
const SITE_DIRECT = { version: 1, id: "world-e2e-direct", hosts: [DIRECT], cache: { shield: false } };
const DELAYS = { sin: { shared: 80, origin: 200 }, fra: { shared: 0, origin: 0 }, iad: { shared: 20, origin: 50 } };
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

let world;
let origin;
const hits = new Map();

/** The origin: every path is a 2 KiB cacheable object; requests are counted per path. */
function startCountingOrigin() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://origin").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "public, max-age=600" });
    res.end(`${path} `.repeat(2048).slice(0, 2048));
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

/** One GET to a data center, sending the site's Host; the time to the first body byte. */
function get(dc, path, host = HOST, isolate = 0) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let ttfbMs;
    const req = request(`${world.url(dc, isolate)}${path}`, { headers: { host }, agent: false }, (res) => {
      let bytes = 0;
      res.on("data", (chunk) => {
        ttfbMs ??= performance.now() - started;
        bytes += chunk.length;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode, bytes, cacheStatus: String(res.headers["cache-status"]), ttfbMs }),
      );
      res.on("error", reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${dc} ${path}: no answer in 30 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** An admin API call to a data center (the admin API reaches the Durable Objects through it). */
async function admin(dc, method, path, body) {
  const response = await fetch(`${world.url(dc)}/_tiercel/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${world.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: await response.json() };
}

/** The global tier's keys for objects (`c:` prefix), from Node. */
async function kvObjectKeys() {
  const kv = await world.kv("CACHE_KV");
  return (await kv.list({ prefix: "c:" })).keys.map((key) => key.name);
}

/** Waits (bounded) until the global tier holds more object keys than `before`; returns the new ones. */
async function newKvKeys(before) {
  for (let i = 0; i < 100; i++) {
    const added = (await kvObjectKeys()).filter((key) => !before.includes(key));
    if (added.length > 0) return added;
    await sleep(100);
  }
  throw new Error("the global tier was not written within 10 s");
}

before(
  async () => {
    const server = await startCountingOrigin();
    origin = { server, url: `http://127.0.0.1:${server.address().port}` };
    world = await startWorld({
      dataCenters: ["sin", "fra", "iad"],
      isolates: { fra: 2 },
      delays: DELAYS,
      originUrl: origin.url,
      sites: [SITE, SITE_DIRECT],
    });
  },
  { timeout: 180_000 },
);

after(async () => {
  await world?.stop();
  origin?.server.closeAllConnections();
  await new Promise((done) => (origin ? origin.server.close(() => done()) : done()));
});

test("a cold object: a miss in sin, a global-tier hit in fra, then an edge hit back in sin", async () => {
  const path = "/tiers.txt";
  const keys = await kvObjectKeys();
  const miss = await get("sin", path);
  assert.equal(miss.status, 200);
  assert.equal(miss.bytes, 2048);
  assert.match(miss.cacheStatus, /^Tiercel-Shield; fwd=miss.*Tiercel-KV; fwd=miss.*Tiercel-Edge; fwd=miss/);
  assert.equal(hits.get(path), 1);
  // The shield (on by default) fetched it, from the Durable Objects' place, not sin's.
  assert.equal(world.originRequests("sin", path), 0);
  assert.equal(world.originRequests(undefined, path), 1);

  await newKvKeys(keys);
  const global = await get("fra", path);
  assert.equal(global.status, 200);
  assert.equal(global.bytes, 2048);
  assert.match(global.cacheStatus, /^Tiercel-KV; hit/);
  assert.equal(hits.get(path), 1, "the global-tier hit did not reach the origin");
  assert.equal(world.originRequests("fra", path), 0);

  await sleep(200);
  const shieldCalls = (await world.counters("sin")).shared["SHIELD.fill"];
  assert.equal(shieldCalls, 1, "sin's miss called the shield once");
  const edge = await get("sin", path);
  assert.match(edge.cacheStatus, /^Tiercel-Edge; hit/);
  assert.equal(edge.bytes, 2048);
  assert.equal(hits.get(path), 1);
  // A hit costs the shield nothing: no call from sin (counted by the world at the binding) nor from fra.
  assert.equal((await world.counters("sin")).shared["SHIELD.fill"], shieldCalls);
  assert.equal((await world.counters("fra")).shared["SHIELD.fill"], undefined);
});

test("each data center's edge is its own: an entry only in fra's Cache API is not seen in iad", async () => {
  const path = "/edge-only.txt";
  const keys = await kvObjectKeys();
  assert.match((await get("fra", path)).cacheStatus, /fwd=miss/);
  // Take the object out of the global tier, so it is only in fra's Cache API.
  const kv = await world.kv("CACHE_KV");
  for (const key of await newKvKeys(keys)) await kv.delete(key);
  await sleep(200);

  const elsewhere = await get("iad", path);
  assert.match(elsewhere.cacheStatus, /Tiercel-Edge; fwd=miss/, "iad's edge does not have fra's entry");
  assert.equal(hits.get(path), 2);
  const home = await get("fra", path);
  assert.match(home.cacheStatus, /^Tiercel-Edge; hit/, "fra's edge still has it");
  assert.equal(hits.get(path), 2);

  // From Node, each data center's Cache API is its own too: iad's cache is not fra's (Miniflare's Response).
  const fraCache = await world.cache("fra", "tiercel");
  const iadCache = await world.cache("iad", "tiercel");
  const probe = "https://world.test/probe";
  await fraCache.put(probe, new Response("fra", { headers: { "cache-control": "max-age=60" } }));
  assert.equal(await (await fraCache.match(probe))?.text(), "fra");
  assert.equal(await iadCache.match(probe), undefined);
});

test("one set of Durable Objects; a URL purge in sin clears sin's edge and the global tier at once, fra's within the window", async (t) => {
  const host = "owned.world.tiercel.test";
  const created = await admin("sin", "POST", "/sites", {
    version: 1,
    hosts: [host],
    origin: { kind: "http", url: origin.url, allowPrivate: true },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.site.id;
  // Another data center's admin API reads the same owner.
  const read = await admin("fra", "GET", `/sites/${id}`);
  assert.equal(read.status, 200, JSON.stringify(read.body));
  assert.deepEqual(read.body.site.hosts, [host]);
  const sinCalls = (await world.counters("sin")).shared;
  assert.ok(
    Object.keys(sinCalls).some((call) => call.startsWith("SITE_OWNER.")),
    JSON.stringify(sinCalls),
  );
  // The objects' own calls are counted too: the owner claimed the host from the registry.
  const objectCalls = await world.objectCounters();
  assert.ok(objectCalls["REGISTRY.setHosts"] >= 1, JSON.stringify(objectCalls));

  const path = "/purged.txt";
  const keys = await kvObjectKeys();
  assert.match((await get("fra", path, host)).cacheStatus, /fwd=miss/);
  await newKvKeys(keys);
  await sleep(200);
  assert.match((await get("sin", path, host)).cacheStatus, /^Tiercel-KV; hit/);
  await sleep(200);
  assert.match((await get("sin", path, host)).cacheStatus, /^Tiercel-Edge; hit/);
  assert.equal(hits.get(path), 1);

  const purge = await admin("sin", "POST", `/sites/${id}/purge`, { urls: [`http://${host}${path}`] });
  assert.equal(purge.status, 202, JSON.stringify(purge.body));
  const purgedAt = performance.now();
  // sin's edge and the global tier lose it at once...
  assert.match((await get("sin", path, host)).cacheStatus, /Tiercel-KV; fwd=miss.*Tiercel-Edge; fwd=miss/);
  assert.equal(hits.get(path), 2);
  // ...and fra, whose micro-cache still holds the site's old purge state (CONFIG_CACHE_SECONDS, 30 s), learns
  // of the purge from the control feed within its window (CONTROL_WINDOW_MS, 1 s; issue 13's goal: 2 s).
  let seenMs;
  for (let i = 0; i < 50 && seenMs === undefined; i++) {
    if (/^Tiercel-Edge; hit/.test((await get("fra", path, host)).cacheStatus)) await sleep(100);
    else seenMs = performance.now() - purgedAt;
  }
  t.diagnostic(`fra saw sin's purge ${seenMs?.toFixed(0)} ms after the admin's answer`);
  // The goal is 2 s; the bound leaves room for a loaded machine (sin's refetch above takes ~0.5 s of it).
  assert.ok(seenMs !== undefined && seenMs <= 3_000, `fra saw the purge after ${seenMs} ms`);
});

test("delays are applied: to the shared parts and to the origin, per data center (rough bounds only)", async () => {
  // sin: the site config (SITES), the tiers' lookup (KV) and the origin, each behind its delay (a site with
  // the shield off, so the origin is fetched from sin).
  const sin = await get("sin", "/slow.txt", DIRECT);
  assert.equal(sin.status, 200);
  const floor = DELAYS.sin.origin + DELAYS.sin.shared;
  assert.ok(sin.ttfbMs >= floor, `a miss in sin took ${sin.ttfbMs.toFixed(0)} ms, less than ${floor} ms`);

  await world.setDelays("fra", { origin: 300 });
  const fra = await get("fra", "/slowed.txt", DIRECT);
  assert.ok(fra.ttfbMs >= 300, `a miss in fra after setDelays took ${fra.ttfbMs.toFixed(0)} ms`);
  await world.setDelays("fra", { origin: 0 });

  const counters = await world.counters("sin");
  assert.ok(counters.shared["CACHE_KV.getWithMetadata"] >= 1, JSON.stringify(counters.shared));
  assert.ok(counters.shared["CACHE_KV.put"] >= 1, JSON.stringify(counters.shared));
});

test("a shared part that fails is skipped: with KV unreachable from iad, iad still answers", async () => {
  await world.setFault("iad", "CACHE_KV", "throw");
  try {
    const answer = await get("iad", "/no-kv.txt");
    assert.equal(answer.status, 200);
    assert.equal(answer.bytes, 2048);
    assert.match(answer.cacheStatus, /Tiercel-KV; .*detail=tier-error/);
  } finally {
    await world.setFault("iad", "CACHE_KV", null);
  }
});

test("memory is per data center: three isolates, each counting only its own requests", async () => {
  const path = "/counted.txt";
  for (let i = 0; i < 3; i++) await get("iad", path);
  const all = await Promise.all(world.dataCenters.map((dc) => world.counters(dc)));
  assert.equal(new Set(all.map((c) => c.isolate)).size, 3);
  const count = (c, site) => c.stats.sites[site.id]?.requests ?? 0;
  const requests = Object.fromEntries(all.map((c) => [c.dc, count(c, SITE) + count(c, SITE_DIRECT)]));
  // Each isolate counted what it answered in this file, and only that.
  assert.equal(requests.sin, 3, JSON.stringify(requests));
  assert.equal(requests.fra, 4, JSON.stringify(requests));
  assert.equal(requests.iad, 5, JSON.stringify(requests));
  // One KV read for the site config and one for its purge state (kept apart from the settings since issue 13).
  assert.equal(all.find((c) => c.dc === "iad").stats.config.kvReads, 2, "iad read the config and purge state once");
});

test("the isolates of one data center share its Cache API, not their memory; one workerd runs the world", async () => {
  const path = "/two-isolates.txt";
  assert.match((await get("fra", path)).cacheStatus, /fwd=miss/);
  await sleep(300);
  const second = await get("fra", path, HOST, 1);
  assert.match(second.cacheStatus, /^Tiercel-Edge; hit/, "fra's second isolate hits the entry its first stored");
  assert.equal(hits.get(path), 1);
  const [first, other] = await Promise.all([world.counters("fra", 0), world.counters("fra", 1)]);
  assert.notEqual(first.isolate, other.isolate);
  assert.equal(other.name, "fra-2");
  assert.equal(other.stats.sites[SITE.id]?.requests, 1, "the second isolate counted only its own request");
  assert.equal(world.urlsOf("fra").length, 2);

  const memory = world.memory();
  // On Linux the world's one workerd is found (by the socket it listens on) and its memory read from /proc.
  assert.ok(process.platform !== "linux" || memory?.rssKiB > 10_000, JSON.stringify(memory));
});
