import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey, keyPartsFor } from "../../src/core/keys";
import { isolateBudget } from "../../src/core/memory-budget";
import type { Deps } from "../../src/core/pipeline";
import { respond } from "../../src/core/pipeline";
import { createShield, SHIELD_DEFAULTS, type ShieldBinding } from "../../src/core/shield";
import type { Tier } from "../../src/core/tier";
import worker, { platformFor, shieldPlatformFor } from "../../src/worker";
import { newSite, origin, send, unique } from "../support/harness";

/** The cache key of a URL. */
async function cacheKeyOf(host: string, path: string): Promise<string> {
  const site = await platformFor(env).sites.siteForHost(host, () => {});
  if (!site) throw new Error(`no site for ${host}`);
  return cacheKey(keyPartsFor(site, new URL(`http://${host}${path}`)));
}

/** The shield instance of a URL's key, and its counters. */
async function shieldOf(host: string, path: string) {
  return env.SHIELD.get(env.SHIELD.idFromName(await cacheKeyOf(host, path)));
}

/** SHA-256 of the loopback origin's generated body of `size` bytes ("0123456789" repeated). */
async function patternDigest(size: number): Promise<string> {
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  const block = new TextEncoder().encode("0123456789".repeat(6554));
  for (let at = 0; at < size; at += block.byteLength)
    await writer.write(block.subarray(0, Math.min(block.byteLength, size - at)));
  await writer.close();
  return hex(await digest.digest);
}

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * One request through the Worker, its body's length and digest taken as it streams (never held whole:
 * 50 × 10 MiB would not fit), and the time its first byte arrived.
 */
async function fetchChecked(
  url: string,
  overrides?: Partial<Omit<Deps, "waitUntil">>,
  onProgress?: (received: number) => void,
) {
  const ctx = createExecutionContext();
  const started = performance.now();
  const request = new Request(url) as Request<unknown, IncomingRequestCfProperties>;
  const response = overrides
    ? await respond(request, { ...platformFor(env), ...overrides, waitUntil: (work) => ctx.waitUntil(work) })
    : await worker.fetch(request, env, ctx);
  let firstByte: number | undefined;
  let received = 0;
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    firstByte ??= performance.now() - started;
    received += value.byteLength;
    onProgress?.(received);
    await writer.write(value);
  }
  await writer.close();
  await waitOnExecutionContext(ctx);
  return {
    status: response.status,
    cacheStatus: response.headers.get("cache-status") ?? "",
    firstByte,
    received,
    digest: hex(await digest.digest),
  };
}

/** The real shield binding of the test Worker, counting the calls made to it. */
function countingShield(): { shield: ShieldBinding; calls: () => number } {
  const real = platformFor(env).shield as ShieldBinding;
  let calls = 0;
  return {
    shield: {
      timeoutMs: real.timeoutMs,
      fill(key, request) {
        calls += 1;
        return real.fill(key, request);
      },
      invalidated: (key) => real.invalidated(key),
    },
    calls: () => calls,
  };
}

/** Another location's tiers: no edge, and global-tier reads that see nothing (yet). */
function blindTiers(): Tier[] {
  return platformFor(env)
    .tiers.filter((tier) => tier.name !== "edge")
    .map(
      (tier): Tier => ({
        name: tier.name,
        get: async () => null,
        delete: (key) => tier.delete(key),
        put: (...args) => tier.put(...args),
      }),
    );
}

/** The platform's tiers with the global ones counting the puts made through them from this data center. */
function countingTiers(): { tiers: Tier[]; puts: () => number } {
  let puts = 0;
  const tiers = platformFor(env).tiers.map((tier): Tier => {
    if (tier.name === "edge") return tier;
    return {
      name: tier.name,
      get: (key) => tier.get(key),
      delete: (key) => tier.delete(key),
      put(...args) {
        puts += 1;
        return tier.put(...args);
      },
    };
  });
  return { tiers, puts: () => puts };
}

