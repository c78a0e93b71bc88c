import { describe, expect, it } from "vitest";
import type { StoredEntry } from "../../src/core/entry";
import { readChecked } from "../../src/core/lookup";
import type { ByteRange, Tier } from "../../src/core/tier";

/**
 * The one contract every tier implements (src/core/tier.ts), as one suite every tier runs against its
 * real local storage. Storage outlives a test, so every test works on keys no other test uses.
 */
export function describeTierContract(name: string, makeTier: () => Tier | Promise<Tier>): void {
  describe(`${name} tier: the Tier contract`, () => {
    it("has a short, non-empty name", async () => {
      const tier = await makeTier();
      expect(tier.name).toMatch(/^[a-z0-9-]+$/);
    });

    it("reads an unknown key as null", async () => {
      const tier = await makeTier();
      expect(await tier.get(uniqueKey())).toBeNull();
    });

    it("gives back an equal entry and the exact body it was given", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = utf8("hello, tiers");
      const entry = await entryFor(body, {
        headers: [
          ["content-type", "text/plain; charset=utf-8"],
          ["cache-control", "public, max-age=300"],
          ["set-cookie", "a=1; Path=/"],
          ["set-cookie", "b=2; Path=/"],
          ["vary", "accept-encoding"],
        ],
        etag: '"v1"',
        lastModified: "Sun, 06 Nov 1994 08:49:37 GMT",
        vary: ["accept-encoding"],
        tags: ["product", "product-42"],
        initialAge: 1.5,
        lifetime: 299.25,
        swr: 30,
        sie: 86_400,
        mustRevalidate: true,
        noCache: true,
      });
      await tier.put(key, entry, body, 300);

      const found = await tier.get(key);
      expect(found).not.toBeNull();
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("keeps an entry without the optional fields as it was (none appear from nowhere)", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = utf8("no validators");
      const entry = await entryFor(body, { status: 404 });
      expect(Object.hasOwn(entry, "etag") || Object.hasOwn(entry, "lastModified")).toBe(false);
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("keeps a variant index record: an entry with variants and no body", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = new Uint8Array(0);
      const entry = await entryFor(body, {
        headers: [],
        vary: ["accept-encoding", "accept-language"],
        variants: { fields: ["accept-encoding", "accept-language"], nonce: crypto.randomUUID() },
        digest: "",
      });
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("keeps an empty body", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = new Uint8Array(0);
      const entry = await entryFor(body, { status: 204 });
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found).not.toBeNull();
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("keeps a binary body with every byte value, byte for byte", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      // Every byte value, twice, in two orders: NUL, CR, LF, invalid UTF-8 and all.
      const body = new Uint8Array(512);
      for (let i = 0; i < 256; i++) {
        body[i] = i;
        body[511 - i] = i;
      }
      const entry = await entryFor(body, { headers: [["content-type", "application/octet-stream"]] });
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("keeps a body of about 1 MiB, byte for byte", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(1024 * 1024 + 7);
      const entry = await entryFor(body, { headers: [["content-type", "application/octet-stream"]] });
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("stores only the bytes of a body that is a view into a larger buffer", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const whole = patternBytes(4096);
      const body = whole.subarray(1000, 1100);
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(whole.slice(1000, 1100));
    });

    it("keeps what was put even if the caller changes its entry or body afterwards", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = utf8("original");
      const entry = await entryFor(body, { tags: ["a"] });
      const expected = structuredClone(entry);
      await tier.put(key, entry, body, 60);
      entry.headers.push(["x-late", "1"]);
      entry.tags.push("late");
      entry.status = 500;
      body.fill(0);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(expected);
      expect(await bytesOf(found?.body)).toStrictEqual(utf8("original"));
    });

    it("hands out an entry that changing does not change what the next get returns (or that cannot be changed)", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = utf8("shared?");
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);

      const first = await tier.get(key);
      // A tier may share one frozen entry between gets (the edge tier does): changing it then throws.
      try {
        first?.entry.headers.push(["x-mutated", "1"]);
        if (first) first.entry.status = 500;
      } catch (error) {
        expect(error).toBeInstanceOf(TypeError);
        expect(Object.isFrozen(first?.entry)).toBe(true);
      }
      await first?.body.cancel();

      const second = await tier.get(key);
      expect(second?.entry).toStrictEqual(entry);
      expect(await bytesOf(second?.body)).toStrictEqual(body);
    });

    it("serves the same object to every get: reading (or dropping) one body leaves the next intact", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(100_000);
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);

      const dropped = await tier.get(key);
      await dropped?.body.cancel();
      const first = await tier.get(key);
      const second = await tier.get(key);
      expect(sameBytes(await bytesOf(first?.body), body)).toBe(true);
      expect(sameBytes(await bytesOf(second?.body), body)).toBe(true);
      expect(second?.entry).toStrictEqual(entry);
    });

    it("stores a streamed body that arrives in uneven pieces, byte for byte", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(300_007);
      const entry = await entryFor(body, { digest: "" });
      await tier.put(key, entry, streamInPieces(body, [1, 4095, 65_536, 100_000, 7]), 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("stores an empty streamed body", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = new Uint8Array(0);
      const entry = await entryFor(body, { status: 204, digest: "" });
      await tier.put(key, entry, streamInPieces(body, []), 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("stores a streamed body with a record too large for KV metadata", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(70_001);
      const entry = await entryFor(body, { headers: [["x-long", "café ☕ ".repeat(400)]], digest: "" });
      await tier.put(key, entry, streamInPieces(body, [10, 30_000]), 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("rejects a put whose streamed body breaks off, and stores nothing for a new key", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(200_000);
      const entry = await entryFor(body, { digest: "" });
      // With the body's own error: what broke is what the logs say.
      await expect(tier.put(key, entry, streamThatBreaksOff(body, 150_000), 60)).rejects.toThrow("the body broke off");

      const found = await tier.get(key);
      if (found) {
        // Never a partial body: if anything comes back, its body must fail rather than end short.
        await expect(bytesOf(found.body)).rejects.toThrow();
      }
      expect(found).toBeNull();
    });

    it("stores a streamed body of unknown length with the length it counted, at every size", async () => {
      const tier = await makeTier();
      // Empty, within one piece, exactly 64 KiB (a KV chunk in the chunked suite), and several chunks.
      for (const size of [0, 1000, 65_536, 300_007]) {
        const key = uniqueKey();
        const body = patternBytes(size);
        const entry = await entryFor(body, { digest: "" });
        const given = { ...entry, length: -1 };
        await tier.put(key, given, streamInPieces(body, [1, 4095, 65_536, 100_000, 7]), 60, { maxBytes: 1_000_000 });

        const found = await tier.get(key);
        expect(found?.entry).toStrictEqual(entry);
        expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
      }
    });

    it("rejects an unknown-length put whose body breaks off, leaving nothing reachable", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(200_000);
      const entry = { ...(await entryFor(body, { digest: "" })), length: -1 };
      await expect(
        tier.put(key, entry, streamThatBreaksOff(body, 150_000), 60, { maxBytes: 1_000_000 }),
      ).rejects.toThrow();
      expect(await tier.get(key)).toBeNull();

      // A rewrite that breaks off keeps the previous entry (or nothing), never a partial one.
      const oldBody = utf8("the previous, complete body");
      const oldEntry = await entryFor(oldBody);
      await tier.put(key, oldEntry, oldBody, 60);
      await expect(
        tier.put(key, entry, streamThatBreaksOff(body, 100_000), 60, { maxBytes: 1_000_000 }),
      ).rejects.toThrow();
      const found = await tier.get(key);
      if (found !== null) {
        expect(found.entry).toStrictEqual(oldEntry);
        expect(await bytesOf(found.body)).toStrictEqual(oldBody);
      }
    });

    it("rejects an unknown-length put that runs past its bound, leaving nothing", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(200_000);
      const entry = { ...(await entryFor(body, { digest: "" })), length: -1 };
      await expect(tier.put(key, entry, streamInPieces(body, [50_000]), 60, { maxBytes: 199_999 })).rejects.toThrow();
      expect(await tier.get(key)).toBeNull();
    });

    it("ends with one whole entry when many unknown-length puts race for a key", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const bodies = Array.from({ length: 8 }, (_, i) => patternBytes(70_000 + i * 1000));
      const entries = await Promise.all(bodies.map((body) => entryFor(body, { digest: "" })));
      await Promise.all(
        bodies.map((body, i) =>
          tier.put(key, { ...(entries[i] as StoredEntry), length: -1 }, streamInPieces(body, [16_384]), 60, {
            maxBytes: 1_000_000,
          }),
        ),
      );
      const found = await tier.get(key);
      const which = entries.findIndex((entry) => entry.length === found?.entry.length);
      expect(which).toBeGreaterThanOrEqual(0);
      expect(found?.entry).toStrictEqual(entries[which]);
      expect(sameBytes(await bytesOf(found?.body), bodies[which] as Uint8Array)).toBe(true);
    });

    it("keeps the previous entry (or nothing) when a rewrite's streamed body breaks off", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const oldBody = utf8("the previous, complete body");
      const oldEntry = await entryFor(oldBody, { etag: '"previous"' });
      await tier.put(key, oldEntry, oldBody, 60);

      const newBody = patternBytes(200_000);
      const newEntry = await entryFor(newBody, { etag: '"broken"', digest: "" });
      await expect(tier.put(key, newEntry, streamThatBreaksOff(newBody, 150_000), 60)).rejects.toThrow();

      const found = await tier.get(key);
      if (found !== null) {
        expect(found.entry).toStrictEqual(oldEntry);
        expect(await bytesOf(found.body)).toStrictEqual(oldBody);
      }
    });

    it("replaces both entry and body when a key is written again", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const oldBody = patternBytes(5000);
      const oldEntry = await entryFor(oldBody, { etag: '"old"', tags: ["old"] });
      await tier.put(key, oldEntry, oldBody, 60);

      const newBody = utf8("new and shorter");
      const newEntry = await entryFor(newBody, {
        status: 203,
        headers: [["content-type", "text/plain"]],
        storedAt: oldEntry.storedAt + 1000,
        tags: ["new"],
      });
      await tier.put(key, newEntry, newBody, 120);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(newEntry);
      expect(await bytesOf(found?.body)).toStrictEqual(newBody);
    });

    it("replaces an entry too big for small-record storage with a small one, and back", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const bigBody = utf8("big record");
      const bigEntry = await entryFor(bigBody, { headers: [["x-long", "b".repeat(3000)]] });
      const smallBody = utf8("small record");
      const smallEntry = await entryFor(smallBody);

      await tier.put(key, bigEntry, bigBody, 60);
      await tier.put(key, smallEntry, smallBody, 60);
      let found = await tier.get(key);
      expect(found?.entry).toStrictEqual(smallEntry);
      expect(await bytesOf(found?.body)).toStrictEqual(smallBody);

      await tier.put(key, bigEntry, bigBody, 60);
      found = await tier.get(key);
      expect(found?.entry).toStrictEqual(bigEntry);
      expect(await bytesOf(found?.body)).toStrictEqual(bigBody);
    });

    it("forgets a deleted key, and can store it again afterwards", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = utf8("short-lived");
      const entry = await entryFor(body);
      await tier.put(key, entry, body, 60);
      expect(await tier.get(key)).not.toBeNull();

      await tier.delete(key);
      expect(await tier.get(key)).toBeNull();

      const again = utf8("back again");
      const againEntry = await entryFor(again);
      await tier.put(key, againEntry, again, 60);
      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(againEntry);
      expect(await bytesOf(found?.body)).toStrictEqual(again);
    });

    it("deletes an unknown key without throwing, twice", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      await expect(tier.delete(key)).resolves.toBeUndefined();
      await expect(tier.delete(key)).resolves.toBeUndefined();
      expect(await tier.get(key)).toBeNull();
    });

    it("round-trips a record far larger than KV's 1024-byte metadata limit with every header intact", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(3000);
      const headers: [string, string][] = [
        ["content-type", "text/html; charset=utf-8"],
        ["x-long", "L".repeat(2000)],
        ["x-utf8", "café ☕"],
        ["x-utf8-more", "Grüße, 日本語, emoji 😀, combining e\u0301"],
        ["x-quotes", '"quoted" \\ back\\slash \t tab'],
        ["link", "</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script"],
        ["set-cookie", "first=1"],
        ["set-cookie", "second=2"],
      ];
      for (let i = 0; i < 40; i++) headers.push([`x-many-${i}`, `value number ${i}`]);
      const tags = Array.from({ length: 300 }, (_, i) => `tag-${i}-${"t".repeat(i % 7)}`);
      tags.push("étiquette", "标签");
      const entry = await entryFor(body, {
        headers,
        tags,
        vary: ["accept", "accept-encoding", "accept-language"],
        etag: 'W/"ünïcode-etag"',
        lastModified: "Sun, 06 Nov 1994 08:49:37 GMT",
      });
      expect(utf8(JSON.stringify(entry)).byteLength).toBeGreaterThan(1024 * 5);
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found).not.toBeNull();
      expect(found?.entry).toStrictEqual(entry);
      expect(found?.entry.headers).toStrictEqual(headers);
      expect(await bytesOf(found?.body)).toStrictEqual(body);
    });

    it("round-trips a large record together with a ~1 MiB binary body", async () => {
      const tier = await makeTier();
      const key = uniqueKey();
      const body = patternBytes(1024 * 1024 + 3);
      const entry = await entryFor(body, {
        headers: [
          ["x-long", "☕".repeat(700)],
          ["content-type", "application/octet-stream"],
        ],
        tags: Array.from({ length: 100 }, (_, i) => `t${i}`),
      });
      await tier.put(key, entry, body, 60);

      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(entry);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
    });

    it("never lets two keys see each other's data", async () => {
      const tier = await makeTier();
      const a = uniqueKey();
      // Keys that differ only in the last character, and one that extends another.
      const b = a.slice(0, -1) + (a.endsWith("0") ? "1" : "0");
      const c = `${a}0`;
      const bodies = { a: utf8("body of a"), b: utf8("body of b"), c: patternBytes(2000) };
      const entries = {
        a: await entryFor(bodies.a, { tags: ["a"] }),
        b: await entryFor(bodies.b, { tags: ["b"], headers: [["x-long", "b".repeat(1500)]] }),
        c: await entryFor(bodies.c, { tags: ["c"], status: 201 }),
      };
      await Promise.all([
        tier.put(a, entries.a, bodies.a, 60),
        tier.put(b, entries.b, bodies.b, 60),
        tier.put(c, entries.c, bodies.c, 60),
      ]);

      for (const [key, name] of [
        [a, "a"],
        [b, "b"],
        [c, "c"],
      ] as const) {
        const found = await tier.get(key);
        expect(found?.entry).toStrictEqual(entries[name]);
        expect(await bytesOf(found?.body)).toStrictEqual(bodies[name]);
      }

      await tier.delete(b);
      expect(await tier.get(b)).toBeNull();
      const stillA = await tier.get(a);
      expect(stillA?.entry).toStrictEqual(entries.a);
      expect(await bytesOf(stillA?.body)).toStrictEqual(bodies.a);
      const stillC = await tier.get(c);
      expect(stillC?.entry).toStrictEqual(entries.c);
      expect(await bytesOf(stillC?.body)).toStrictEqual(bodies.c);
    });

    it("refreshes a record without its body, where the tier can; refuses one that is not there", async () => {
      const tier = await makeTier();
      if (!tier.refresh) return;
      const key = uniqueKey();
      const body = patternBytes(70_001);
      const entry = await entryFor(body, { etag: '"r1"' });
      expect(await tier.refresh(key, entry, 60)).toBe(false);
      expect(await tier.get(key)).toBeNull();
      await tier.put(key, entry, body, 60);

      const refreshed = { ...entry, lifetime: 900, storedAt: entry.storedAt + 5000, headers: [["x-fresh", "1"]] };
      expect(await tier.refresh(key, refreshed as StoredEntry, 900)).toBe(true);
      const found = await tier.get(key);
      expect(found?.entry).toStrictEqual(refreshed);
      expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);

      // A record for another body (another length or validator) is not the tier's to refresh.
      expect(await tier.refresh(key, { ...refreshed, length: 5 } as StoredEntry, 60)).toBe(false);
      expect(await tier.refresh(key, { ...refreshed, etag: '"r2"' } as StoredEntry, 60)).toBe(false);
      expect((await tier.get(key))?.entry).toStrictEqual(refreshed);
    });

    describe("ranged get", () => {
      const cases: { label: string; range: ByteRange; start: number; end: number }[] = [
        { label: "a range inside the body", range: { offset: 1000, length: 5000 }, start: 1000, end: 5999 },
        { label: "an open-ended range", range: { offset: 299_000 }, start: 299_000, end: 300_006 },
        { label: "the tail (bytes=-1000)", range: { suffix: 1000 }, start: 299_007, end: 300_006 },
        { label: "a suffix longer than the body", range: { suffix: 400_000 }, start: 0, end: 300_006 },
        { label: "a range running past the end", range: { offset: 300_000, length: 50 }, start: 300_000, end: 300_006 },
      ];
      for (const { label, range, start, end } of cases) {
        for (const streamed of [false, true]) {
          it(`reads only ${label} of a ${streamed ? "streamed" : "buffered"} body`, async () => {
            const tier = await makeTier();
            const key = uniqueKey();
            const body = patternBytes(300_007);
            const entry = await entryFor(body, streamed ? { digest: "" } : {});
            await tier.put(key, entry, streamed ? streamInPieces(body, [4095, 65_536]) : body, 60);

            const found = await tier.get(key, range);
            expect(found?.entry).toStrictEqual(entry);
            expect(found?.range).toStrictEqual({ start, end });
            expect(sameBytes(await bytesOf(found?.body), body.slice(start, end + 1))).toBe(true);
          });
        }
      }

      it("hands back the whole body when the range selects nothing", async () => {
        const tier = await makeTier();
        const key = uniqueKey();
        const body = patternBytes(5000);
        const entry = await entryFor(body);
        await tier.put(key, entry, body, 60);

        for (const range of [{ offset: 5000 }, { offset: 9_999_999, length: 10 }, { suffix: 0 }] as ByteRange[]) {
          const found = await tier.get(key, range);
          expect(found?.entry).toStrictEqual(entry);
          expect(found?.range).toBeUndefined();
          expect(sameBytes(await bytesOf(found?.body), body)).toBe(true);
        }
      });

      it("reads a range of an entry whose record is too large for small-record storage", async () => {
        const tier = await makeTier();
        const key = uniqueKey();
        const body = patternBytes(70_001);
        const entry = await entryFor(body, { headers: [["x-long", "café ☕ ".repeat(400)]], digest: "" });
        await tier.put(key, entry, streamInPieces(body, [10, 30_000]), 60);

        for (const [range, start, end] of [
          [{ suffix: 10 }, 69_991, 70_000],
          [{ offset: 0, length: 3 }, 0, 2],
          [{ offset: 40_000, length: 20_000 }, 40_000, 59_999],
        ] as const) {
          const found = await tier.get(key, range);
          expect(found?.entry).toStrictEqual(entry);
          expect(found?.range).toStrictEqual({ start, end });
          expect(sameBytes(await bytesOf(found?.body), body.slice(start, end + 1))).toBe(true);
        }
      });

      it("reads a range of an unknown-length body with its counted length", async () => {
        const tier = await makeTier();
        const key = uniqueKey();
        const body = patternBytes(200_003);
        const entry = await entryFor(body, { digest: "" });
        await tier.put(key, { ...entry, length: -1 }, streamInPieces(body, [7, 65_536]), 60, { maxBytes: 1_000_000 });

        const found = await tier.get(key, { suffix: 100 });
        expect(found?.entry).toStrictEqual(entry);
        expect(found?.range).toStrictEqual({ start: 199_903, end: 200_002 });
        expect(sameBytes(await bytesOf(found?.body), body.slice(199_903))).toBe(true);
      });

      it("checks a ranged read against the range's length, and misses an unknown key", async () => {
        const tier = await makeTier();
        expect(await tier.get(uniqueKey(), { suffix: 10 })).toBeNull();
        const key = uniqueKey();
        const body = patternBytes(20_000);
        await tier.put(key, await entryFor(body), body, 60);
        const reads = checkedReads();
        const found = await reads.read(tier, key, { offset: 100, length: 100 });
        expect(found?.range).toStrictEqual({ start: 100, end: 199 });
        expect(sameBytes(await bytesOf(found?.body), body.slice(100, 200))).toBe(true);
        expect(reads.damages()).toStrictEqual([]);
      });
    });
  });
}

