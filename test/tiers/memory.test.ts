import { describe, expect, it } from "vitest";
import { memoryTier } from "../../src/tiers/memory";
import { bytesOf, describeTierContract, entryFor, uniqueKey, utf8 } from "./tier-contract";

describeTierContract("memory", () => memoryTier({ now: () => Date.now() }));

describe("memory tier", () => {
  it("is named memory unless told otherwise", () => {
    expect(memoryTier({ now: () => 0 }).name).toBe("memory");
    expect(memoryTier({ now: () => 0, name: "l0" }).name).toBe("l0");
  });

  it("keeps an entry for its retention and no longer (time passed in)", async () => {
    let now = 1_000_000;
    const tier = memoryTier({ now: () => now });
    const key = uniqueKey();
    const body = utf8("kept for 10 s");
    const entry = await entryFor(body);
    await tier.put(key, entry, body, 10);

    now += 9_999;
    const found = await tier.get(key);
    expect(found?.entry).toStrictEqual(entry);
    expect(await bytesOf(found?.body)).toStrictEqual(body);

    now += 1;
    expect(await tier.get(key)).toBeNull();
  });

  it("drops the oldest-written entry first when full, counting a rewrite as new", async () => {
    const tier = memoryTier({ now: () => 0, maxEntries: 2 });
    const [a, b, c] = [uniqueKey(), uniqueKey(), uniqueKey()];
    const body = utf8("x");
    const entry = await entryFor(body);
    await tier.put(a, entry, body, 60);
    await tier.put(b, entry, body, 60);
    await tier.put(a, entry, body, 60);
    await tier.put(c, entry, body, 60);

    expect(await tier.get(b)).toBeNull();
    expect(await tier.get(a)).not.toBeNull();
    expect(await tier.get(c)).not.toBeNull();
  });
});
