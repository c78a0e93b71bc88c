import { CliError, EXIT, usageError } from "../errors.mjs";
import { describeOrigin, formatFields, formatTable, listOf, plural, printable, siteFields } from "../output.mjs";
import { readSiteFile, SITE_ID } from "../site-file.mjs";

/**
 * @typedef {import("../args.mjs").CommandSpec} CommandSpec
 * @typedef {import("../args.mjs").CommandContext} CommandContext
 */

/** @type {CommandSpec} */
export const sitesList = {
  name: "sites list",
  args: [],
  summary: "list every site",
  help: `Lists every site: its id, hosts and origin. Follows the API's pages to the end.
With --json, prints {"sites": [every site], "cursor": null}: the pages joined into one answer.`,
  options: {},
  async run({ api, json, print }) {
    /** @type {Record<string, any>[]} */
    const sites = [];
    for await (const page of api.listSitePages()) sites.push(...page.body.sites);
    if (json) {
      print(`${JSON.stringify({ sites, cursor: null }, null, 2)}\n`);
      return EXIT.OK;
    }
    if (sites.length === 0) {
      print("no sites\n");
      return EXIT.OK;
    }
    const rows = sites.map((site) => {
      const origin = describeOrigin(site.origin);
      return [site.id, listOf(site.hosts), origin.kind, origin.where];
    });
    print(formatTable([{ title: "ID" }, { title: "HOSTS" }, { title: "KIND" }, { title: "ORIGIN" }], rows));
    return EXIT.OK;
  },
};

/** @type {CommandSpec} */
export const sitesGet = {
  name: "sites get",
  args: ["<id>"],
  summary: "show one site",
  help: "Shows one site's whole config, one field per line (nested fields as dotted paths).",
  options: {},
  async run({ api, json, print, positionals }) {
    const answer = await api.getSite(siteId(positionals[0]));
    print(json ? `${JSON.stringify(answer.body, null, 2)}\n` : formatFields(siteFields(answer.body.site ?? {})));
    return EXIT.OK;
  },
};

/** The flags that build a site; any of them means "from flags, not from a file". */
const SITE_FLAGS = /** @type {const} */ ({
  host: { type: "string", multiple: true },
  "origin-url": { type: "string" },
  "connect-to": { type: "string" },
  "allow-private": { type: "boolean" },
  id: { type: "string" },
  "edge-ttl": { type: "string" },
  "browser-ttl": { type: "string" },
});

/** @type {CommandSpec} */
export const sitesPut = {
  name: "sites put",
  args: ["[file]"],
  summary: "create or replace sites, from a JSON or YAML file or from flags",
  help: `tiercel sites put <file>
  Reads one site, or a list of sites (bulk import), from a file: .json as JSON, anything else as YAML
  (which reads JSON too); "-" reads standard input. A YAML stream of several documents is a list. The
  answers of "sites get --json" and "sites list --json" are accepted as they are, so a backup goes back in
  with "sites put backup.json". The fields are those of docs/configuration.md, plus "hosts".
  A site without "id" is created (the API generates its id); a site with "id" replaces the site with that
  id, or creates it. Each result is printed as it comes; after a failure the next site is still sent, and
  the exit status is 1 if any failed. The file is checked before anything is sent: a file that cannot be
  read or parsed, or an entry that is not an object, sends nothing (exit status 2).

tiercel sites put --host <host>... --origin-url <url> [options]
  Creates one site with an http origin (a bucket site needs a file). With --id, replaces the whole site
  with that id: what the flags do not say is reset to its default.

  --host <host>            a host the site answers for (lower case, no port); repeat for more
  --origin-url <url>       the backend's base URL, e.g. https://backend.example.com
  --connect-to <host:port> connect here instead of the URL's host, which is still sent as Host
  --allow-private          allow a loopback or private origin address (local testing)
  --id <id>                put the site under this id instead of creating a new one
  --edge-ttl <seconds>     freshness Tiercel gives responses, instead of the origin's
  --browser-ttl <seconds>  max-age clients get, instead of the origin's Cache-Control`,
  options: SITE_FLAGS,
  async run(context) {
    const { values, positionals, readStdin } = context;
    const [file] = positionals;
    const flagsGiven = Object.keys(SITE_FLAGS).some((flag) => values[flag] !== undefined);
    if (file !== undefined && flagsGiven) throw usageError("give a site file or site flags, not both");
    if (file === undefined && !flagsGiven) {
      throw usageError("give a site file (JSON or YAML), or --host and --origin-url; see tiercel sites put --help");
    }
    const { sites, isList } =
      file === undefined ? { sites: [siteFromFlags(values)], isList: false } : await readSiteFile(file, readStdin);
    return isList ? putMany(sites, context) : putOne(/** @type {Record<string, unknown>} */ (sites[0]), context);
  },
};

/**
 * @param {Record<string, unknown>} site
 * @param {CommandContext} context
 */
