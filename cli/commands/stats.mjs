import { EXIT, usageError } from "../errors.mjs";
import { isObject } from "../json.mjs";
import { formatBytes, formatTable, printable } from "../output.mjs";
import { siteId } from "./sites.mjs";

const WINDOWS = ["5m", "1h", "24h", "7d"];

/** @type {import("../args.mjs").CommandSpec} */
export const stats = {
  name: "stats",
  args: ["[site-id]"],
  summary: "show request figures over a time window, of every site or of one",
  help: `Shows each site's figures over a time window, summed across every isolate and data center:
requests, hits per tier, stale answers, origin fetches and the bytes they brought, errors, optimizer
work and bytes served, then the requests per bucket (oldest first) and this isolate's config lookups.
Isolates send their counts every 10 s, so the last seconds of other isolates may be missing.

  --window <w>   5m, 1h (the default) or 24h, 7d: 1-minute buckets for the first two, 1-hour for the others
  --site <id>    one site only (the same as giving its id as the argument)`,
  options: {
    window: { type: "string" },
    site: { type: "string" },
  },
  async run({ api, json, print, positionals, values }) {
    const given = positionals[0] ?? values.site;
    if (positionals[0] !== undefined && values.site !== undefined && positionals[0] !== values.site) {
      throw usageError("give the site once: as the argument or as --site");
    }
    const id = given === undefined ? undefined : siteId(given);
    const window = values.window;
    if (window !== undefined && !WINDOWS.includes(window)) {
      throw usageError(`--window must be one of ${WINDOWS.join(", ")}`);
    }
    const { body } = await api.stats(id, window);
    if (json) {
      print(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.OK;
    }
    print(formatStats(body));
    return EXIT.OK;
  },
};

/**
 * A heading with the window, one row per site with a column per tier that has hits, the requests per
 * bucket as a sparkline, and this isolate's config lookups.
 *
 * @param {Record<string, any>} body
 * @returns {string}
 */
function formatStats(body) {
  let text =
    body.scope === "global"
      ? `window ${printable(body.window ?? "?")}: ${printable(body.from ?? "?")} to ${printable(body.to ?? "?")}, across all isolates\n`
      : `scope: ${printable(body.scope ?? "?")}, since ${printable(body.since ?? "?")}\n`;
  const sites = isObject(body.sites) ? Object.entries(body.sites).filter(([, counters]) => isObject(counters)) : [];
  if (sites.length === 0) {
    text += "no requests counted\n";
  } else {
    /** @type {string[]} tiers in the order they first appear */
    const tiers = [];
    for (const [, counters] of sites) {
      for (const tier of Object.keys(isObject(counters.hits) ? counters.hits : {})) {
        if (!tiers.includes(tier)) tiers.push(tier);
      }
    }
    // Sites that optimize get a column: transformed / served as original / failed (original, unstored).
    const optimizing = sites.some(([, counters]) => isObject(counters.optimize) && sumOf(counters.optimize) > 0);
    const rows = sites.map(([site, counters]) => {
      const hits = isObject(counters.hits) ? counters.hits : {};
      const hitCount = tiers.reduce((sum, tier) => sum + (Number(hits[tier]) || 0), 0);
      const requests = Number(counters.requests) || 0;
      return [
        site,
        requests,
        requests > 0 ? `${Math.round((hitCount / requests) * 100)}%` : "",
        ...tiers.map((tier) => hits[tier] ?? 0),
        counters.stale ?? 0,
        counters.originFetches ?? 0,
        formatBytes(Number(counters.originBytes) || 0),
        counters.errors ?? 0,
        ...(optimizing ? [optimizeCell(counters.optimize)] : []),
        formatBytes(Number(counters.bytes)),
      ];
    });
    const right = /** @type {const} */ ("right");
    const columns = [
      { title: "SITE" },
      { title: "REQUESTS", align: right },
      { title: "HIT%", align: right },
      ...tiers.map((tier) => ({ title: `${tier.toUpperCase()} HITS`, align: right })),
      { title: "STALE", align: right },
      { title: "ORIGIN", align: right },
      { title: "FROM ORIGIN", align: right },
      { title: "ERRORS", align: right },
      ...(optimizing ? [{ title: "OPTIMIZED T/O/F", align: right }] : []),
      { title: "BYTES", align: right },
    ];
    text += formatTable(columns, rows);
  }
  if (Array.isArray(body.series) && body.series.length > 0) {
    const perBucket = body.series.map((/** @type {any} */ point) => Number(point?.values?.requests) || 0);
    // At most 84 characters: 7 days of hours are shown two hours a character.
    const group = Math.ceil(perBucket.length / 84);
    const counts = [];
    for (let i = 0; i < perBucket.length; i += group) {
      counts.push(perBucket.slice(i, i + group).reduce((/** @type {number} */ a, /** @type {number} */ b) => a + b, 0));
    }
    const hours = Number(body.bucketSeconds) >= 3600;
    const width = group === 1 ? (hours ? "hour" : "minute") : `${group} ${hours ? "hours" : "minutes"}`;
    text += `requests per ${width}: ${sparkline(counts)} (max ${Math.max(...counts)})\n`;
  }
  const config = isObject(body.isolate) && isObject(body.isolate.config) ? body.isolate.config : body.config;
  if (isObject(config)) {
    const lookups = Object.entries(config).map(([name, count]) => `${name} ${count}`);
    text += `config lookups (this isolate): ${printable(lookups.join(", "))}\n`;
  }
  return text;
}

const BARS = "▁▂▃▄▅▆▇█";

/**
 * One character per bucket: a dot for none, else a bar of eight heights scaled to the largest.
 *
 * @param {number[]} counts
 */
function sparkline(counts) {
  const max = Math.max(...counts);
  return counts
    .map((n) => (n <= 0 || max <= 0 ? "·" : BARS[Math.min(BARS.length - 1, Math.ceil((n / max) * BARS.length) - 1)]))
    .join("");
}

/** @param {Record<string, unknown>} counts */
function sumOf(counts) {
  return Object.values(counts).reduce((/** @type {number} */ sum, n) => sum + (Number(n) || 0), 0);
}

/** @param {unknown} optimize */
function optimizeCell(optimize) {
  if (!isObject(optimize)) return "";
  return [optimize.transformed, optimize.original, optimize.failed].map((n) => Number(n) || 0).join("/");
}
