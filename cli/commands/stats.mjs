import { EXIT } from "../errors.mjs";
import { isObject } from "../json.mjs";
import { formatBytes, formatTable, printable } from "../output.mjs";
import { siteId } from "./sites.mjs";

/** @type {import("../args.mjs").CommandSpec} */
export const stats = {
  name: "stats",
  args: ["[site-id]"],
  summary: "show request counters, of every site or of one",
  help: `Shows the request counters of every site, or of one: requests, hits per tier, stale answers,
origin fetches and bytes served, and the config lookups. The counters belong to the isolate that
answers ("scope": "isolate"): on wrangler dev that is the whole picture; on Cloudflare each isolate
answers for itself.`,
  options: {},
  async run({ api, json, print, positionals }) {
    const id = positionals[0] === undefined ? undefined : siteId(positionals[0]);
    const { body } = await api.stats(id);
    if (json) {
      print(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.OK;
    }
    print(formatStats(body));
    return EXIT.OK;
  },
};

/**
 * A heading with the scope, one row per site with a column per tier that has hits, and the config lookups.
 *
 * @param {Record<string, any>} body
 * @returns {string}
 */
function formatStats(body) {
  let text = `scope: ${printable(body.scope ?? "?")}, since ${printable(body.since ?? "?")}\n`;
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
      ...(optimizing ? [{ title: "OPTIMIZED T/O/F", align: right }] : []),
      { title: "BYTES", align: right },
    ];
    text += formatTable(columns, rows);
  }
  if (isObject(body.config)) {
    const lookups = Object.entries(body.config).map(([name, count]) => `${name} ${count}`);
    text += `config lookups: ${printable(lookups.join(", "))}\n`;
  }
  return text;
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
