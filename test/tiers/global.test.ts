import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Tier } from "../../src/core/tier";
import { globalTier } from "../../src/tiers/global";
import { kvTier } from "../../src/tiers/kv";
import { r2Tier } from "../../src/tiers/r2";
import {
  bytesOf,
  describeTierContract,
  entryFor,
  patternBytes,
  sameBytes,
  streamInPieces,
  uniqueKey,
  uniqueRunName,
} from "./tier-contract";

const run = uniqueRunName("tier-contract-global");
const make = () =>
  globalTier(kvTier(env.CACHE_KV, { prefix: `${run}:` }), r2Tier(env.CACHE_R2, { prefix: `${run}/`, expire: false }));

/** The global tier as the store uses it for a large body: every put placed in R2. */
function placedLarge(tier: Tier): Tier {
  return {
    ...tier,
    put: (key, entry, body, retention, unknown) => tier.put(key, entry, body, retention, unknown, "large"),
  };
}

describeTierContract("global (small bodies in kv)", make);
describeTierContract("global (large bodies in r2)", () => placedLarge(make()));

describe("global tier", () => {
  it("keeps a large body in R2 and only the record, with an empty value, in KV", async () => {
    const tier = make();
    const key = uniqueKey();
    const body = patternBytes(100_000);
    const entry = await entryFor(body, { digest: "" });
    await tier.put(key, { ...entry, length: -1 }, streamInPieces(body, [5000]), 60, { maxBytes: 1 << 20 }, "large");

    const record = await env.CACHE_KV.getWithMetadata<{ e: unknown }>(`${run}:${key}`, "arrayBuffer");
    expect(record.value?.byteLength).toBe(0);
    expect(record.metadata?.e).toStrictEqual({ ...entry, at: "r2" });
    const object = await env.CACHE_R2.head(`${run}/${key}`);
    expect(object?.size).toBe(100_000);

    const found = await tier.get(key, { suffix: 10 });
    expect(found?.entry).toStrictEqual(entry);
    expect(found?.range).toStrictEqual({ start: 99_990, end: 99_999 });
    expect(sameBytes(await bytesOf(found?.body), body.slice(99_990))).toBe(true);
  });

  it("misses, and never reads R2, when KV has no record", async () => {
    const tier = make();
    const key = uniqueKey();
    const body = patternBytes(10);
    // A body in R2 without its record (a put that failed before the record): unreachable.
    await r2Tier(env.CACHE_R2, { prefix: `${run}/` }).put(key, await entryFor(body), body, 60);
    expect(await tier.get(key)).toBeNull();
  });
});
