import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, send, unique } from "../support/harness";

/**
 * Tier entries damaged on purpose in the real local tiers (issue 11 §4): whatever the damage, a hit never
 * ends as a clean, complete answer; the damaged entry is dropped from its tier and the next request refills.
 */

const EDGE_URL = (key: string) => `https://cache.tiercel.internal/v1/${key}`;
const KV_KEY = (key: string) => `c:${key}`;

type Damage = (body: Uint8Array) => Uint8Array;
const DAMAGES: [string, Damage][] = [
  ["cut one byte short", (body) => body.slice(0, -1)],
  ["one byte longer", (body) => new Uint8Array([...body, 0x21])],
  [
    "one byte changed, same length",
    (body) => {
      const copy = body.slice();
      copy[3] = (copy[3] ?? 0) ^ 0x20;
      return copy;
    },
  ],
];

/** A filled object: one origin fetch, stored in both tiers (`size`: a body of that many bytes). */
async function filled(headers: Record<string, string> = {}, size?: number) {
  const { host, id } = await newSite();
  const path = `/${unique("damage")}.txt`;
  const intact = `the intact body of ${path}`;
  const body = size === undefined ? intact : intact.padEnd(size, "0123456789abcdef");
  await origin.route(path, { body, headers: { "cache-control": "max-age=300", ...headers } });
  const first = await send(`http://${host}${path}`);
  expect(await first.text()).toBe(body);
  const key = await cacheKey({ siteId: id, path, query: "" });
  return { url: `http://${host}${path}`, path, body, key };
}

async function damageEdge(key: string, damage: Damage): Promise<void> {
  const cache = await caches.open(env.EDGE_CACHE_NAME);
  const envelope = await cache.match(EDGE_URL(key));
  if (!envelope) throw new Error("no edge entry to damage");
  const bytes = new Uint8Array(await envelope.arrayBuffer());
  await cache.put(EDGE_URL(key), new Response(damage(bytes), { headers: envelope.headers }));
}

async function damageKv(key: string, damage: Damage): Promise<void> {
  const { value, metadata } = await env.CACHE_KV.getWithMetadata(KV_KEY(key), "arrayBuffer");
  if (value === null) throw new Error("no KV entry to damage");
  await env.CACHE_KV.put(KV_KEY(key), damage(new Uint8Array(value)), { metadata });
}

async function inEdge(key: string): Promise<boolean> {
  const found = await edgeTier(caches.open(env.EDGE_CACHE_NAME)).get(key);
  await found?.body.cancel();
  return found !== null;
}

async function inKv(key: string): Promise<boolean> {
  return (await env.CACHE_KV.get(KV_KEY(key), "arrayBuffer")) !== null;
}

const bodyError = (response: Response) => (response as Response & { bodyError?: unknown }).bodyError;
// The answer is sent through the runtime's FixedLengthStream (a native stream), which passes the error on by
// its message, `DamagedEntryError: …`, not as the class itself.
const damaged = (what: RegExp = /./) => ({
  message: expect.stringMatching(new RegExp(`^DamagedEntryError: .*${what.source}`)),
});

describe("a damaged edge entry", () => {
  for (const [what, damage] of DAMAGES) {
    it(`(${what}) fails the client's read, is dropped, and the next request refills from KV`, async () => {
      const { url, path, body, key } = await filled();
      await damageEdge(key, damage);

      const hit = await send(url);
      expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(bodyError(hit)).toMatchObject(damaged());
      expect(await inEdge(key)).toBe(false);
      expect(await inKv(key)).toBe(true);

      const next = await send(url);
      expect(next.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit; ttl=\d+, Tiercel-Edge; fwd=miss/);
      expect(await next.text()).toBe(body);
      const refilled = await send(url);
      expect(refilled.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(await refilled.text()).toBe(body);
      expect((await origin.hits(path)).hits).toBe(1);
    });
  }

  for (const [what, damage] of DAMAGES) {
    it(`(${what}, a 2 MiB body, checked as it is pumped) fails the client's read and is dropped`, async () => {
      const { url, path, body, key } = await filled({}, 2 * 1024 * 1024 + 11);
      await damageEdge(key, damage);

      const hit = await send(url);
      expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(bodyError(hit)).toMatchObject(damaged());
      expect(await inEdge(key)).toBe(false);
      const next = await send(url);
      expect(next.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      const text = await next.text();
      expect(text.length).toBe(body.length);
      expect(text === body).toBe(true);
      expect((await origin.hits(path)).hits).toBe(1);
    });
  }

  it("reads a range (206) alone, checked by its length; damage past the range shows on the next whole read", async () => {
    const { url, body, key } = await filled();
    // The change is past the range: only the whole-body digest can see it, and a range is read alone.
    await damageEdge(key, (bytes) => {
      const copy = bytes.slice();
      copy[copy.byteLength - 1] = 0x2a;
      return copy;
    });

    const ranged = await send(url, { headers: { range: "bytes=0-4" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toMatch(/^bytes 0-4\//);
    expect(bodyError(ranged)).toBeUndefined();
    expect(await ranged.text()).toBe(body.slice(0, 5));
    expect(await inEdge(key)).toBe(true);

    const whole = await send(url);
    expect(bodyError(whole)).toMatchObject(damaged(/hashes to/));
    expect(await inEdge(key)).toBe(false);
  });

  it("answers HEAD and a matching conditional (304) from the record without reading the body, then GET finds it", async () => {
    const { url, body, key } = await filled({ etag: '"v1"' });
    await damageEdge(key, (bytes) => bytes.slice(0, 3));

    const head = await send(url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(body.length));
    expect(bodyError(head)).toBeUndefined();
    const notModified = await send(url, { headers: { "if-none-match": '"v1"' } });
    expect(notModified.status).toBe(304);
    expect(bodyError(notModified)).toBeUndefined();
    // Neither read the body, so neither could tell: the entry is still there.
    expect(await inEdge(key)).toBe(true);

    const get = await send(url);
    expect(bodyError(get)).toMatchObject(damaged(/ended after/));
    expect(await inEdge(key)).toBe(false);
  });

  it("never gives any of many concurrent readers a clean wrong body", async () => {
    const { url, path, body, key } = await filled();
    await damageEdge(key, (bytes) => bytes.slice(0, -2));

    const answers = await Promise.all(Array.from({ length: 12 }, () => send(url)));
    let failed = 0;
    for (const answer of answers) {
      if (bodyError(answer)) failed += 1;
      else expect(await answer.text()).toBe(body);
    }
    expect(failed).toBeGreaterThan(0);
    const again = await send(url);
    expect(await again.text()).toBe(body);
    expect((await origin.hits(path)).hits).toBe(1);
  });
});

describe("a damaged KV entry", () => {
  for (const [what, damage] of DAMAGES) {
    it(`(${what}) fails the client's read, is not copied into the edge, is dropped, and the origin refills`, async () => {
      const { url, path, body, key } = await filled();
      await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(key);
      await damageKv(key, damage);

      const hit = await send(url);
      expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      expect(bodyError(hit)).toMatchObject(damaged());
      expect(await inEdge(key)).toBe(false);
      expect(await inKv(key)).toBe(false);

      const next = await send(url);
      expect(next.headers.get("cache-status")).toContain("Tiercel-KV; fwd=miss");
      expect(await next.text()).toBe(body);
      expect((await origin.hits(path)).hits).toBe(2);
      const fromEdge = await send(url);
      expect(fromEdge.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(await fromEdge.text()).toBe(body);
    });
  }
});
