import { env } from "cloudflare:test";
import { it } from "vitest";
import type { StoredEntry } from "../../src/core/entry";
import { edgeTier } from "../../src/tiers/edge";
import { kvTier } from "../../src/tiers/kv";

const base: StoredEntry = {
  v: 1,
  status: 200,
  headers: [["content-type", "text/plain"]],
  requestTime: 1,
  responseTime: 2,
  storedAt: 3,
  initialAge: 0,
  lifetime: 60,
  vary: [],
  tags: [],
  length: 0,
  digest: "sha-256=:x:",
};

it("explore", async () => {
  const edge = edgeTier(caches.open("scratch-" + Math.random()));
  await edge.put("k1", base, new Uint8Array(0), 60);
  const got = await edge.get("k1");
  console.log("edge empty", got === null ? null : "hit");
  const kv = kvTier(env.CACHE_KV, { prefix: "scr" + Math.random() + ":" });
  await kv.put("k1", base, new Uint8Array(0), 60);
  const g2 = await kv.get("k1");
  console.log("kv empty", g2 === null ? null : "hit");
  for (const ch of ["a", "é", "☕"]) {
    const probe = (n: number) => ({ ...base, headers: [["x", ch.repeat(n)]] as [string, string][] });
    const size = (n: number) => new TextEncoder().encode(JSON.stringify({ e: probe(n) })).byteLength;
    let n = 0;
    while (size(n + 1) <= 1024) n++;
    console.log(ch, n, size(n));
    try {
      await kv.put("b" + ch, probe(n), new Uint8Array([1]), 60);
      const r = await env.CACHE_KV.getWithMetadata(kv === kv ? "" : "", "text");
      console.log("ok", r.value);
    } catch (e) {
      console.log("put fail", String(e));
    }
  }
  const raw = "scrraw" + Math.random();
  await env.CACHE_KV.put(raw, "x", { metadata: "garbage" });
  try {
    console.log(await kvTier(env.CACHE_KV, { prefix: "" }).get(raw));
  } catch (e) {
    console.log("throws", String(e));
  }
  await env.CACHE_KV.put(raw, "x", { metadata: 42 });
  try {
    console.log(await kvTier(env.CACHE_KV, { prefix: "" }).get(raw));
  } catch (e) {
    console.log("throws", String(e));
  }
});
