import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { remoteImageEngine, remoteMinifier } from "../../src/optimize/remote";
import { platformFor } from "../../src/worker";
import { newSite, origin, send, unique } from "../support/harness";

/**
 * The optimizer in its own Worker, behind the OPTIMIZER service binding (in the tests: its own workerd
 * process, test/support/optimizer-process.ts): one site's CPU-bound transforms cannot hold up another
 * site's hits, a site's transforms in flight are bounded, and an optimizer that fails or is missing only
 * means the original is served.
 */

const CACHEABLE = { "cache-control": "public, max-age=3600" };

/** A generated script of about `bytes` bytes: many small functions whose locals terser mangles. */
function generatedScript(bytes: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i += 1) {
    const part = `function handler${i}(items, factor) {\n  var total = 0;\n  for (var index = 0; index < items.length; index++) {\n    total += items[index] * factor + ${i};\n  }\n  return total;\n}\n`;
    parts.push(part);
    size += part.length;
  }
  return parts.join("");
}

/** Resolves once the origin has seen `count` requests for `path`. */
async function originSaw(path: string, count: number): Promise<void> {
  while ((await origin.hits(path)).hits < count) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe("one site's transforms cannot stall another's hits", { timeout: 300_000 }, () => {
  it("answers another site's edge hit while a burst of cache-busting minify misses is being worked on", async () => {
    // The case (a site that minifies JS, a large script, cache-busting query strings), with 400 KB
    // rather than 900 KB so that a loaded test machine stays inside the optimizer's 20 s deadline.
    const busy = await newSite({ optimize: { minify: { js: true } } });
    const script = `/${unique("bundle")}.js`;
    await origin.route(script, {
      body: generatedScript(400 * 1024),
      headers: { "content-type": "text/javascript", ...CACHEABLE },
    });
    // Another site with an asset already in the edge tier, and one whose stylesheet is minified on a miss.
    const quiet = await newSite();
    const page = `/${unique("page")}.css`;
    await origin.route(page, { body: "body { color: red }", headers: { "content-type": "text/css", ...CACHEABLE } });
    expect((await send(`http://${quiet.host}${page}`)).headers.get("cache-status")).toContain("detail=storing");
    const other = await newSite({ optimize: { minify: { css: true } } });
    const sheet = `/${unique("sheet")}.css`;
    await origin.route(sheet, {
      body: "body {\n  color: red;\n}\n\n/* a comment */\n",
      headers: { "content-type": "text/css", ...CACHEABLE },
    });

    // 12 at once: past a page's worth (the per-site bound admits 8, TRANSFORM_BOUNDS), so some are refused.
    const finished: string[] = [];
    const burst = Array.from({ length: 12 }, (_, n) =>
      send(`http://${busy.host}${script}?cb=${n}`).then((response) => {
        // Refused ones ("busy") are answered at once; the others after their transform.
        if (response.headers.get("tiercel-optimize")?.startsWith("minified")) finished.push("minified");
        return response;
      }),
    );
    // Every burst request has reached the origin, so the transforms are being worked on.
    await originSaw(script, 12);
    const hit = await send(`http://${quiet.host}${page}`);
    finished.push("hit");
    const minified = await send(`http://${other.host}${sheet}`);
    finished.push("other site's minify");
    const answers = await Promise.all(burst);

    // The hit did not wait for any of the burst's transforms (before the optimizer had its own Worker, it
    // waited for all of those queued, run back to back).
    expect(hit.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    expect(await hit.text()).toBe("body { color: red }");
    expect(finished.indexOf("hit")).toBe(0);
    // Another site's transform found room: minified, not refused as busy, and without waiting for the
    // burst's queue: the bursting site runs at most 2 at a time, so at most those 2 (and one that started as
    // they ended) finished before it, never the 8 it admitted.
    expect(minified.headers.get("tiercel-optimize")).toBe("minified, original=40");
    expect(await minified.text()).toBe("body{color:red}");
    expect(finished.indexOf("other site's minify"), finished.join(", ")).toBeLessThanOrEqual(1 + 3);
    // The bursting site had at most 2 transforms running and 6 waiting (a page's worth): the rest were
    // served the original at once, as a 10-second stand-in.
    const notes = answers.map((response) => response.headers.get("tiercel-optimize"));
    const done = notes.filter((note) => note?.startsWith("minified"));
    const refused = notes.filter((note) => note === "original, reason=busy, retry=10");
    expect(done.length, notes.join("\n")).toBeGreaterThan(4);
    expect(done.length).toBeLessThanOrEqual(8);
    expect(refused.length, notes.join("\n")).toBeGreaterThanOrEqual(4);
    for (const response of answers) expect(response.status).toBe(200);
  });
});

describe("an optimizer that fails or is missing", { timeout: 60_000 }, () => {
  const sites = async () => {
    const { host, id } = await newSite({ optimize: { minify: { css: true } } });
    const path = `/${unique("style")}.css`;
    const css = "body {\n  color: red;\n}\n";
    await origin.route(path, { body: css, headers: { "content-type": "text/css", ...CACHEABLE } });
    return { url: `http://${host}${path}`, id, css };
  };
  /** An OPTIMIZER binding that reaches a misbehaving server (the loopback origin) instead. */
  const bindingTo = (path: string) => ({
    // The request's body is read but not sent on: the misbehaving server ignores it.
    fetch: async (request: Request) => {
      await request.arrayBuffer();
      return fetch(`${origin.url}${path}`);
    },
  });
  const engines = (path: string, timeoutMs = 5_000) => ({
    ...platformFor(env).engines,
    wasm: remoteImageEngine(bindingTo(path), { timeoutMs }),
    minifier: remoteMinifier(bindingTo(path), { timeoutMs }),
  });

  it("serves the original as a one-minute stand-in when the optimizer hangs up", async () => {
    const site = await sites();
    const broken = `/${unique("optimizer")}`;
    await origin.route(broken, { hangUp: true });
    const response = await send(site.url, undefined, { engines: engines(broken) });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(site.css);
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=optimizer-unavailable, retry=60");
    expect(response.headers.get("cache-status")).toContain("detail=optimize-failed");
  });

  it("serves the original when the optimizer answers something that is not its protocol", async () => {
    const site = await sites();
    const wrong = `/${unique("optimizer")}`;
    await origin.route(wrong, { status: 502, body: "<html>bad gateway</html>" });
    const response = await send(site.url, undefined, { engines: engines(wrong) });
    expect(await response.text()).toBe(site.css);
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=optimizer-unavailable, retry=60");
  });

  it("does not wait past the deadline for a slow optimizer", async () => {
    const site = await sites();
    const slow = `/${unique("optimizer")}`;
    await origin.route(slow, { delayMs: 3_000, body: "late" });
    const response = await send(site.url, undefined, { engines: engines(slow, 200) });
    expect(await response.text()).toBe(site.css);
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=optimizer-timeout, retry=60");
  });

  it("without the OPTIMIZER binding, serves the original and never fails the request", async () => {
    const site = await sites();
    const { OPTIMIZER: _, ...unbound } = env;
    const response = await send(site.url, undefined, { engines: platformFor(unbound as Env).engines });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(site.css);
    expect(response.headers.get("tiercel-optimize")).toBe("original, reason=optimizer-unavailable, retry=60");
  });
});