describe("origin shield", () => {
  for (const [label, size] of [
    ["1 KiB", 1024],
    ["1 MiB", 1024 * 1024],
    ["10 MiB", 10 * 1024 * 1024],
  ] as const) {
    it(`makes one origin fetch for 50 concurrent cold requests of ${label}, every waiter getting every byte`, async () => {
      const { host } = await newSite({ cache: { shield: true } });
      const path = `/${unique("shielded")}.bin`;
      await origin.route(path, { size, delayMs: 50, headers: { "cache-control": "max-age=300" } });
      const { tiers, puts } = countingTiers();
      const expected = await patternDigest(size);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => fetchChecked(`http://${host}${path}`, { tiers })),
      );
      for (const result of results) {
        expect(result.status).toBe(200);
        expect(result.received).toBe(size);
        expect(result.digest).toBe(expected);
      }
      expect((await origin.hits(path)).hits).toBe(1);
      // One writer per fill: the shield wrote the global tier, no data center did.
      expect(puts()).toBe(0);
      const counters = await (await shieldOf(host, path)).counters();
      expect(counters.fills).toBe(1);
      expect(counters.globalPuts).toBe(1);
      const shielded = results.filter((result) => result.cacheStatus.startsWith("Tiercel-Shield; fwd=miss"));
      expect(shielded.length).toBeGreaterThan(0);
      expect(results.some((result) => result.cacheStatus.includes("Tiercel-Shield; fwd=miss; fwd-status=200"))).toBe(
        true,
      );

      // The global tier holds it: an isolate with an empty edge answers from KV, with no shield call.
      const { shield, calls } = countingShield();
      const kvOnly = platformFor(env).tiers.filter((tier) => tier.name !== "edge");
      const fromKv = await fetchChecked(`http://${host}${path}`, { tiers: kvOnly, shield });
      expect(fromKv.digest).toBe(expected);
      expect(fromKv.cacheStatus).toMatch(/^Tiercel-KV; hit/);
      expect(calls()).toBe(0);
      expect((await origin.hits(path)).hits).toBe(1);
    }, 180_000);
  }

  it("names the shield hop in Cache-Status before the data center's own members, and costs a hit nothing", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("hop")}.css`;
    const { shield, calls } = countingShield();
    const first = await send(`http://${host}${path}`, undefined, { shield });
    expect(await first.text()).toBe(`GET ${path} #1`);
    expect(first.headers.get("cache-status")).toBe(
      "Tiercel-Shield; fwd=miss; fwd-status=200; detail=storing, Tiercel-KV; fwd=miss; fwd-status=200; detail=storing, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing",
    );
    expect(first.headers.get("server-timing")).toMatch(/shield;dur=/);
    expect(calls()).toBe(1);

    const hit = await send(`http://${host}${path}`, undefined, { shield });
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await hit.text()).toBe(`GET ${path} #1`);
    expect(calls()).toBe(1);
    expect((await origin.hits(path)).hits).toBe(1);
  });

  it("answers data centers that miss a recent fill's global copy from that copy, not with another origin fetch", async () => {
    // KV is eventually consistent: a location may not see a key just written for up to 60 s (or its read
    // times out). Its requests then reach the shield after the fill is over.
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("unseen")}.bin`;
    const size = 256 * 1024;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
    const expected = await patternDigest(size);
    expect((await fetchChecked(`http://${host}${path}`)).digest).toBe(expected);
    const shield = await shieldOf(host, path);
    for (let i = 0; i < 100 && (await shield.counters()).globalPuts < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Another location: no edge copy, and its global-tier reads do not see the key yet.
    const blind = blindTiers();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => fetchChecked(`http://${host}${path}`, { tiers: blind })),
    );
    for (const result of results) {
      expect(result.digest).toBe(expected);
      expect(result.cacheStatus).toMatch(/^Tiercel-Shield; hit; detail=stored-copy/);
    }
    expect((await origin.hits(path)).hits).toBe(1);
    expect(await shield.counters()).toMatchObject({ fills: 1, fromCopy: 10, globalPuts: 1 });

    // Once the copy is gone (purged, expired), the next request fills again.
    for (const tier of platformFor(env).tiers) await tier.delete(await cacheKeyOf(host, path));
    const again = await fetchChecked(`http://${host}${path}`, { tiers: blind });
    expect(again.digest).toBe(expected);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("remembers an uncacheable answer (hit-for-pass): waiters and later requests go to the origin themselves", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("private")}`;
    await origin.route(path, { body: "mine {hit}", delayMs: 100, headers: { "cache-control": "private" } });
    const responses = await Promise.all(Array.from({ length: 5 }, () => send(`http://${host}${path}`)));
    const bodies = await Promise.all(responses.map((response) => response.text()));
    expect(new Set(bodies).size).toBe(5);
    expect(responses.some((r) => r.headers.get("cache-status")?.includes("Tiercel-Shield; fwd=miss"))).toBe(true);
    const later = await send(`http://${host}${path}`);
    expect(later.headers.get("cache-status")).toContain("Tiercel-Shield; detail=hit-for-pass");
    expect(await later.text()).toBe("mine 6");
    const counters = await (await shieldOf(host, path)).counters();
    expect(counters.fills).toBe(1);
    expect(counters.passes).toBe(1);
    expect((await origin.hits(path)).hits).toBe(6);
  });

  it("honours the site's global admission: second-request and size bounds, decided by the shield for every data center", async () => {
    const { host } = await newSite({ cache: { globalAdmission: "second-request" } });
    const path = `/${unique("admitted")}.css`;
    await origin.route(path, { body: "x".repeat(2048), headers: { "cache-control": "max-age=300" } });
    const kvOnly = platformFor(env).tiers.filter((tier) => tier.name !== "edge");
    // The first fill anywhere: streamed and kept in this data center's edge, the global tier left alone.
    const first = await fetchChecked(`http://${host}${path}`);
    expect(first.cacheStatus).toMatch(/^Tiercel-Shield; fwd=miss; fwd-status=200; detail=not-admitted, /);
    expect(first.received).toBe(2048);
    let counters = await (await shieldOf(host, path)).counters();
    expect(counters).toMatchObject({ fills: 1, globalPuts: 0 });
    expect((await fetchChecked(`http://${host}${path}`)).cacheStatus).toMatch(/^Tiercel-Edge; hit/);
    // Another data center (no edge copy) misses the global tier too: the key's second fill, which is admitted.
    const second = await fetchChecked(`http://${host}${path}`, { tiers: kvOnly });
    expect(second.cacheStatus).toMatch(
      /^Tiercel-Shield; fwd=miss; fwd-status=200; detail=storing, Tiercel-KV; fwd=miss/,
    );
    counters = await (await shieldOf(host, path)).counters();
    expect(counters).toMatchObject({ fills: 2, globalPuts: 1 });
    // A third finds it there, with no shield call.
    const { shield, calls } = countingShield();
    const third = await fetchChecked(`http://${host}${path}`, { tiers: kvOnly, shield });
    expect(third.cacheStatus).toMatch(/^Tiercel-KV; hit/);
    expect(calls()).toBe(0);
    expect((await origin.hits(path)).hits).toBe(2);

    // A body larger than globalMaxBytes is never written to the global tier, whichever fill it is.
    const bounded = await newSite({ cache: { globalMaxBytes: 1000 } });
    const big = `/${unique("bounded")}.css`;
    await origin.route(big, { body: "y".repeat(1500), headers: { "cache-control": "max-age=300" } });
    for (let i = 0; i < 2; i++) {
      const answer = await fetchChecked(`http://${bounded.host}${big}`, { tiers: kvOnly });
      expect(answer.received).toBe(1500);
      expect(answer.cacheStatus).toMatch(/^Tiercel-Shield; fwd=miss; fwd-status=200; detail=not-admitted/);
    }
    expect(await (await shieldOf(bounded.host, big)).counters()).toMatchObject({ fills: 2, globalPuts: 0 });
  });

  it("answers a site with the shield turned off from this data center alone", async () => {
    const { host } = await newSite({ cache: { shield: false } });
    const path = `/${unique("unshielded")}`;
    const { shield, calls } = countingShield();
    const first = await send(`http://${host}${path}`, undefined, { shield });
    expect(await first.text()).toBe(`GET ${path} #1`);
    expect(first.headers.get("cache-status")).not.toContain("Tiercel-Shield");
    expect(calls()).toBe(0);
    expect((await (await shieldOf(host, path)).counters()).fills).toBe(0);
  });

  it("still answers when the shield fails, or gives no answer within its bound", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const failing: ShieldBinding = {
      timeoutMs: 5_000,
      fill: async () => {
        throw new Error("shield unreachable");
      },
      invalidated: async () => {
        throw new Error("shield unreachable");
      },
    };
    const path = `/${unique("degraded")}`;
    const { tiers, puts } = countingTiers();
    const answered = await send(`http://${host}${path}`, undefined, { shield: failing, tiers });
    expect(answered.status).toBe(200);
    expect(await answered.text()).toBe(`GET ${path} #1`);
    expect(answered.headers.get("cache-status")).toMatch(/^Tiercel-Shield; detail=shield-error, Tiercel-KV; fwd=miss/);
    // Without the shield this data center writes the global tier itself.
    expect(puts()).toBe(1);

    const hung: ShieldBinding = {
      timeoutMs: 200,
      fill: () => new Promise(() => {}),
      invalidated: () => new Promise(() => {}),
    };
    const slowPath = `/${unique("degraded-slow")}`;
    const slow = await send(`http://${host}${slowPath}`, undefined, { shield: hung });
    expect(slow.status).toBe(200);
    expect(await slow.text()).toBe(`GET ${slowPath} #1`);
    expect(slow.headers.get("cache-status")).toContain("Tiercel-Shield; detail=shield-timeout");
  });

  it("hands waiters the origin's error when it cannot be reached, and is not left holding the key", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("down")}`;
    await origin.route(path, { hangUp: true });
    const responses = await Promise.all(Array.from({ length: 3 }, () => send(`http://${host}${path}`)));
    for (const response of responses) expect(response.status).toBe(502);
    await origin.route(path, { body: "back", headers: { "cache-control": "max-age=60" } });
    const back = await send(`http://${host}${path}`);
    expect(await back.text()).toBe("back");
    expect(back.headers.get("cache-status")).toMatch(/^Tiercel-Shield; fwd=miss; fwd-status=200/);
  });
});