let keyCounter = 0;

/**
 * A key no other test uses, shaped like Tiercel's own keys (64 lower-case hex digits, see
 * src/core/keys.ts): random, with a per-isolate counter mixed into the front.
 */
export function uniqueKey(): string {
  keyCounter += 1;
  const random = crypto.getRandomValues(new Uint8Array(32));
  random[0] = keyCounter & 0xff;
  random[1] = (keyCounter >> 8) & 0xff;
  return [...random].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A name unique to this run, for KV prefixes and cache names. */
export function uniqueRunName(label: string): string {
  return `${label}-${Date.now().toString(36)}-${crypto.randomUUID()}`;
}

/** A realistic record for `body`: length and digest match it; `overrides` replace any field. */
export async function entryFor(body: Uint8Array, overrides: Partial<StoredEntry> = {}): Promise<StoredEntry> {
  const storedAt = 1_767_225_600_000;
  return {
    v: 1,
    status: 200,
    headers: [["content-type", "text/plain"]],
    requestTime: storedAt - 120,
    responseTime: storedAt - 20,
    storedAt,
    initialAge: 0,
    lifetime: 300,
    swr: 0,
    sie: 0,
    mustRevalidate: false,
    noCache: false,
    vary: [],
    tags: [],
    length: body.byteLength,
    digest: await digestOf(body),
    ...overrides,
  };
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Deterministic bytes that are not a repeating short pattern (so an offset or dropped chunk shows). */
export function patternBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let state = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** A stream of `bytes` cut into pieces of the given sizes (the rest in one last piece). */
export function streamInPieces(bytes: Uint8Array, sizes: number[]): ReadableStream<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  for (const size of sizes) {
    if (offset >= bytes.byteLength) break;
    pieces.push(bytes.slice(offset, offset + size));
    offset += size;
  }
  if (offset < bytes.byteLength) pieces.push(bytes.slice(offset));
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = pieces.shift();
      if (piece) controller.enqueue(piece);
      else controller.close();
    },
  });
}

