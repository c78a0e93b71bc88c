// The local demo origin: a small static file server on loopback that stands for a site's backend.
// It serves demo/assets with the validators and Cache-Control a real origin would send, and logs every
// request it receives, so you can watch Tiercel stop asking it once the tiers are warm.
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ASSETS = fileURLToPath(new URL("./assets/", import.meta.url));

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".png": "image/png",
};

/** Cache policy per type: pages for a minute, assets for five. */
const CACHE_CONTROL = {
  ".html": "public, max-age=60",
  default: "public, max-age=300",
};

/** Loads every asset once, with its ETag and Last-Modified. */
async function loadAssets() {
  const assets = new Map();
  for (const name of await readdir(ASSETS)) {
    const path = join(ASSETS, name);
    const body = await readFile(path);
    const info = await stat(path);
    assets.set(`/${name}`, {
      body,
      type: TYPES[extname(name)] ?? "application/octet-stream",
      cacheControl: CACHE_CONTROL[extname(name)] ?? CACHE_CONTROL.default,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
      lastModified: info.mtime.toUTCString(),
    });
  }
  assets.set("/", assets.get("/index.html"));
  return assets;
}

/** Starts the origin; resolves with the server and its URL. */
export async function startDemoOrigin({ port = 9000, host = "127.0.0.1", log = console.log } = {}) {
  const assets = await loadAssets();
  let requests = 0;
  const server = createServer((req, res) => {
    requests += 1;
    const path = new URL(req.url ?? "/", "http://origin").pathname;
    const asset = assets.get(path);
    if (!asset || (req.method !== "GET" && req.method !== "HEAD")) {
      const status = asset ? 405 : 404;
      log(`origin: ${req.method} ${req.url} -> ${status} (request #${requests})`);
      res.writeHead(status, { "content-type": "text/plain", "cache-control": "public, max-age=30" });
      return res.end(status === 404 ? "Not found\n" : "Method not allowed\n");
    }
    const notModified = req.headers["if-none-match"] === asset.etag;
    log(`origin: ${req.method} ${req.url} -> ${notModified ? 304 : 200} (request #${requests})`);
    res.writeHead(notModified ? 304 : 200, {
      "content-type": asset.type,
      "cache-control": asset.cacheControl,
      etag: asset.etag,
      "last-modified": asset.lastModified,
      ...(notModified ? {} : { "content-length": asset.body.byteLength }),
    });
    res.end(notModified || req.method === "HEAD" ? undefined : asset.body);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { server, url: `http://${host}:${port}` };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { url } = await startDemoOrigin({ port: Number(process.env.DEMO_ORIGIN_PORT ?? 9000) });
  console.log(`demo origin listening on ${url}`);
}