describe("origin shield: a request that arrives after the fill passed its head", () => {
  it("gets every byte (the head from memory, the rest from the global tier's copy once stored), with one origin fetch", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("late")}.bin`;
    const size = 40 * 1024 * 1024;
    // 40 MiB at 1 MiB per 100 ms: about 4 s, so the 16 MiB head is gone after about 1.6 s.
    await origin.route(path, {
      size,
      paced: { bytes: 1024 * 1024, everyMs: 100 },
      headers: { "cache-control": "max-age=300" },
    });
    const expected = await patternDigest(size);
    // The late request starts once the first client has read 24 MiB: the fill is a window past its 16 MiB head, and
    // not yet done (a timer would not do: the test's own timers wait while it reads a body).
    let passedHead!: () => void;
    const pastHead = new Promise<void>((resolve) => {
      passedHead = resolve;
    });
    const first = fetchChecked(`http://${host}${path}`, undefined, (received) => {
      if (received >= 24 * 1024 * 1024) passedHead();
    });
    await pastHead;
    // Another location, whose lookups miss (its reads can lag behind a busy local workerd until the fill is
    // stored; the shield reads the stored copy itself).
    const { shield, calls } = countingShield();
    const late = await fetchChecked(`http://${host}${path}`, { tiers: blindTiers(), shield });
    expect(calls()).toBe(1);
    expect(late.received).toBe(size);
    expect(late.digest).toBe(expected);
    expect((await first).digest).toBe(expected);
    expect((await origin.hits(path)).hits).toBe(1);
    expect(late.cacheStatus).toMatch(/^Tiercel-Shield; fwd=miss; fwd-status=200; collapsed/);
    // It read the head from the shield's memory, and the rest from the stored copy, a range at a time.
    expect(await (await shieldOf(host, path)).counters()).toMatchObject({ fills: 1, joined: 1, detached: 1 });
  }, 60_000);
});