/** A stream that delivers the first `after` bytes of `bytes` in pieces, then errors, as a body that broke off. */
export function streamThatBreaksOff(bytes: Uint8Array, after: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= after) {
        controller.error(new Error("the body broke off"));
        return;
      }
      const end = Math.min(after, offset + 16_384);
      controller.enqueue(bytes.slice(offset, end));
      offset = end;
    },
  });
}

/** Reads a whole body. A missing body reads as `undefined`, so comparing it to bytes fails. */
export async function bytesOf(stream: ReadableStream<Uint8Array> | undefined): Promise<Uint8Array | undefined> {
  if (!stream) return undefined;
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Byte equality that reports cheaply on large buffers (toStrictEqual would print a megabyte diff). */
export function sameBytes(actual: Uint8Array | undefined, expected: Uint8Array): boolean {
  if (!actual || actual.byteLength !== expected.byteLength) return false;
  for (let i = 0; i < expected.byteLength; i++) if (actual[i] !== expected[i]) return false;
  return true;
}

async function digestOf(body: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  return `sha-256=:${btoa(String.fromCharCode(...digest))}:`;
}

/**
 * Reads entries the way the pipeline does (`readChecked`: the body checked against its record, a damaged
 * entry deleted in the background), with the background work and the log kept for the test to look at.
 */
export function checkedReads() {
  const pending: Promise<unknown>[] = [];
  const logged: { event: string; fields: Record<string, unknown> }[] = [];
  const deps = {
    waitUntil: (work: Promise<unknown>) => {
      pending.push(work);
    },
    log: (event: string, fields: Record<string, unknown>) => {
      logged.push({ event, fields });
    },
    tierTimeoutMs: 5_000,
  };
  return {
    read: (tier: Tier, key: string, range?: ByteRange) => readChecked(tier, key, deps, range),
    /** Waits for every background delete started so far. */
    settled: () => Promise.all(pending),
    /** The damage reports logged (`tier.damaged`), by kind. */
    damages: () => logged.filter((l) => l.event === "tier.damaged").map((l) => l.fields.damage),
  };
}
