import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { type Deps, respond } from "../../src/core/pipeline";
import type { Tier } from "../../src/core/tier";
import { edgeTier } from "../../src/tiers/edge";
import { kvTier } from "../../src/tiers/kv";
import { memoryTier } from "../../src/tiers/memory";
import { platformFor } from "../../src/worker";
import { newSite, origin, send, unique } from "../support/harness";

/**
 * A tier whose streamed writes are slow: each chunk of a streamed body is passed to the real tier `delayMs`
 * after it was read. Counts the bytes it has read, and how its puts ended.
 */
function slowTier(inner: Tier, delayMs: number) {
  const seen = { bytes: 0, puts: [] as ("stored" | string)[] };
  const tier: Tier = {
    ...inner,
    async put(key, entry, body, retention, unknown, place) {
      let written = body;
      if (body instanceof ReadableStream) {
        const reader = body.getReader();
        written = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { done, value } = await reader.read();
            if (done) return controller.close();
            seen.bytes += value.byteLength;
            await new Promise((resolve) => setTimeout(resolve, delayMs));
            controller.enqueue(value);
          },
          cancel: (reason) => reader.cancel(reason),
        });
      }
      try {
        await inner.put(key, entry, written, retention, unknown, place);
        seen.puts.push("stored");
      } catch (error) {
        seen.puts.push(error instanceof Error ? error.name : String(error));
        throw error;
      }
    },
  };
  return { tier, seen };
}

/**
 * Sends through the pipeline with `overrides` (no shield: this data center fills itself) and reads the
 * answer; says what the slow tier had read once the client had the whole body, then waits for the stores.
 */
async function sendTimed(url: string, overrides: Partial<Deps>, seen: { bytes: number }, init?: RequestInit) {
  const ctx = createExecutionContext();
  const deps = {
    ...platformFor(env),
    shield: undefined,
    ...overrides,
    waitUntil: (w: Promise<unknown>) => ctx.waitUntil(w),
  };
  const response = await respond(new Request(url, init), deps);
  const body = await response.text();
  const storeHadRead = seen.bytes;
  await waitOnExecutionContext(ctx);
  return { response, body, storeHadRead };
}

/** Bytes the tiers answered for a site so far (the stats' `bytes`: a ranged read counts the range). */
function bytesRead(id: string): number {
  return platformFor(env).stats.snapshot(id)[id]?.bytes ?? 0;
}

const digits = (start: number, length: number) => Array.from({ length }, (_, i) => String((start + i) % 10)).join("");

