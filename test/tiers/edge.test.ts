import { describe, expect, it } from "vitest";
import { wasChecked } from "../../src/core/verified-body";
import { edgeTier } from "../../src/tiers/edge";
import {
  bytesOf,
  checkedReads,
  describeTierContract,
  entryFor,
  patternBytes,
  sameBytes,
  streamInPieces,
  uniqueKey,
  uniqueRunName,
  utf8,
} from "./tier-contract";

const cacheName = uniqueRunName("tier-contract-edge");

describeTierContract("edge", () => edgeTier(caches.open(cacheName)));

/** The tier's envelope for `key`: where edge.ts puts it, under a key host this test chooses. */
const keyHost = "tier-contract.test";
const envelopeUrl = (key: string) => `https://${keyHost}/v1/${key}`;

function base64Utf8(text: string): string {
  return btoa(String.fromCharCode(...utf8(text)));
}

describe("edge tier", () => {
  it("is named edge", () => {
    expect(edgeTier(caches.open(cacheName)).name).toBe("edge");
  });

  it("stores an envelope at the key URL that the Cache API keeps for the retention, rounded up", async () => {
    const cache = await caches.open(cacheName);
    const tier = edgeTier(cache, { keyHost });
    const key = uniqueKey();
    const body = utf8("envelope");
    await tier.put(key, await entryFor(body), body, 90.2);

    const envelope = await cache.match(envelopeUrl(key));
    expect(envelope).toBeDefined();
    expect(envelope?.headers.get("cache-control")).toBe("public, max-age=91");
    expect(envelope?.headers.get("x-tiercel-entry")).toBeTruthy();
    expect(await bytesOf(envelope?.body ?? undefined)).toStrictEqual(body);
  });

  it("decodes a record once per isolate: hits of one copy share its entry, frozen; a new record is decoded anew", async () => {
    const cache = await caches.open(cacheName);
    const tier = edgeTier(cache, { keyHost });
    const key = uniqueKey();
    const body = utf8("decoded once");
    const entry = await entryFor(body);
    await tier.put(key, entry, body, 60);

    const first = await tier.get(key);
    const second = await tier.get(key);
    await first?.body.cancel();
    await second?.body.cancel();
    expect(first?.entry).toStrictEqual(entry);
    expect(second?.entry).toBe(first?.entry);
    expect(Object.isFrozen(first?.entry)).toBe(true);
    expect(Object.isFrozen(first?.entry.headers[0])).toBe(true);

    const changed = { ...entry, lifetime: entry.lifetime + 1 };
    await tier.put(key, changed, body, 60);
    const third = await tier.get(key);
    await third?.body.cancel();
    expect(third?.entry).toStrictEqual(changed);
    expect(third?.entry).not.toBe(first?.entry);
  });

  it("asks the Cache API to keep an entry at least a second, however short the retention", async () => {
    const cache = await caches.open(cacheName);
    const tier = edgeTier(cache, { keyHost });
    const key = uniqueKey();
    const body = utf8("brief");
    const entry = await entryFor(body);
    await tier.put(key, entry, body, 0.2);

    const envelope = await cache.match(envelopeUrl(key));
    expect(envelope?.headers.get("cache-control")).toBe("public, max-age=1");
    await envelope?.body?.cancel();
    expect((await tier.get(key))?.entry).toStrictEqual(entry);
  });

  const corruptions: [string, Record<string, string>][] = [
    ["no entry header at all", {}],
    ["an empty entry header", { "x-tiercel-entry": "" }],
    ["an entry header that is not base64", { "x-tiercel-entry": "%%% not base64 %%%" }],
    ["base64 of something that is not JSON", { "x-tiercel-entry": base64Utf8("{not json") }],
    ["base64 of JSON that is not a record", { "x-tiercel-entry": base64Utf8('{"hello":"world"}') }],
    ["base64 of a record from another format version", { "x-tiercel-entry": base64Utf8('{"v":2,"status":200}') }],
    ["base64 of the JSON null", { "x-tiercel-entry": base64Utf8("null") }],
    ["the record as plain JSON, not base64", { "x-tiercel-entry": '{"v":1}' }],
  ];

  for (const [what, headers] of corruptions) {
    it(`reads a corrupted envelope (${what}) as a miss, and a new put repairs it`, async () => {
      const cache = await caches.open(cacheName);
      const tier = edgeTier(cache, { keyHost });
      const key = uniqueKey();
      const body = utf8("good body");
      const entry = await entryFor(body);
      // First prove the corruption lands where the tier reads: a real put is found at that URL.
      await tier.put(key, entry, body, 60);
      const real = await cache.match(envelopeUrl(key));
      expect(real).toBeDefined();
      await real?.body?.cancel();

      await cache.put(
        envelopeUrl(key),
        new Response("corrupted body", { headers: { "cache-control": "public, max-age=60", ...headers } }),
      );
      expect(await tier.get(key)).toBeNull();

      await tier.put(key, entry, body, 60);
      const repaired = await tier.get(key);
      expect(repaired?.entry).toStrictEqual(entry);
      expect(await bytesOf(repaired?.body)).toStrictEqual(body);
    });
  }

  describe("with a streamed body (stored under its own URL, the envelope pointing at it)", () => {
    /** Puts a streamed body through the tier and returns the URL its body was stored under. */
    async function putStreamed(cache: Cache, key: string, body: Uint8Array) {
      const tier = edgeTier(cache, { keyHost });
      const entry = await entryFor(body, { digest: "" });
      await tier.put(key, entry, streamInPieces(body, [1000, 5000]), 60);
      const envelope = await cache.match(envelopeUrl(key));
      const bodyId = envelope?.headers.get("x-tiercel-body");
      await envelope?.body?.cancel();
      expect(bodyId).toBeTruthy();
      return { tier, entry, bodyUrl: `${envelopeUrl(key)}/body/${bodyId}` };
    }

    it("reads the body back from where the envelope points", async () => {
      const cache = await caches.open(cacheName);
      const key = uniqueKey();
      const body = patternBytes(20_000);
      const { tier, entry, bodyUrl } = await putStreamed(cache, key, body);

      const stored = await cache.match(bodyUrl);
      expect(sameBytes(await bytesOf(stored?.body ?? undefined), body)).toBe(true);
      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("misses when the body the envelope points at is gone (evicted)", async () => {
      const cache = await caches.open(cacheName);
      const key = uniqueKey();
      const { tier, bodyUrl } = await putStreamed(cache, key, patternBytes(20_000));
      expect(await cache.delete(bodyUrl)).toBe(true);

      expect(await tier.get(key)).toBeNull();
    });

    for (const [what, size, damage] of [
      ["shorter", 19_999, "short"],
      ["longer", 20_001, "long"],
    ] as const) {
      it(`errors a read of a body ${what} than its record says, and drops the entry`, async () => {
        const cache = await caches.open(cacheName);
        const key = uniqueKey();
        const { tier, bodyUrl } = await putStreamed(cache, key, patternBytes(20_000));
        await cache.put(bodyUrl, new Response(patternBytes(size), { headers: { "cache-control": "max-age=60" } }));

        const reads = checkedReads();
        const found = await reads.read(tier, key);
        await expect(bytesOf(found?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage });
        await reads.settled();
        expect(reads.damages()).toEqual([damage]);
        expect(await tier.get(key)).toBeNull();
      });
    }
  });

  describe("reads a damaged buffered entry (body in the envelope) as an error and drops it", () => {
    /** Puts an entry, then rewrites its envelope with `damage(body)` as the body and the same record. */
    async function damaged(damage: (body: Uint8Array) => Uint8Array) {
      const cache = await caches.open(cacheName);
      const tier = edgeTier(cache, { keyHost });
      const key = uniqueKey();
      const body = patternBytes(30_000);
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);
      const envelope = await cache.match(envelopeUrl(key));
      expect(envelope).toBeDefined();
      await envelope?.body?.cancel();
      await cache.put(envelopeUrl(key), new Response(damage(body), { headers: envelope?.headers }));
      return { tier, key, body };
    }

    const flipped = (body: Uint8Array) => {
      const copy = body.slice();
      copy[12_345] = (copy[12_345] ?? 0) ^ 0x01;
      return copy;
    };
    const damages: [string, (body: Uint8Array) => Uint8Array, string][] = [
      ["one byte short", (body) => body.slice(0, -1), "short"],
      ["cut in half", (body) => body.slice(0, 15_000), "short"],
      ["one byte longer", (body) => new Uint8Array([...body, 0]), "long"],
      ["one bit flipped (the digest catches it)", flipped, "digest"],
      ["empty", () => new Uint8Array(0), "short"],
    ];
    for (const [what, damage, kind] of damages) {
      it(`${what}`, async () => {
        const { tier, key } = await damaged(damage);
        // Unchecked, the tier hands back what it holds: this is the damage a client would have been served.
        const raw = await tier.get(key);
        expect(sameBytes(await bytesOf(raw?.body), damage(patternBytes(30_000)))).toBe(true);

        const reads = checkedReads();
        const found = await reads.read(tier, key);
        await expect(bytesOf(found?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage: kind });
        await reads.settled();
        expect(reads.damages()).toEqual([kind]);
        expect(await tier.get(key)).toBeNull();
      });
    }

    it("serves an intact entry through the same check untouched, and keeps it", async () => {
      const { tier, key, body } = await damaged((b) => b);
      const reads = checkedReads();
      const found = await reads.read(tier, key);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
      await reads.settled();
      expect(reads.damages()).toEqual([]);
      expect(await tier.get(key)).not.toBeNull();
    });
  });

  describe("checks a copy on its first whole read in the isolate only (a Cache API entry never changes once written)", () => {
    /** A fresh 30,000-byte copy in the edge tier, and a reader that records what its checks found. */
    async function storedCopy() {
      const cache = await caches.open(cacheName);
      const tier = edgeTier(cache, { keyHost });
      const key = uniqueKey();
      const body = patternBytes(30_000);
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);
      return { cache, tier, key, body, entry, reads: checkedReads() };
    }

    it("hands a copy checked before on unchecked, and checks every new put's copy again, the same bytes included", async () => {
      const { tier, key, body, entry, reads } = await storedCopy();

      const first = await reads.read(tier, key);
      expect(first && wasChecked(first.body)).toBe(false);
      expect(sameBytes(await bytesOf(first?.body), body)).toBe(true);
      const second = await reads.read(tier, key);
      expect(second && wasChecked(second.body)).toBe(true);
      expect(sameBytes(await bytesOf(second?.body), body)).toBe(true);

      // A refill writes the same record and bytes again: a new copy, checked on its first read.
      await tier.put(key, entry, body, 60);
      const refilled = await reads.read(tier, key);
      expect(refilled && wasChecked(refilled.body)).toBe(false);
      expect(sameBytes(await bytesOf(refilled?.body), body)).toBe(true);
      await reads.settled();
      expect(reads.damages()).toEqual([]);
    });

    it("catches a damaged new copy of an entry whose earlier copy checked out", async () => {
      const { tier, key, body, entry, reads } = await storedCopy();
      await bytesOf((await reads.read(tier, key))?.body);
      const flipped = body.slice();
      flipped[777] = (flipped[777] ?? 0) ^ 0x04;
      await tier.put(key, entry, flipped, 60);

      const found = await reads.read(tier, key);
      await expect(bytesOf(found?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage: "digest" });
      await reads.settled();
      expect(reads.damages()).toEqual(["digest"]);
      expect(await tier.get(key)).toBeNull();
    });

    it("never takes a ranged read, or one that failed its check, for a checked copy", async () => {
      const { cache, tier, key, body, reads } = await storedCopy();
      const ranged = await reads.read(tier, key, { offset: 10, length: 100 });
      expect(ranged?.range).toStrictEqual({ start: 10, end: 109 });
      expect(await bytesOf(ranged?.body)).toStrictEqual(body.slice(10, 110));
      const whole = await reads.read(tier, key);
      expect(whole && wasChecked(whole.body)).toBe(false);
      await whole?.body.cancel();

      // Damaged on its first read (same envelope, same copy id): an error every time, never remembered.
      const envelope = await cache.match(envelopeUrl(key));
      await envelope?.body?.cancel();
      await cache.put(envelopeUrl(key), new Response(body.slice(0, -1), { headers: envelope?.headers }));
      const bad = await reads.read(tier, key);
      await expect(bytesOf(bad?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage: "short" });
    });
  });

  it("keeps tiers with different key hosts apart in one cache", async () => {
    const cache = await caches.open(cacheName);
    const one = edgeTier(cache, { keyHost: "one.tier-contract.test" });
    const two = edgeTier(cache, { keyHost: "two.tier-contract.test" });
    const key = uniqueKey();
    const body = utf8("only in one");
    const entry = await entryFor(body);
    await one.put(key, entry, body, 60);

    expect(await two.get(key)).toBeNull();
    await two.delete(key);
    const found = await one.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(await bytesOf(found?.body)).toStrictEqual(body);
  });

  it("throws on every operation when the cache cannot be opened", async () => {
    const broken = edgeTier(Promise.reject(new Error("no cache here")));
    const key = uniqueKey();
    const body = utf8("x");
    await expect(broken.get(key)).rejects.toThrow("no cache here");
    await expect(broken.put(key, await entryFor(body), body, 60)).rejects.toThrow("no cache here");
    await expect(broken.delete(key)).rejects.toThrow("no cache here");
  });

  it("declares a streamed body's length to the Cache API, and a body that breaks off late fails with its own error", async () => {
    const cache = await caches.open(cacheName);
    const puts: Request[] = [];
    const watching = new Proxy(cache, {
      get(target, name) {
        if (name === "put")
          return (request: RequestInfo, response: Response) => {
            puts.push(new Request(request, { headers: response.headers }));
            return target.put(request, response);
          };
        const value = Reflect.get(target, name);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const tier = edgeTier(watching, { keyHost });
    const body = patternBytes(300_000);
    // Whole: its copy went to the Cache API declaring its length (so it is taken in large writes).
    const key = uniqueKey();
    await tier.put(key, await entryFor(body, { digest: "" }), streamInPieces(body, [100_000, 100_000]), 60);
    expect(puts.map((put) => put.headers.get("content-length"))).toContain("300000");
    // Broken off after a pause, short of that length: the put fails with the body's error, nothing is kept.
    const late = uniqueKey();
    let sent = 0;
    const breaking = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= 200_000) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          controller.error(new Error("the origin went away"));
          return;
        }
        controller.enqueue(body.slice(sent, sent + 50_000));
        sent += 50_000;
      },
    });
    await expect(tier.put(late, await entryFor(body, { digest: "" }), breaking, 60)).rejects.toThrow(
      "the origin went away",
    );
    expect(await tier.get(late)).toBeNull();
  });

  it("fails a put whose body broke off with the body's error even when the Cache API's put rejects first", async () => {
    // Locally the Cache API takes the short copy and the tier sees the break once it returns; on Cloudflare the
    // put itself may reject with the runtime's length message. The caller is told what broke, either way.
    const cache = await caches.open(cacheName);
    const rejecting = new Proxy(cache, {
      get(target, name) {
        if (name === "put")
          return async (request: RequestInfo, response: Response) => {
            if (!new URL(request instanceof Request ? request.url : request).pathname.includes("/body/")) {
              return target.put(request, response);
            }
            await response.arrayBuffer();
            throw new Error("fixed-length pipe ended prematurely");
          };
        const value = Reflect.get(target, name);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const tier = edgeTier(rejecting, { keyHost });
    const body = patternBytes(100_000);
    const key = uniqueKey();
    const breaking = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(body.slice(0, 40_000));
        controller.error(new Error("the origin went away"));
      },
    });
    await expect(tier.put(key, await entryFor(body, { digest: "" }), breaking, 60)).rejects.toThrow(
      "the origin went away",
    );
    expect(await tier.get(key)).toBeNull();
  });
});
