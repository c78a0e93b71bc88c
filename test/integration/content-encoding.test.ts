import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../src/core/keys";
import { edgeTier } from "../../src/tiers/edge";
import { newSite, origin, putSite, send, unique } from "../support/harness";
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
  if (mode === "fetch") return newSite(extra);
  const host = `${unique("coded")}.test`;
  const id = unique("id");
  const port = new URL(origin.url).port;
  await putSite(host, {
    id,
    origin: { kind: "http", url: "http://www.customer.test", connectTo: `127.0.0.1:${port}`, allowPrivate: true },
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
  for (const coding of ["gzip", "deflate"] as const) {
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
