import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { StoredEntry } from "../../src/core/entry";
import { KV_MAX_TTL, KV_METADATA_LIMIT, kvTier } from "../../src/tiers/kv";
import {
  bytesOf,
  checkedReads,
  describeTierContract,
  entryFor,
  patternBytes,
  sameBytes,
  uniqueKey,
  uniqueRunName,
  utf8,
} from "./tier-contract";

/** Every KV key this file writes starts here, so runs never read each other's data. */
const prefix = `${uniqueRunName("tier-contract-kv")}:`;

describeTierContract("kv", () => kvTier(env.CACHE_KV, { prefix }));

/** The same contract with bodies over 64 KiB split into chunks (the default only chunks past 16 MiB). */
const chunkSize = 64 * 1024;
const chunkedPrefix = `${uniqueRunName("tier-contract-kv-chunked")}:`;
describeTierContract("kv (chunked)", () => kvTier(env.CACHE_KV, { prefix: chunkedPrefix, chunkSize }));

/** The raw KV record behind `key`, read past the tier. */
async function rawRecord(keyPrefix: string, key: string): Promise<{ value: Uint8Array | null; metadata: unknown }> {
  const { value, metadata } = await env.CACHE_KV.getWithMetadata(keyPrefix + key, "arrayBuffer");
  return { value: value === null ? null : new Uint8Array(value), metadata };
}

const raw = (key: string) => rawRecord(prefix, key);

/** Size of the inline metadata KV would be asked to store for `entry`. */
function inlineSize(entry: StoredEntry): number {
  return utf8(JSON.stringify({ e: entry })).byteLength;
}

/** An entry for `body` padded with an `x-pad` header so that its inline metadata is exactly `size` bytes. */
async function entryWithInlineSize(body: Uint8Array, size: number, padChar = "p"): Promise<StoredEntry> {
  const unpadded = await entryFor(body, { headers: [["x-pad", ""]] });
  const room = size - inlineSize(unpadded);
  const charBytes = utf8(padChar).byteLength;
  const pad = padChar.repeat(Math.floor(room / charBytes)) + "q".repeat(room % charBytes);
  const entry = await entryFor(body, { headers: [["x-pad", pad]] });
  expect(inlineSize(entry)).toBe(size);
  return entry;
}

/** How a read ended: a record, a miss, or an error (the pipeline skips a tier that throws). */
async function outcome(read: Promise<unknown>): Promise<"hit" | "miss" | "threw"> {
  try {
    return (await read) === null ? "miss" : "hit";
  } catch {
    return "threw";
  }
}

