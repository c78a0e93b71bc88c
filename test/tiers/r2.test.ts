import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { R2_METADATA_LIMIT, r2Tier } from "../../src/tiers/r2";
import {
  bytesOf,
  describeTierContract,
  entryFor,
  patternBytes,
  sameBytes,
  streamInPieces,
  streamThatBreaksOff,
  uniqueKey,
  uniqueRunName,
} from "./tier-contract";

/** Every object this file writes starts here, so runs never read each other's data. */
const prefix = `${uniqueRunName("tier-contract-r2")}/`;

describeTierContract("r2", () => r2Tier(env.CACHE_R2, { prefix }));

describe("r2 tier", () => {
  const tier = r2Tier(env.CACHE_R2, { prefix });

  it("is named r2 and is a global tier", () => {
    expect(tier.name).toBe("r2");
    expect(tier.global).toBe(true);
  });

  it("keeps a small record in custom metadata and the body as the object, untouched", async () => {
    const key = uniqueKey();
    const body = patternBytes(777);
    const entry = await entryFor(body, { etag: '"small"' });
    await tier.put(key, entry, body, 60);
    const object = await env.CACHE_R2.get(prefix + key);
    expect(JSON.parse(object?.customMetadata?.e ?? "null")).toStrictEqual(entry);
    expect(await bytesOf(object?.body)).toStrictEqual(body);
  });

  it("frames a record too large for R2's metadata in front of the body", async () => {
    const key = uniqueKey();
    const body = patternBytes(100);
    const entry = await entryFor(body, { headers: [["x-long", "x".repeat(R2_METADATA_LIMIT)]] });
    await tier.put(key, entry, body, 60);
    const object = await env.CACHE_R2.head(prefix + key);
    const frame = Number(object?.customMetadata?.f);
    expect(frame).toBeGreaterThan(R2_METADATA_LIMIT);
    expect(object?.size).toBe(frame + 100);
  });

  it("misses an entry past its retention (R2 keeps objects until deleted)", async () => {
    let now = 1_000_000;
    const clocked = r2Tier(env.CACHE_R2, { prefix, now: () => now });
    const key = uniqueKey();
    const body = patternBytes(10);
    await clocked.put(key, await entryFor(body), body, 10);
    now += 9_999;
    expect(await clocked.get(key)).not.toBeNull();
    now += 1;
    expect(await clocked.get(key)).toBeNull();
    expect(await clocked.get(key, { suffix: 2 })).toBeNull();
  });

  it("stores a body of unknown length past one part as a multipart upload, with its counted length", async () => {
    const key = uniqueKey();
    const size = 11 * 1024 * 1024 + 5;
    const body = patternBytes(size);
    const entry = await entryFor(body, { digest: "", headers: [["x-long", "y".repeat(3000)]] });
    await tier.put(key, { ...entry, length: -1 }, streamInPieces(body, [1, 1 << 20]), 60, { maxBytes: 64 << 20 });

    const found = await tier.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    const tail = await tier.get(key, { suffix: 1000 });
    expect(tail?.range).toStrictEqual({ start: size - 1000, end: size - 1 });
    expect(sameBytes(await bytesOf(tail?.body), body.slice(size - 1000))).toBe(true);
  });

  it("leaves nothing when a multipart upload's body breaks off", async () => {
    const key = uniqueKey();
    const body = patternBytes(12 * 1024 * 1024);
    const entry = { ...(await entryFor(body, { digest: "" })), length: -1 };
    await expect(
      tier.put(key, entry, streamThatBreaksOff(body, 10 * 1024 * 1024), 60, { maxBytes: 64 << 20 }),
    ).rejects.toThrow();
    expect(await tier.get(key)).toBeNull();
  });
});
