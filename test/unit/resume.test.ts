import { describe, expect, it } from "vitest";
import type { StoredEntry } from "../../src/core/entry";
import { fromStoredCopy } from "../../src/core/resume";
import type { ByteRange, CachedObject, Tier } from "../../src/core/tier";

const MiB = 1024 * 1024;
const LENGTH = 8 * MiB;

describe("fromStoredCopy: a reader that goes away while the next range is being read", () => {
  it("cancels the range body that arrives after the reader cancelled", async () => {
    const entry = { length: LENGTH, digest: "", responseTime: 1, requestTime: 1 } as unknown as StoredEntry;
    const bodies: { start: number; cancelled: boolean }[] = [];
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const tier: Tier = {
      name: "kv",
      async get(_key: string, range?: ByteRange): Promise<CachedObject | null> {
        if (!range || "suffix" in range) throw new Error("unexpected");
        const start = range.offset;
        const end = Math.min(LENGTH - 1, start + (range.length ?? LENGTH) - 1);
        if (start > 0) await gate; // the second range's get is slow
        const record = { start, cancelled: false };
        bodies.push(record);
        let at = start;
        const body = new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              if (at > end) return controller.close();
              const size = Math.min(256 * 1024, end - at + 1);
              at += size;
              controller.enqueue(new Uint8Array(size));
            },
            cancel() {
              record.cancelled = true;
            },
          },
          { highWaterMark: 0 },
        );
        return { entry, body, range: { start, end } };
      },
      put: async () => {},
      delete: async () => {},
    };
    const ctx = { waitUntil: () => {}, log: () => {}, tierTimeoutMs: 1000 };
    const stream = await fromStoredCopy([tier], "k", entry, ctx, 0);
    if (!stream) throw new Error("no stream");
    const reader = stream.getReader();
    let received = 0;
    while (received < MiB) received += ((await reader.read()).value as Uint8Array).byteLength;
    // The next read needs the second range, whose get is slow; the reader goes away meanwhile.
    const pending = reader.read().catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 10));
    await reader.cancel("client went away");
    openGate();
    await pending;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bodies.map((b) => b.start)).toEqual([0, MiB]);
    // The second range's body is read by nobody: it is cancelled, not left holding a tier read open.
    expect(bodies[1]?.cancelled).toBe(true);
  });
});