describe("kv tier", () => {
  const tier = kvTier(env.CACHE_KV, { prefix });

  it("is named kv", () => {
    expect(tier.name).toBe("kv");
  });

  it("stores a small record in metadata and the body, untouched, as the value", async () => {
    const key = uniqueKey();
    const body = patternBytes(777);
    const entry = await entryFor(body, { etag: '"small"', tags: ["a", "b"] });
    expect(inlineSize(entry)).toBeLessThanOrEqual(KV_METADATA_LIMIT);
    await tier.put(key, entry, body, 60);

    const stored = await raw(key);
    expect(stored.metadata).toStrictEqual({ e: entry });
    expect(stored.value).toStrictEqual(body);
  });

  it("frames a large record in front of the body and says only its length in metadata", async () => {
    const key = uniqueKey();
    const body = patternBytes(4321);
    const entry = await entryFor(body, { headers: [["x-long", "café ☕ ".repeat(300)]], tags: ["big"] });
    const frame = utf8(JSON.stringify(entry));
    await tier.put(key, entry, body, 60);

    const stored = await raw(key);
    expect(stored.metadata).toStrictEqual({ f: frame.byteLength });
    expect(stored.value?.byteLength).toBe(frame.byteLength + body.byteLength);
    const storedFrame = stored.value?.subarray(0, frame.byteLength);
    expect(JSON.parse(new TextDecoder().decode(storedFrame))).toStrictEqual(entry);
    expect(stored.value?.subarray(frame.byteLength)).toStrictEqual(body);
  });

  it("frames a large record with an empty body as the frame alone", async () => {
    const key = uniqueKey();
    const body = new Uint8Array(0);
    const entry = await entryFor(body, { headers: [["x-long", "z".repeat(2000)]] });
    await tier.put(key, entry, body, 60);

    const stored = await raw(key);
    expect(stored.metadata).toStrictEqual({ f: utf8(JSON.stringify(entry)).byteLength });
    const found = await tier.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(await bytesOf(found?.body)).toStrictEqual(body);
  });

  it("keeps a record of exactly 1024 metadata bytes inline, and frames one of 1025", async () => {
    const body = utf8("boundary");
    const atLimit = await entryWithInlineSize(body, KV_METADATA_LIMIT);
    const overLimit = await entryWithInlineSize(body, KV_METADATA_LIMIT + 1);
    const [inlineKey, framedKey] = [uniqueKey(), uniqueKey()];
    await tier.put(inlineKey, atLimit, body, 60);
    await tier.put(framedKey, overLimit, body, 60);

    expect((await raw(inlineKey)).metadata).toStrictEqual({ e: atLimit });
    expect((await raw(framedKey)).metadata).toStrictEqual({ f: utf8(JSON.stringify(overLimit)).byteLength });
    for (const [key, entry] of [
      [inlineKey, atLimit],
      [framedKey, overLimit],
    ] as const) {
      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    }
  });

  it("measures the metadata limit in UTF-8 bytes, not characters", async () => {
    const body = utf8("multi-byte");
    // Under 1024 UTF-16 code units, but well over 1024 bytes once encoded: must be framed, not refused.
    const entry = await entryWithInlineSize(body, 1400, "☕");
    expect(JSON.stringify({ e: entry }).length).toBeLessThanOrEqual(KV_METADATA_LIMIT);
    const key = uniqueKey();
    await tier.put(key, entry, body, 60);

    expect((await raw(key)).metadata).toStrictEqual({ f: utf8(JSON.stringify(entry)).byteLength });
    const found = await tier.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(await bytesOf(found?.body)).toStrictEqual(body);
  });

  it("reads back a frame far bigger than one stream chunk, with the body after it intact", async () => {
    const key = uniqueKey();
    const body = patternBytes(300_001);
    const entry = await entryFor(body, {
      headers: Array.from({ length: 400 }, (_, i): [string, string] => [`x-h-${i}`, `${i}:${"v".repeat(500)}`]),
    });
    expect(utf8(JSON.stringify(entry)).byteLength).toBeGreaterThan(200_000);
    await tier.put(key, entry, body, 60);

    const found = await tier.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
  });

  // KV computes an expiration as its clock's whole seconds plus the TTL, at some instant during the put: so it
  // lies between the whole seconds read just before and just after, plus the TTL the tier asked for.
  it("accepts a retention under KV's 60-second minimum and keeps the entry at least that long", async () => {
    const key = uniqueKey();
    const body = utf8("short retention");
    const entry = await entryFor(body);
    const before = Math.floor(Date.now() / 1000);
    await tier.put(key, entry, body, 1);
    const after = Math.floor(Date.now() / 1000);

    const listed = await env.CACHE_KV.list({ prefix: prefix + key });
    expect(listed.keys.map((k) => k.name)).toStrictEqual([prefix + key]);
    const expiration = listed.keys[0]?.expiration ?? Number.NaN;
    expect(expiration).toBeGreaterThanOrEqual(before + 60);
    expect(expiration).toBeLessThanOrEqual(after + 60);
    expect((await tier.get(key))?.entry).toStrictEqual(entry);
  });

  it("asks KV to keep an entry for its retention, rounded up", async () => {
    const key = uniqueKey();
    const body = utf8("an hour");
    const before = Math.floor(Date.now() / 1000);
    await tier.put(key, await entryFor(body), body, 3600.2);
    const after = Math.floor(Date.now() / 1000);

    const listed = await env.CACHE_KV.list({ prefix: prefix + key });
    const expiration = listed.keys[0]?.expiration ?? Number.NaN;
    expect(expiration).toBeGreaterThanOrEqual(before + 3601);
    expect(expiration).toBeLessThanOrEqual(after + 3601);
  });

  it("stores an entry whose retention is beyond any TTL KV accepts, keeping it for the longest it allows", async () => {
    // max-age=2147483648 (RFC 9111 §1.2.2's cap) plus a day of revalidation keep: more than KV takes.
    const key = uniqueKey();
    const body = utf8("a very long lifetime");
    const entry = await entryFor(body);
    const before = Math.floor(Date.now() / 1000);
    await tier.put(key, entry, body, 2 ** 31 + 86_400);
    const after = Math.floor(Date.now() / 1000);

    expect((await tier.get(key))?.entry).toStrictEqual(entry);
    const listed = await env.CACHE_KV.list({ prefix: prefix + key });
    const expiration = listed.keys[0]?.expiration ?? Number.NaN;
    expect(expiration).toBeGreaterThanOrEqual(before + KV_MAX_TTL);
    expect(expiration).toBeLessThanOrEqual(after + KV_MAX_TTL);
  });

  it("keeps tiers with different prefixes apart in one namespace", async () => {
    const other = kvTier(env.CACHE_KV, { prefix: `${prefix}other:` });
    const key = uniqueKey();
    const body = utf8("only under the first prefix");
    const entry = await entryFor(body);
    await tier.put(key, entry, body, 60);

    expect(await other.get(key)).toBeNull();
    await other.delete(key);
    expect((await tier.get(key))?.entry).toStrictEqual(entry);
  });

  describe("with chunked bodies", () => {
    const chunked = kvTier(env.CACHE_KV, { prefix: chunkedPrefix, chunkSize });

    /** The KV keys of the chunks of `key`'s body (they live under the entry's own key). */
    async function chunkKeys(key: string): Promise<string[]> {
      const listed = await env.CACHE_KV.list({ prefix: `${chunkedPrefix}${key}/` });
      return listed.keys.map((k) => k.name);
    }

    it("splits a body over the chunk size into chunks and reads it back whole", async () => {
      const key = uniqueKey();
      const body = patternBytes(3 * chunkSize + 123);
      const entry = await entryFor(body);
      await chunked.put(key, entry, body, 60);

      expect(await chunkKeys(key)).toHaveLength(4);
      const found = await chunked.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("keeps a body of exactly the chunk size in one value, without chunks", async () => {
      const key = uniqueKey();
      const body = patternBytes(chunkSize);
      const entry = await entryFor(body);
      await chunked.put(key, entry, body, 60);

      expect(await chunkKeys(key)).toStrictEqual([]);
      expect((await rawRecord(chunkedPrefix, key)).value).toStrictEqual(body);
    });

    it("errors the body rather than ending it short when a chunk is missing", async () => {
      const key = uniqueKey();
      const body = patternBytes(2 * chunkSize + 10);
      const entry = await entryFor(body);
      await chunked.put(key, entry, body, 60);
      const keys = await chunkKeys(key);
      expect(keys).toHaveLength(3);
      await env.CACHE_KV.delete(keys[2] ?? "");

      const found = await chunked.get(key);
      if (found) await expect(bytesOf(found.body)).rejects.toThrow();
    });

    for (const [what, damage, kind] of [
      ["missing", async (chunk: string) => env.CACHE_KV.delete(chunk), "missing-part"],
      [
        "one byte short",
        async (chunk: string) => {
          const value = new Uint8Array((await env.CACHE_KV.get(chunk, "arrayBuffer")) ?? new ArrayBuffer(0));
          await env.CACHE_KV.put(chunk, value.subarray(0, -1));
        },
        "short",
      ],
      [
        "one byte longer",
        async (chunk: string) => {
          const value = new Uint8Array((await env.CACHE_KV.get(chunk, "arrayBuffer")) ?? new ArrayBuffer(0));
          await env.CACHE_KV.put(chunk, new Uint8Array([...value, 7]));
        },
        "long",
      ],
    ] as const) {
      it(`drops an entry whose middle chunk is ${what}, erroring the read`, async () => {
        const key = uniqueKey();
        const body = patternBytes(2 * chunkSize + 10);
        await chunked.put(key, await entryFor(body, { digest: "" }), body, 60);
        const keys = await chunkKeys(key);
        expect(keys).toHaveLength(3);
        await damage(keys.find((k) => k.endsWith("/1")) ?? "");

        const reads = checkedReads();
        const found = await reads.read(chunked, key);
        await expect(bytesOf(found?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage: kind });
        await reads.settled();
        expect(reads.damages()).toEqual([kind]);
        expect(await chunked.get(key)).toBeNull();
      });
    }

    it("reads a rewritten entry's new chunks, not the old ones", async () => {
      const key = uniqueKey();
      const oldBody = patternBytes(2 * chunkSize + 1);
      await chunked.put(key, await entryFor(oldBody), oldBody, 60);
      const newBody = patternBytes(3 * chunkSize + 5).reverse();
      const newEntry = await entryFor(newBody, { etag: '"new"' });
      await chunked.put(key, newEntry, newBody, 60);

      const found = await chunked.get(key);
      expect(found?.entry).toStrictEqual(newEntry);
      expect(sameBytes(await bytesOf(found?.body), newBody)).toBe(true);
    });
  });

  describe("reads a damaged value as an error and drops the entry", () => {
    const flipped = (value: Uint8Array) => {
      const copy = value.slice();
      const last = copy.byteLength - 1;
      copy[last] = (copy[last] ?? 0) ^ 0x80;
      return copy;
    };
    const damages: [string, (value: Uint8Array) => Uint8Array, string][] = [
      ["one byte short", (value) => value.subarray(0, -1), "short"],
      ["one byte longer", (value) => new Uint8Array([...value, 0]), "long"],
      ["its last byte changed (the digest catches it)", flipped, "digest"],
    ];
    for (const [layout, headers] of [
      ["in metadata", [["content-type", "text/plain"]]],
      ["framed in the value", [["x-long", "f".repeat(2000)]]],
    ] as const) {
      for (const [what, damage, kind] of damages) {
        it(`with its record ${layout}: ${what}`, async () => {
          const key = uniqueKey();
          const body = patternBytes(5000);
          await tier.put(key, await entryFor(body, { headers: headers.map(([n, v]) => [n, v]) }), body, 60);
          const stored = await raw(key);
          await env.CACHE_KV.put(prefix + key, damage(stored.value ?? new Uint8Array(0)), {
            metadata: stored.metadata,
          });

          const reads = checkedReads();
          const found = await reads.read(tier, key);
          await expect(bytesOf(found?.body)).rejects.toMatchObject({ name: "DamagedEntryError", damage: kind });
          await reads.settled();
          expect(reads.damages()).toEqual([kind]);
          expect((await raw(key)).value).toBeNull();
        });
      }
    }
  });

  describe("reads what it did not write as a miss or an error, never as a record", () => {
    /** Writes `value` with `metadata` straight into KV under the tier's key for a fresh key. */
    async function planted(value: string | Uint8Array, metadata?: unknown): Promise<string> {
      const key = uniqueKey();
      await env.CACHE_KV.put(prefix + key, value, metadata === undefined ? {} : { metadata });
      return key;
    }

    const misses: [string, unknown][] = [
      ["no metadata", undefined],
      ["metadata null", null],
      ["an empty metadata object", {}],
      ["metadata with unrelated fields", { hello: "world" }],
      ["an inline record that is not a record", { e: { hello: "world" } }],
      ["an inline record from another format version", { e: { v: 2, status: 200 } }],
      ["an inline record missing its digest", { e: { v: 1, status: 200, headers: [], vary: [], tags: [] } }],
      ["an inline record that is null", { e: null }],
      ["a frame length of zero", { f: 0 }],
      ["a negative frame length", { f: -5 }],
      ["a fractional frame length", { f: 2.5 }],
      ["a frame length that is a string", { f: "12" }],
      ["metadata that is an array", ["e", "f"]],
    ];
    for (const [what, metadata] of misses) {
      it(`misses on ${what}`, async () => {
        const key = await planted('{"v":1,"status":200}', metadata);
        expect(await outcome(tier.get(key))).toBe("miss");
      });
    }

    // `"e" in metadata` on a string or number throws a TypeError in kv.ts: an error, not a record.
    for (const [what, metadata] of [
      ["metadata that is a string", "garbage"],
      ["metadata that is a number", 42],
      ["metadata that is true", true],
    ] as const) {
      it(`does not return a record for ${what}`, async () => {
        const key = await planted("some value", metadata);
        expect(await outcome(tier.get(key))).not.toBe("hit");
      });
    }

    it("misses on a frame that is JSON but not a record", async () => {
      const frame = utf8('{"v":1,"status":200,"headers":"not an array"}');
      const key = await planted(concatBytes(frame, utf8("body")), { f: frame.byteLength });
      expect(await outcome(tier.get(key))).toBe("miss");
    });

    it("throws on a frame that is not JSON", async () => {
      const frame = utf8("{this is not json at all}");
      const key = await planted(concatBytes(frame, utf8("body")), { f: frame.byteLength });
      expect(await outcome(tier.get(key))).toBe("threw");
    });

    it("throws on a truncated frame: a value shorter than the frame length it claims", async () => {
      const key = uniqueKey();
      const body = utf8("the body");
      const entry = await entryFor(body, { headers: [["x-long", "t".repeat(2000)]] });
      await tier.put(key, entry, body, 60);
      const stored = await raw(key);
      expect(stored.metadata).toStrictEqual({ f: utf8(JSON.stringify(entry)).byteLength });

      // The same metadata, with the value cut off halfway through the frame.
      const cut = stored.value?.subarray(0, 1000) ?? new Uint8Array(0);
      await env.CACHE_KV.put(prefix + key, cut, { metadata: stored.metadata });
      expect(await outcome(tier.get(key))).toBe("threw");

      // Cut off one byte short of the frame: still an error, never a record.
      const oneShort = stored.value?.subarray(0, utf8(JSON.stringify(entry)).byteLength - 1) ?? new Uint8Array(0);
      await env.CACHE_KV.put(prefix + key, oneShort, { metadata: stored.metadata });
      expect(await outcome(tier.get(key))).toBe("threw");
    });

    it("throws on a frame length that stops short of the end of the frame", async () => {
      const key = uniqueKey();
      const body = utf8("the body");
      const entry = await entryFor(body, { headers: [["x-long", "s".repeat(2000)]] });
      await tier.put(key, entry, body, 60);
      const stored = await raw(key);
      const frameLength = utf8(JSON.stringify(entry)).byteLength;

      await env.CACHE_KV.put(prefix + key, stored.value ?? new Uint8Array(0), { metadata: { f: frameLength - 1 } });
      expect(await outcome(tier.get(key))).toBe("threw");
    });
  });
});

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
