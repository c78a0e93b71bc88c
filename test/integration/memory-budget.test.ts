import { env } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { isolateBudget } from "../../src/core/memory-budget";
import { fixture, newSite, origin, send, unique } from "../support/harness";

/**
 * One isolate-wide budget for every byte Tiercel buffers (src/core/memory-budget.ts): with it used up (by
 * this test, standing in for many fills at once), bodies stream through unstored, image inputs are not
 * buffered, and no request fails for memory.
 */
let held: { release(): void } | undefined;

/** Uses up the isolate's budget but for `room` bytes. */
function exhaust(room = 1024): void {
  held = isolateBudget.take(isolateBudget.limit - isolateBudget.held - room);
  expect(held).toBeDefined();
}

afterEach(() => {
  held?.release();
  held = undefined;
});

const digits = (length: number) => "0123456789".repeat(Math.ceil(length / 10)).slice(0, length);

describe("the isolate's memory budget, used up", () => {
  it("streams a small body to the client unstored, then stores it once there is room again", async () => {
    const { host } = await newSite();
    const path = `/${unique("small")}.txt`;
    await origin.route(path, { size: 200_000, headers: { "cache-control": "max-age=300" } });
    exhaust();
    const logged: string[] = [];
    const first = await send(`http://${host}${path}`, undefined, { log: (event) => void logged.push(event) });
    expect(first.status).toBe(200);
    expect(await first.text()).toBe(digits(200_000));
    expect(logged).toContain("store.skipped");
    expect(first.headers.get("cache-status")).toMatch(/detail=not-stored-memory/);
    held?.release();
    const second = await send(`http://${host}${path}`);
    expect(second.headers.get("cache-status")).toMatch(/detail=storing/);
    const third = await send(`http://${host}${path}`);
    expect(third.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect((await origin.hits(path)).hits).toBe(2);
  });

  it("answers a large body whole while the stores that need buffers skip it", async () => {
    const { host, id } = await newSite();
    const path = `/${unique("large")}.txt`;
    const size = 6 * 1024 * 1024;
    await origin.route(path, { size, headers: { "cache-control": "max-age=300" } });
    exhaust();
    const logged: string[] = [];
    const log = (event: string, fields: Record<string, unknown>) =>
      void logged.push(`${event} ${JSON.stringify(fields)}`);
    const first = await send(`http://${host}${path}`, undefined, { log });
    expect(first.status).toBe(200);
    expect(await first.text()).toBe(digits(size));
    expect(logged.some((line) => line.startsWith("tier.skipped") && line.includes("no room for a KV chunk"))).toBe(
      true,
    );
    // KV's buffer (the body is within one 8 MiB value) had no room: nothing in the global tier.
    expect(await env.CACHE_KV.get(`c:${await cacheKey({ siteId: id, path, query: "" })}`)).toBeNull();
    expect(isolateBudget.held).toBe(isolateBudget.limit - 1024);
  }, 60_000);

  it("serves an image as it is, to be optimized later, when its input cannot be buffered", async () => {
    const { host } = await newSite({ optimize: { polish: "lossy", formats: ["webp"] } });
    const path = `/${unique("img")}/photo.jpg`;
    await origin.route(path, {
      file: "demo/photo.jpg",
      headers: { "content-type": "image/jpeg", "cache-control": "public, max-age=3600" },
    });
    exhaust();
    const logged: string[] = [];
    const log = (event: string) => void logged.push(event);
    const response = await send(`http://${host}${path}`, { headers: { accept: "image/webp,*/*" } }, { log });
    expect(logged).toContain("optimize.skipped");
    expect(response.status).toBe(200);
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(await fixture("demo/photo.jpg"));
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=memory, retry=10");
    expect(response.headers.get("content-type")).toBe("image/jpeg");
  }, 60_000);
});
