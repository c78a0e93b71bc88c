import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

/**
 * An in-memory stand-in for the admin API of docs/admin-api.md, just enough of it for the CLI's tests:
 * bearer auth, sites CRUD with cursor pages of {@link PAGE_SIZE}, `host_taken`, `invalid_config` with
 * `issues`, purge and stats. It records every request so tests can check what the CLI sent.
 */

const PREFIX = "/_tiercel/api/v1";
export const PAGE_SIZE = 2;
const SITE_ID = /^[A-Za-z0-9_-]{8,64}$/;
const HOST = /^[a-z0-9_.-]{1,253}$/;
const SITE_FIELDS = new Set([
  "version",
  "id",
  "hosts",
  "origin",
  "cache",
  "bypass",
  "optimize",
  "generation",
  "purges",
  "limits",
]);

/**
 * @typedef {{ method: string, path: string, search: string, authorization: string | undefined, body: unknown }} RecordedRequest
 */

/**
 * @param {{ token: string, sites?: Record<string, any>[] }} options the token it accepts, the sites it starts with
 */
export async function startFakeAdminApi({ token, sites: initial = [] }) {
  /** @type {Map<string, Record<string, any>>} */
  const sites = new Map(initial.map((site) => [site.id, site]));
  /** @type {RecordedRequest[]} */
  const requests = [];

  const server = createServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const url = new URL(req.url ?? "/", "http://fake");
    const body = text === "" ? undefined : parseJson(text);
    requests.push({
      method: req.method ?? "",
      path: url.pathname,
      search: url.search,
      authorization: req.headers.authorization,
      body,
    });
    /** @param {number} status @param {unknown} answer @param {Record<string, string>} [headers] */
    const send = (status, answer, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
      res.end(JSON.stringify(answer));
    };
    /** @param {number} status @param {string} code @param {string} message @param {object} [extra] */
    const fail = (status, code, message, extra = {}, headers = {}) =>
      send(status, { error: { code, message, ...extra } }, headers);

    if (!url.pathname.startsWith(`${PREFIX}/`)) {
      res.writeHead(404, { "content-type": "text/html" });
      res.end("<h1>not an admin path</h1>");
      return;
    }
    if (url.searchParams.has("token") || url.searchParams.has("access_token")) {
      return fail(400, "token_in_url", "Send the token in the Authorization header, never in the URL");
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      return fail(401, "unauthorized", "A valid admin token is required", {}, { "www-authenticate": "Bearer" });
    }
    if (text !== "" && body === undefined) return fail(400, "invalid_json", "The body is not JSON");

    const path = url.pathname.slice(PREFIX.length);
    const siteMatch = /^\/sites\/([^/]+)(\/purge|\/stats)?$/.exec(path);
    const id = siteMatch ? decodeURIComponent(siteMatch[1] ?? "") : undefined;
    const tail = siteMatch?.[2];

    if (path === "/sites" && req.method === "GET") {
      const ids = [...sites.keys()].sort();
      const start = Number(url.searchParams.get("cursor") ?? "0");
      const page = ids.slice(start, start + PAGE_SIZE).map((key) => sites.get(key));
      const next = start + PAGE_SIZE < ids.length ? String(start + PAGE_SIZE) : null;
      return send(200, { sites: page, cursor: next });
    }
    if (path === "/sites" && req.method === "POST") {
      if (isObject(body) && body.id !== undefined) {
        return fail(400, "invalid_config", "id: is generated; PUT /sites/<id> to choose one", {
          issues: [{ path: "id", message: "is generated; PUT /sites/<id> to choose one" }],
        });
      }
      return store(randomBytes(9).toString("base64url"), body, 201);
    }
    if (id !== undefined && tail === undefined) {
      if (req.method === "GET") {
        const site = sites.get(id);
        return site ? send(200, { site }) : fail(404, "site_not_found", `No site ${id}`);
      }
      if (req.method === "PUT") {
        if (isObject(body) && body.id !== undefined && body.id !== id) {
          return fail(400, "invalid_config", "id: must match the id in the path", {
            issues: [{ path: "id", message: "must match the id in the path" }],
          });
        }
        return store(id, body, 200);
      }
      if (req.method === "DELETE") {
        if (!sites.delete(id)) return fail(404, "site_not_found", `No site ${id}`);
        return send(200, { deleted: id });
      }
    }
    if (id !== undefined && tail === "/purge" && req.method === "POST") {
      if (!sites.has(id)) return fail(404, "site_not_found", `No site ${id}`);
      const { urls = [], tags = [], all = false, soft = false } = isObject(body) ? body : {};
      if (urls.length === 0 && tags.length === 0 && !all) {
        return fail(400, "invalid_purge", "Give urls, tags or all");
      }
      return send(202, {
        purged: { urls, tags, all, soft },
        propagation: {
          here: "at once (this data center)",
          everywhereWithinMs: 2050,
          how: "through the control feed, without waiting for KV",
        },
      });
    }
    if ((path === "/stats" || tail === "/stats") && req.method === "GET") {
      if (id !== undefined && !sites.has(id)) return fail(404, "site_not_found", `No site ${id}`);
      const window = url.searchParams.get("window") ?? "1h";
      const buckets = /** @type {Record<string, number>} */ ({ "5m": 5, "1h": 60, "24h": 24, "7d": 168 })[window];
      if (buckets === undefined) return fail(400, "invalid_window", "window must be one of 5m, 1h, 24h, 7d");
      const counters = {
        "site-aaaaaaaa": {
          requests: 10,
          hits: { edge: 6, kv: 2 },
          stale: 1,
          originFetches: 2,
          originBytes: 2048,
          errors: 1,
          bytes: 123456,
        },
        "site-bbbbbbbb": {
          requests: 4,
          hits: { edge: 1, r2: 1 },
          stale: 0,
          originFetches: 2,
          optimize: { transformed: 3, original: 1, failed: 0, busy: 0 },
          bytes: 512,
        },
      };
      const chosen = id === undefined ? counters : { [id]: counters[/** @type {keyof counters} */ (id)] ?? {} };
      const hour = window === "24h" || window === "7d";
      // The requests fall in the last buckets: 2, 4 and (the current one) 8 for every site.
      const perBucket = [2, 4, 8];
      const series = Array.from({ length: buckets }, (_, i) => ({
        start: new Date(Date.UTC(2026, 10, 23, 10) + i * (hour ? 3_600_000 : 60_000)).toISOString(),
        values: { requests: perBucket[i - (buckets - perBucket.length)] ?? 0 },
      }));
      return send(200, {
        scope: "global",
        site: id ?? null,
        window,
        bucketSeconds: hour ? 3600 : 60,
        from: "2026-11-23T10:00:00.000Z",
        to: hour ? "2026-11-24T10:00:00.000Z" : "2026-11-23T11:00:00.000Z",
        sites: chosen,
        total: { requests: 14 },
        series,
        isolate: {
          since: "2026-11-23T10:00:00.000Z",
          sites: {},
          config: { kvReads: 3, memoryHits: 7, cacheHits: 1, negativeHits: 0 },
        },
      });
    }
    return fail(404, "not_found", `No admin route ${req.method} ${path}`);

    /**
     * @param {string} siteId
     * @param {unknown} config
     * @param {number} status
     */
    function store(siteId, config, status) {
      const issues = validate(config);
      if (!SITE_ID.test(siteId)) issues.push({ path: "id", message: "must be 8–64 characters" });
      if (issues.length > 0) {
        return fail(400, "invalid_config", issues.map((i) => `${i.path}: ${i.message}`).join("; "), { issues });
      }
      const site = /** @type {Record<string, any>} */ (config);
      for (const host of site.hosts ?? []) {
        for (const [otherId, other] of sites) {
          if (otherId !== siteId && other.hosts.includes(host)) {
            return fail(409, "host_taken", `Host ${host} is already claimed by another site`, {
              host,
              siteId: otherId,
            });
          }
        }
      }
      const saved = {
        version: 1,
        id: siteId,
        hosts: site.hosts ?? [],
        origin: site.origin,
        cache: { staleWhileRevalidate: 0, staleIfError: 0, negativeTtl: 60, stripSetCookie: false, ...site.cache },
        generation: 0,
        purges: { urls: {}, tags: {}, softTags: {} },
      };
      sites.set(siteId, saved);
      return send(status, { site: saved });
    }
  });

  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    sites,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve(undefined))),
  };
}