describe("large media (issue 15)", () => {
  it("answers a tail range of a large stored object from R2 reading only the tail, then refills the edge", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("video")}.mp4`;
    const size = 12 * 1024 * 1024 + 3;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300", "content-type": "video/mp4" } });
    await send(`http://${host}${path}`);
    const key = await cacheKey({ siteId: id, path, query: "" });
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(key);

    const before = bytesRead(id);
    const tail = await send(`http://${host}${path}`, { headers: { range: "bytes=-1000" } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get("content-range")).toBe(`bytes ${size - 1000}-${size - 1}/${size}`);
    expect(tail.headers.get("cache-status")).toMatch(
      /^Tiercel-KV; hit; ttl=\d+, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing$/,
    );
    expect(new TextDecoder().decode(await tail.arrayBuffer())).toBe(digits(size - 1000, 1000));
    expect(bytesRead(id) - before).toBe(1000);

    // The whole object was read once in the background into the edge: the next range is an edge hit.
    const middle = await send(`http://${host}${path}`, { headers: { range: "bytes=5000000-5000009" } });
    expect(middle.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(new TextDecoder().decode(await middle.arrayBuffer())).toBe(digits(5_000_000, 10));
    expect((await origin.hits(path)).hits).toBe(1);
  }, 60_000);

  it("keeps a key's first fill out of the global tier under second-request admission", async () => {
    const { host, id } = await newSite({ cache: { globalAdmission: "second-request" } });
    const path = `/${unique("once")}.txt`;
    await origin.route(path, { body: "asked for once", headers: { "cache-control": "max-age=300" } });
    const key = await cacheKey({ siteId: id, path, query: "" });
    await send(`http://${host}${path}`);
    expect(await env.CACHE_KV.get(`c:${key}`)).toBeNull();

    // Asked again after this data center lost it: now it goes to the global tier too.
    await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(key);
    await send(`http://${host}${path}`);
    expect(await env.CACHE_KV.get(`c:${key}`)).toBe("asked for once");
    expect((await origin.hits(path)).hits).toBe(2);
  });

  describe("a store slower than the client", () => {
    it("is given a bounded look-ahead and gives up past it, never the client; a tier that keeps up still stores", async () => {
      const { host, id } = await newSite();
      const path = `/${unique("slow-store")}.bin`;
      const size = 6 * 1024 * 1024; // past the 4 MiB buffer: streamed to the tiers
      await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
      const slow = slowTier(kvTier(env.CACHE_KV), 100);
      const logged: { event: string; fields: Record<string, unknown> }[] = [];
      const overrides = {
        // A tier that keeps up whatever the machine's load: memory.
        tiers: [memoryTier({ now: Date.now }), slow.tier],
        storeLookAheadBytes: 2 * 1024 * 1024,
        log: (event: string, fields: Record<string, unknown>) => void logged.push({ event, fields }),
      };
      const first = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(first.response.status).toBe(200);
      expect(first.body).toBe(digits(0, size));
      // The client had all 6 MiB while the slow store had read well under half of it: it did not wait for it.
      expect(first.storeHadRead).toBeLessThan(size / 2);
      expect(slow.seen.puts).toEqual(["FellBehindError"]);
      expect(logged.some((l) => l.event === "store.skipped" && l.fields.reason === "fell-behind")).toBe(true);
      expect(await env.CACHE_KV.get(`c:${await cacheKey({ siteId: id, path, query: "" })}`)).toBeNull();

      // The tier that kept up stored it; the slow tier stored nothing.
      const second = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(second.response.headers.get("cache-status")).toMatch(/^Tiercel-Memory; hit/);
      expect(second.body).toBe(digits(0, size));
      expect((await origin.hits(path)).hits).toBe(1);
    }, 60_000);

    it("stores a key whose store fell behind at the store's pace on its next fill, so it is not skipped forever", async () => {
      const { host } = await newSite();
      const path = `/${unique("slow-twice")}.bin`;
      const size = 6 * 1024 * 1024;
      await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
      const slow = slowTier(kvTier(env.CACHE_KV), 30);
      const overrides = { tiers: [slow.tier], storeLookAheadBytes: 1024 * 1024, log: () => {} };
      const first = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(first.body).toBe(digits(0, size));
      expect(slow.seen.puts).toEqual(["FellBehindError"]);
      const second = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(second.body).toBe(digits(0, size));
      expect(slow.seen.puts).toEqual(["FellBehindError", "stored"]);
      const third = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(third.response.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      expect((await origin.hits(path)).hits).toBe(2);
    }, 60_000);

    it("is stored after the client is done when it stays within its look-ahead", async () => {
      const { host } = await newSite();
      const path = `/${unique("slow-ok")}.bin`;
      const size = 5 * 1024 * 1024;
      await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
      const slow = slowTier(kvTier(env.CACHE_KV), 5);
      const overrides = { tiers: [slow.tier], storeLookAheadBytes: 8 * 1024 * 1024 };
      const first = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(first.body).toBe(digits(0, size));
      expect(first.storeHadRead).toBeLessThan(size);
      expect(slow.seen.puts).toEqual(["stored"]);
      const second = await sendTimed(`http://${host}${path}`, overrides, slow.seen);
      expect(second.response.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      expect(second.body).toBe(digits(0, size));
    }, 60_000);
  });

  // With the shield (the default), every range of a cold object asks the shield, which fetches the origin once
  // and streams to each; without it, the isolate's own fill is joined (fill.ts, joinFill). Both: one download.
  describe("ranges of a cold object while it fills", () => {
    it.each([
      { shield: true, joins: "through the shield" },
      { shield: false, joins: "by joining the isolate's fill" },
    ])(
      "costs one origin download for 3 players asking 8 sequential ranges each at once, $joins, bytes checked",
      async ({ shield }) => {
        const { host } = await newSite({ cache: { shield } });
        const path = `/${unique("player")}.mp4`;
        const size = 12 * 1024 * 1024;
        // A distant origin: about a second for the whole body, so the players ask while it fills.
        await origin.route(path, {
          size,
          paced: { bytes: 256 * 1024, everyMs: 20 },
          headers: { "cache-control": "max-age=300", "content-type": "text/plain" },
        });
        const step = size / 8;
        const statuses: string[] = [];
        const player = async () => {
          for (let i = 0; i < 8; i++) {
            const start = i * step + 17;
            const response = await send(`http://${host}${path}`, {
              headers: { range: `bytes=${start}-${start + 65_535}` },
            });
            expect(response.status).toBe(206);
            expect(response.headers.get("content-range")).toBe(`bytes ${start}-${start + 65_535}/${size}`);
            expect(await response.text()).toBe(digits(start, 65_536));
            statuses.push(response.headers.get("cache-status") ?? "");
          }
        };
        await Promise.all([player(), player(), player()]);
        expect((await origin.hits(path)).hits).toBe(1);
        // Without the shield, some joined the isolate's fill as it streamed (the rest were hits once it was stored).
        if (!shield) expect(statuses.some((status) => status.includes("detail=joined-fill"))).toBe(true);
      },
      60_000,
    );

    it("sends a request wanting more than a joiner may hold to the stored copy, not to the origin (no shield)", async () => {
      const { host } = await newSite({ cache: { shield: false } });
      const path = `/${unique("whole")}.bin`;
      const size = 10 * 1024 * 1024;
      await origin.route(path, {
        size,
        paced: { bytes: 256 * 1024, everyMs: 40 },
        headers: { "cache-control": "max-age=300", "content-type": "text/plain" },
      });
      const first = send(`http://${host}${path}`, { headers: { range: "bytes=0-99" } });
      // Let the leader's fill begin (it takes about 1.6 s) before the whole-body request arrives.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const whole = await send(`http://${host}${path}`);
      expect(whole.status).toBe(200);
      expect(whole.headers.get("cache-status")).toMatch(/hit.*detail=joined-fill/);
      expect(await whole.text()).toBe(digits(0, size));
      expect(await (await first).text()).toBe(digits(0, 100));
      expect((await origin.hits(path)).hits).toBe(1);
    }, 60_000);
  });
});
