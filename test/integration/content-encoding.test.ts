import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, putSite, send, testClock, unique } from "../support/harness";
import type { RouteSpec } from "../support/origin-server";

/**
 * Content codings (issue 11 §1): the tiers hold the identity bytes, the origin is asked for Tiercel's own
 * Accept-Encoding, and every client gets decodable identity bytes whatever it accepts, on a miss, an edge
 * hit and a KV hit, in both connect modes (workerd's fetch() and the socket client behind `connectTo`).
 */

const MODES = ["fetch", "direct"] as const;
type Mode = (typeof MODES)[number];

/** A site on the loopback origin, reached by fetch() (its URL) or by the socket client (`connectTo`). */
async function siteIn(mode: Mode, extra: Record<string, unknown> = {}): Promise<{ host: string; id: string }> {
  if (mode === "fetch" && !("limits" in extra)) return newSite(extra);
  const host = `${unique("coded")}.test`;
  const id = unique("id");
  const port = new URL(origin.url).port;
  await putSite(host, {
    id,
    origin:
      mode === "fetch"
        ? { kind: "http", url: env.TEST_ORIGIN, allowPrivate: true }
        : { kind: "http", url: "http://www.customer.test", connectTo: `127.0.0.1:${port}`, allowPrivate: true },
    ...extra,
  });
  return { host, id };
}

/** What the origin's body is before any coding: the route's `size` pattern. */
function plain(size: number): string {
  return "0123456789".repeat(Math.ceil(size / 10)).slice(0, size);
}

const CLIENTS: (string | undefined)[] = ["gzip", "br", "deflate", "identity", undefined];

function asClient(acceptEncoding: string | undefined): RequestInit {
  return acceptEncoding === undefined ? {} : { headers: { "accept-encoding": acceptEncoding } };
}