/**
 * A few of the schema's rules, enough to answer invalid_config with field paths.
 *
 * @param {unknown} config
 * @returns {{ path: string, message: string }[]}
 */
function validate(config) {
  if (!isObject(config)) return [{ path: "(root)", message: "must be an object" }];
  const issues = [];
  for (const key of Object.keys(config)) {
    if (!SITE_FIELDS.has(key)) issues.push({ path: "(root)", message: `Unrecognized key: "${key}"` });
  }
  const hosts = config.hosts ?? [];
  if (!Array.isArray(hosts)) issues.push({ path: "hosts", message: "must be a list" });
  else {
    hosts.forEach((host, index) => {
      if (typeof host !== "string" || !HOST.test(host.toLowerCase())) {
        issues.push({ path: `hosts.${index}`, message: "must be a host name without port" });
      }
    });
  }
  const origin = config.origin;
  if (!isObject(origin)) issues.push({ path: "origin", message: "is required" });
  else if (origin.kind === "http") {
    if (!isHttpUrl(origin.url)) issues.push({ path: "origin.url", message: "must be an absolute http or https URL" });
  } else if (origin.kind === "s3") {
    if (!isHttpUrl(origin.endpoint)) {
      issues.push({ path: "origin.endpoint", message: "must be an absolute http or https URL" });
    }
    if (typeof origin.bucket !== "string") issues.push({ path: "origin.bucket", message: "is required" });
  } else {
    issues.push({ path: "origin.kind", message: 'must be "http" or "s3"' });
  }
  return issues;
}

/** @param {unknown} value */
function isHttpUrl(value) {
  if (typeof value !== "string") return false;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** @param {string} text */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