describe("origin shield: a late reader of a fill whose origin cuts the body short", () => {
  it("never gets a whole-looking body: it cannot resume from a copy that was never stored", async () => {
    const { host } = await newSite({ cache: { shield: true } });
    const path = `/${unique("late-cut")}.bin`;
    const size = 40 * 1024 * 1024;
    // 1 MiB per 100 ms, cut after 32 MiB: past the 16 MiB head when the late request comes, and never whole.
    await origin.route(path, {
      size,
      paced: { bytes: 1024 * 1024, everyMs: 100 },
      truncateAfter: 32 * 1024 * 1024,
      headers: { "cache-control": "max-age=300" },
    });
    let passedHead!: () => void;
    const pastHead = new Promise<void>((resolve) => {
      passedHead = resolve;
    });
    const broken = (outcome: Awaited<ReturnType<typeof fetchChecked>> | Error) =>
      outcome instanceof Error || outcome.received < size;
    const first = fetchChecked(`http://${host}${path}`, undefined, (received) => {
      if (received >= 24 * 1024 * 1024) passedHead();
    }).catch((error: Error) => error);
    await Promise.race([pastHead, first]);
    const late = await fetchChecked(`http://${host}${path}`, {
      tiers: blindTiers(),
      shield: countingShield().shield,
    }).catch((error: Error) => error);
    expect(broken(late)).toBe(true);
    expect(broken(await first)).toBe(true);
    // The late request joined the shield's one fill (no fill of its own there).
    expect(await (await shieldOf(host, path)).counters()).toMatchObject({ fills: 1, joined: 1 });
    // Not yet explained: a second origin request is seen here (at most one); it breaks the same way.
    expect((await origin.hits(path)).hits).toBeLessThanOrEqual(2);
    // Nothing of it is in the global tier.
    const key = await cacheKeyOf(host, path);
    for (const tier of platformFor(env).tiers.filter((t) => t.name !== "edge")) expect(await tier.get(key)).toBeNull();
  }, 60_000);
});