describe.each(MODES)("a compressing origin, %s mode", (mode) => {
  // deflate-raw: Content-Encoding: deflate without the zlib wrapper (RFC 1951 alone), as some servers send it.
  for (const coding of ["gzip", "deflate", "deflate-raw"] as const) {
    for (const careless of [false, true]) {
      it(`stores and serves the identity bytes of a ${coding} body${careless ? " sent regardless of Accept-Encoding" : ""}`, async () => {
        const { host, id } = await siteIn(mode);
        const path = `/${unique(coding)}.txt`;
        const route: RouteSpec = {
          size: 20_000,
          encode: coding,
          encodeAlways: careless,
          headers: { "content-type": "text/plain", "cache-control": "max-age=600" },
        };
        await origin.route(path, route);
        const url = `http://${host}${path}`;

        // The miss, for a client that accepts gzip (the origin is asked for Tiercel's codings, not this).
        const miss = await send(url, asClient("gzip, br"));
        expect(miss.status).toBe(200);
        expect(miss.headers.get("content-encoding")).toBeNull();
        expect(miss.headers.get("cache-status")).toContain("detail=storing");
        expect(await miss.text()).toBe(plain(20_000));
        const seen = await origin.hits(path);
        expect(seen.last?.headers["accept-encoding"]).toBe("gzip, deflate");

        for (const client of CLIENTS) {
          const hit = await send(url, asClient(client));
          expect(hit.headers.get("cache-status"), String(client)).toMatch(/^Tiercel-Edge; hit/);
          expect(hit.headers.get("content-encoding"), String(client)).toBeNull();
          expect(hit.headers.get("content-length"), String(client)).toBe("20000");
          expect(await hit.text(), String(client)).toBe(plain(20_000));
        }

        await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));
        for (const client of CLIENTS) {
          await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));
          const fromKv = await send(url, asClient(client));
          expect(fromKv.headers.get("cache-status"), String(client)).toMatch(/^Tiercel-KV; hit/);
          expect(fromKv.headers.get("content-encoding"), String(client)).toBeNull();
          expect(await fromKv.text(), String(client)).toBe(plain(20_000));
        }
        expect((await origin.hits(path)).hits).toBe(1);
      });
    }
  }

  // Over the 4 MiB buffer and without a length known up front: stored by a streamed put of unknown length.
  const LARGE = 6 * 1024 * 1024;
  const LARGE_ROUTES: [string, RouteSpec][] = [
    ["a gzip body decoding to 6 MiB", { size: LARGE, encode: "gzip", encodeAlways: true }],
    ["an identity body of 6 MiB sent chunked, without a length", { size: LARGE, chunked: 65_536 }],
  ];
  for (const [name, spec] of LARGE_ROUTES) {
    it(`stores ${name}: miss, edge hit and KV hit serve the whole identity body, from one origin hit`, async () => {
      const { host, id } = await siteIn(mode);
      const path = `/${unique("large")}.txt`;
      await origin.route(path, { ...spec, headers: { "content-type": "text/plain", "cache-control": "max-age=600" } });
      const url = `http://${host}${path}`;
      const whole = plain(LARGE);

      const miss = await send(url, asClient("gzip"));
      expect(miss.status).toBe(200);
      expect(miss.headers.get("content-encoding")).toBeNull();
      expect(miss.headers.get("cache-status")).toContain("detail=storing");
      expect((await miss.text()) === whole).toBe(true);

      // The store runs after the answer (waitUntil): the edge hit may take a moment to appear.
      await expect
        .poll(async () => (await send(url, { method: "HEAD" })).headers.get("cache-status"))
        .toMatch(/^Tiercel-Edge; hit/);
      const hit = await send(url, asClient("gzip"));
      expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect(hit.headers.get("content-length")).toBe(String(LARGE));
      expect(hit.headers.get("content-encoding")).toBeNull();
      expect((await hit.text()) === whole).toBe(true);

      await edgeTier(caches.open(env.EDGE_CACHE_NAME)).delete(await cacheKey({ siteId: id, path, query: "" }));
      const fromKv = await send(url);
      expect(fromKv.headers.get("cache-status")).toMatch(/^Tiercel-KV; hit/);
      expect(fromKv.headers.get("content-length")).toBe(String(LARGE));
      expect((await fromKv.text()) === whole).toBe(true);
      expect((await origin.hits(path)).hits).toBe(1);
    }, 30_000);
  }

  it("serves many concurrent misses of a gzip body decoding to 6 MiB whole, then hits from what they stored", async () => {
    const { host } = await siteIn(mode);
    const path = `/${unique("large-many")}.txt`;
    await origin.route(path, {
      size: LARGE,
      encode: "gzip",
      encodeAlways: true,
      headers: { "content-type": "text/plain", "cache-control": "max-age=600" },
    });
    const url = `http://${host}${path}`;
    const whole = plain(LARGE);
    // Waiters collapsed onto the first fill go to the origin themselves once the body outgrows the buffer;
    // every fill streams its own store, racing for the same key in both tiers.
    const answers = await Promise.all(Array.from({ length: 5 }, () => send(url, asClient("gzip"))));
    const texts = await Promise.all(answers.map((answer) => answer.text()));
    for (const text of texts) expect(text === whole).toBe(true);
    await expect
      .poll(async () => (await send(url, { method: "HEAD" })).headers.get("cache-status"))
      .toMatch(/^Tiercel-Edge; hit/);
    const hits = await Promise.all(Array.from({ length: 4 }, () => send(url)));
    for (const hit of hits) {
      expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
      expect((await hit.text()) === whole).toBe(true);
    }
  }, 30_000);

  it("stores nothing of a gzip body decoding past 4 MiB that is cut short", async () => {
    const { host } = await siteIn(mode);
    const path = `/${unique("large-cut")}.txt`;
    // Cut at 80% of the coded bytes: the decoded body is well past the 4 MiB buffer when it breaks off.
    const coded = await new Response(
      new Response(plain(LARGE)).body?.pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer();
    await origin.route(path, {
      size: LARGE,
      encode: "gzip",
      encodeAlways: true,
      truncateAfter: Math.floor(coded.byteLength * 0.8),
      headers: { "content-type": "text/plain", "cache-control": "max-age=600" },
    });
    const url = `http://${host}${path}`;
    // Its decoded length is unknown, so it is read before the head leaves (cache.collectUnknownLength): the
    // break is answered 502, never a 200 that ends cleanly.
    const first = await send(url);
    expect(first.status).toBe(502);
    const second = await send(url);
    expect(second.status).toBe(502);
    expect(second.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
  }, 30_000);

  it("stores nothing of a gzip body decoding past the site's maxObjectBytes", async () => {
    const { host } = await siteIn(mode, { limits: { maxObjectBytes: 5 * 1024 * 1024 } });
    const path = `/${unique("large-bound")}.txt`;
    await origin.route(path, {
      size: LARGE,
      encode: "gzip",
      encodeAlways: true,
      headers: { "content-type": "text/plain", "cache-control": "max-age=600" },
    });
    const url = `http://${host}${path}`;
    expect((await (await send(url)).text()) === plain(LARGE)).toBe(true);
    const second = await send(url);
    expect(second.headers.get("cache-status")).toContain("fwd=miss");
    expect((await second.text()) === plain(LARGE)).toBe(true);
    expect((await origin.hits(path)).hits).toBe(2);
  }, 30_000);

  it("answers ranges of a compressed object from its identity bytes, on the miss and on hits", async () => {
    const { host } = await siteIn(mode);
    const path = `/${unique("range")}.bin`;
    await origin.route(path, {
      size: 50_000,
      encode: "gzip",
      headers: { "content-type": "application/octet-stream", "cache-control": "max-age=600" },
    });
    const url = `http://${host}${path}`;
    const range = { headers: { range: "bytes=100-109", "accept-encoding": "gzip" } };
    // The miss has no length until the decoded body has streamed, so it is answered whole.
    const miss = await send(url, range);
    expect(miss.status).toBe(200);
    expect(await miss.text()).toBe(plain(50_000));
    const hit = await send(url, range);
    expect(hit.status).toBe(206);
    expect(hit.headers.get("content-range")).toBe("bytes 100-109/50000");
    expect(hit.headers.get("content-encoding")).toBeNull();
    expect(await hit.text()).toBe(plain(50_000).slice(100, 110));
  });

  it("minifies a compressed script", async () => {
    const { host } = await siteIn(mode, { optimize: { minify: { js: true } } });
    const path = `/${unique("min")}.js`;
    const source = "function add ( first , second ) {\n  // a comment\n  return first + second ;\n}\nadd ( 1 , 2 ) ;\n";
    await origin.route(path, {
      body: source,
      encode: "gzip",
      headers: { "content-type": "application/javascript", "cache-control": "max-age=600" },
    });
    const miss = await send(`http://${host}${path}`, asClient("gzip"));
    const text = await miss.text();
    expect(miss.headers.get("content-encoding")).toBeNull();
    expect(miss.headers.get("tiercel-optimize")).toMatch(/minif/);
    expect(text.length).toBeLessThan(source.length);
    expect(text).not.toContain("a comment");
  });

  it("passes a coding it cannot decode (br) through unstored, labelled, and never encoded twice", async () => {
    const { host } = await siteIn(mode);
    const path = `/${unique("br")}.txt`;
    await origin.route(path, {
      size: 5_000,
      encode: "br",
      encodeAlways: true,
      headers: { "content-type": "text/plain", "cache-control": "max-age=600" },
    });
    const url = `http://${host}${path}`;
    const first = await send(url, asClient("br"));
    expect(first.headers.get("content-encoding")).toBe("br");
    expect(first.headers.get("cache-status")).toContain("detail=not-stored-content-coding");
    expect(first.headers.get("cache-status")).not.toContain("stored;");
    // The bytes are the origin's own br body, once: decoding them gives the object.
    const coded = new Uint8Array(await first.arrayBuffer());
    const again = await send(url, asClient("br"));
    await again.arrayBuffer();
    expect(again.headers.get("cache-status")).toContain("fwd=miss");
    expect((await origin.hits(path)).hits).toBe(2);
    expect(coded.byteLength).toBeLessThan(5_000);
  });
});