async function putOne(site, { api, json, print }) {
  const answer = await putSite(api, site);
  print(json ? `${JSON.stringify(answer.body, null, 2)}\n` : putLine(answer));
  return EXIT.OK;
}

/**
 * Sends every site, one after the other, and goes on after an error answer: one bad entry does not hold up
 * the rest of an import. A Worker that cannot be reached stops the import, since every later site would
 * fail the same way. Under --json each answer (or error answer) is one line of JSON.
 *
 * @param {Record<string, unknown>[]} sites
 * @param {CommandContext} context
 */
async function putMany(sites, { api, json, print, report }) {
  let failed = 0;
  for (const [index, site] of sites.entries()) {
    try {
      const answer = await putSite(api, site);
      print(json ? `${JSON.stringify(answer.body)}\n` : putLine(answer));
    } catch (error) {
      if (!(error instanceof CliError)) throw error;
      report(error, describeEntry(site, index));
      if (error.exitCode !== EXIT.API) {
        const left = sites.length - index;
        throw new CliError("stopped", `stopped: ${left} of ${plural(sites.length, "site")} not sent or not confirmed`, {
          exitCode: error.exitCode,
        });
      }
      failed++;
    }
  }
  if (failed === 0) return EXIT.OK;
  report(new CliError("some_failed", `${failed} of ${plural(sites.length, "site")} failed`, { exitCode: EXIT.API }));
  return EXIT.API;
}

/**
 * POST for a site without an id, PUT for one with.
 *
 * @param {import("../api.mjs").AdminClient} api
 * @param {Record<string, unknown>} site
 */
function putSite(api, site) {
  return typeof site.id === "string" ? api.putSite(site.id, site) : api.createSite(site);
}

/**
 * `created  k3n9x2m4q8w1  a.example, b.example`
 *
 * @param {import("../api.mjs").ApiAnswer} answer
 */
function putLine({ status, body }) {
  const site = body.site ?? {};
  const verb = status === 201 ? "created" : "saved";
  return `${verb.padEnd(7)}  ${printable(site.id)}  ${printable(listOf(site.hosts))}\n`;
}

/**
 * @param {Record<string, unknown>} site
 * @param {number} index
 */
function describeEntry(site, index) {
  const what = typeof site.id === "string" ? site.id : Array.isArray(site.hosts) ? listOf(site.hosts) : "new site";
  return `site ${index + 1} (${what})`;
}

/**
 * One http site from the flags of `sites put`.
 *
 * @param {Record<string, any>} values
 * @returns {Record<string, unknown>}
 */
function siteFromFlags(values) {
  /** @type {string[]} */
  const hosts = values.host ?? [];
  if (hosts.length === 0) throw usageError("--host is required with --origin-url (repeat it for each host)");
  if (values["origin-url"] === undefined) throw usageError("--origin-url is required with --host");
  /** @type {Record<string, unknown>} */
  const origin = { kind: "http", url: values["origin-url"] };
  if (values["connect-to"] !== undefined) origin.connectTo = values["connect-to"];
  if (values["allow-private"]) origin.allowPrivate = true;
  /** @type {Record<string, unknown>} */
  const cache = {};
  if (values["edge-ttl"] !== undefined) cache.edgeTtl = seconds("--edge-ttl", values["edge-ttl"]);
  if (values["browser-ttl"] !== undefined) cache.browserTtl = seconds("--browser-ttl", values["browser-ttl"]);
  return {
    ...(values.id === undefined ? {} : { id: siteId(values.id) }),
    hosts,
    origin,
    ...(Object.keys(cache).length === 0 ? {} : { cache }),
  };
}

/**
 * @param {string} flag
 * @param {string} value
 * @returns {number}
 */
function seconds(flag, value) {
  if (!/^[0-9]{1,9}$/.test(value)) throw usageError(`${flag} must be a whole number of seconds, not "${value}"`);
  return Number(value);
}

/** @type {CommandSpec} */
export const sitesDelete = {
  name: "sites delete",
  args: ["<id>"],
  summary: "delete a site",
  help: "Deletes a site: its hosts are no longer served by Tiercel.",
  options: {},
  async run({ api, json, print, positionals }) {
    const answer = await api.deleteSite(siteId(positionals[0]));
    print(json ? `${JSON.stringify(answer.body, null, 2)}\n` : `deleted ${printable(answer.body.deleted)}\n`);
    return EXIT.OK;
  },
};

/**
 * A site id from the command line. It becomes a path segment, so anything else (`..`, `a/b`) is refused
 * here rather than sent.
 *
 * @param {string | undefined} value
 * @returns {string}
 */
export function siteId(value) {
  if (value === undefined || !SITE_ID.test(value)) {
    throw usageError(`"${value ?? ""}" is not a site id (8–64 characters of A–Z, a–z, 0–9, _ or -)`);
  }
  return value;
}