describe("origin shield: invalidations and the copy of a recent fill", () => {
  /** Waits (bounded) until the shield of the URL has written the global tier. */
  async function stored(host: string, path: string): Promise<void> {
    const shield = await shieldOf(host, path);
    for (let i = 0; i < 100 && (await shield.counters()).globalPuts < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** This data center's tiers with global deletes that the shield's location does not see yet (KV). */
  function deletesUnseen(): Tier[] {
    return platformFor(env).tiers.map(
      (tier): Tier =>
        tier.name === "edge"
          ? tier
          : {
              name: tier.name,
              get: (key, range) => tier.get(key, range),
              put: (...args) => tier.put(...args),
              delete: async () => {},
            },
    );
  }

  for (const told of [true, false]) {
    it(`answers a GET after a PUT with a new fill, never the copy from before it (${told ? "the shield told" : "the shield not told: the data center says so"})`, async () => {
      const { host } = await newSite({ cache: { shield: true } });
      const path = `/${unique("invalidated")}.txt`;
      const url = `http://${host}${path}`;
      await origin.route(path, { body: "version {hit}", headers: { "cache-control": "max-age=300" } });
      expect(await (await send(url)).text()).toBe("version 1");
      await stored(host, path);
      const real = platformFor(env).shield as ShieldBinding;
      const shield: ShieldBinding = told
        ? real
        : { ...real, invalidated: async () => Promise.reject(new Error("shield unreachable")) };
      const put = await send(url, { method: "PUT", body: "new" }, { tiers: deletesUnseen(), shield });
      expect(put.status).toBe(200);
      await origin.route(path, { body: "version 2", headers: { "cache-control": "max-age=300" } });
      // The next GET sees no entry anywhere (its delete is its own); with the shield told, from any isolate.
      const invalidated = told ? new Map<string, number>() : platformFor(env).invalidated;
      const after = await send(url, undefined, { tiers: blindTiers(), shield: real, invalidated });
      expect(after.headers.get("cache-status")).not.toContain("stored-copy");
      expect(await after.text()).toBe("version 2");
    });
  }

  it("drops what a stored fill still holds once it is over, and gives its memory back; a slow reader resumes", async () => {
    const MiB = 1024 * 1024;
    const { host, id } = await newSite({ cache: { shield: true } });
    const path = `/${unique("slow-head")}.bin`;
    const size = 8 * MiB;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
    const expected = await patternDigest(size);
    const platform = shieldPlatformFor(env);
    const url = `http://${host}${path}`;
    const key = await cacheKeyOf(host, path);
    const core = createShield(platform, { ...SHIELD_DEFAULTS, windowBytes: 1 * MiB, headBytes: 8 * MiB, keepMs: 10 });
    const work: Promise<unknown>[] = [];
    const before = isolateBudget.held;
    const answer = await core.fill({ siteId: id, url, headers: [["host", host]], startedAt: Date.now(), key }, (p) =>
      work.push(p),
    );
    if (answer.kind !== "fill") throw new Error(`answer ${answer.kind}`);
    expect(isolateBudget.held - before).toBeGreaterThanOrEqual(8 * MiB);
    // A slow client: one chunk, then nothing while the fill streams, is stored and keepMs passes.
    const reader = answer.body.getReader();
    const digest = new crypto.DigestStream("SHA-256");
    const writer = digest.getWriter();
    const first = (await reader.read()).value as Uint8Array;
    await writer.write(first);
    let received = first.byteLength;
    await answer.stored();
    for (let i = 0; i < 10; i++) await Promise.allSettled(work);
    expect(isolateBudget.held - before).toBeLessThan(1 * MiB);
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      received += next.value.byteLength;
      await writer.write(next.value);
    }
    await writer.close();
    expect(received).toBe(size);
    expect(hex(await digest.digest)).toBe(expected);
    // The rest came from the stored copy.
    expect(core.counters.detached).toBe(1);
  });
});