/**
 * Integrity fields (RFC 9530): Content-Digest and Repr-Digest describe the origin's bytes. When Tiercel
 * changes them (decoding, minifying) they are removed, on the miss and on every hit; unchanged bytes keep
 * them, and a range keeps only Repr-Digest (its content is the part).
 */
describe("Content-Digest and Repr-Digest", () => {
  const DIGESTS = { "content-digest": "sha-256=:c29tZSBkaWdlc3Q=:", "repr-digest": "sha-256=:c29tZSBkaWdlc3Q=:" };

  async function missAndHit(host: string, path: string, init?: RequestInit): Promise<Response[]> {
    const miss = await send(`http://${host}${path}`, init);
    const hit = await send(`http://${host}${path}`, init);
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    return [miss, hit];
  }

  it("keeps them when the bytes are the origin's, and a range keeps only Repr-Digest", async () => {
    const { host } = await newSite();
    const path = `/${unique("digest-identity")}.txt`;
    await origin.route(path, { size: 5_000, headers: { ...DIGESTS, "cache-control": "max-age=600" } });
    for (const answer of await missAndHit(host, path)) {
      expect(answer.headers.get("content-digest")).toBe(DIGESTS["content-digest"]);
      expect(answer.headers.get("repr-digest")).toBe(DIGESTS["repr-digest"]);
    }
    const part = await send(`http://${host}${path}`, { headers: { range: "bytes=0-99" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-digest")).toBeNull();
    expect(part.headers.get("repr-digest")).toBe(DIGESTS["repr-digest"]);
  });

  it.each(MODES)("drops them from a body Tiercel decoded (%s mode)", async (mode) => {
    const { host } = await siteIn(mode);
    const path = `/${unique("digest-gzip")}.txt`;
    await origin.route(path, { size: 5_000, encode: "gzip", headers: { ...DIGESTS, "cache-control": "max-age=600" } });
    for (const answer of await missAndHit(host, path)) {
      expect(answer.headers.get("content-encoding")).toBeNull();
      expect(answer.headers.get("content-digest")).toBeNull();
      expect(answer.headers.get("repr-digest")).toBeNull();
    }
  });

  it("drops them from a body Tiercel minified", async () => {
    const { host } = await newSite({ optimize: { minify: { js: true } } });
    const path = `/${unique("digest-min")}.js`;
    await origin.route(path, {
      body: "function add ( first , second ) {\n  // a comment\n  return first + second ;\n}\n",
      headers: { ...DIGESTS, "content-type": "application/javascript", "cache-control": "max-age=600" },
    });
    for (const answer of await missAndHit(host, path)) {
      expect(answer.headers.get("tiercel-optimize")).toMatch(/minif/);
      expect(answer.headers.get("content-digest")).toBeNull();
      expect(answer.headers.get("repr-digest")).toBeNull();
    }
  });

  it("does not take them back from a 304 that refreshes a decoded entry", async () => {
    const { host } = await newSite();
    const path = `/${unique("digest-304")}.txt`;
    const url = `http://${host}${path}`;
    await origin.route(path, {
      size: 5_000,
      encode: "gzip",
      conditional: true,
      notModifiedHeaders: DIGESTS,
      headers: { ...DIGESTS, etag: '"v1"', "cache-control": "max-age=10" },
    });
    const clock = testClock();
    await send(url, undefined, { now: clock.now });
    clock.advance(20);
    const refreshed = await send(url, undefined, { now: clock.now });
    expect(refreshed.headers.get("cache-status")).toContain("fwd=stale; fwd-status=304");
    expect(refreshed.headers.get("repr-digest")).toBeNull();
    expect(refreshed.headers.get("content-digest")).toBeNull();
    expect(await refreshed.text()).toBe(plain(5_000));
  });
});
