import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { usageError } from "./errors.mjs";
import { isObject } from "./json.mjs";

/** A site id as docs/configuration.md defines it; checked here because it becomes part of a URL path. */
export const SITE_ID = /^[A-Za-z0-9_-]{8,64}$/;

/**
 * The sites of a file, checked only as far as the CLI needs (each is an object; an `id`, if any, is a
 * site id); the API validates the rest.
 *
 * @typedef {object} SiteFile
 * @property {Record<string, unknown>[]} sites
 * @property {boolean} isList the file held a list (bulk import) rather than one site
 */

/**
 * Reads one site or a list of sites from a JSON or YAML file (`-` is standard input). `.json` is parsed as
 * JSON; anything else as YAML, which reads JSON too, so the content decides. A YAML stream of several
 * documents is a list. What `tiercel sites get --json` and `sites list --json` print (`{"site": …}`,
 * `{"sites": […], "cursor": null}`) is accepted too, so a backup can be put back as it is.
 *
 * Every problem is a usage error (exit status 2), found before anything is sent.
 *
 * @param {string} path
 * @param {() => Promise<string>} readStdin
 * @returns {Promise<SiteFile>}
 */
export async function readSiteFile(path, readStdin) {
  const name = path === "-" ? "standard input" : path;
  /** @type {string} */
  let text;
  try {
    text = path === "-" ? await readStdin() : await readFile(path, "utf8");
  } catch (error) {
    const reason = /** @type {NodeJS.ErrnoException} */ (error).code ?? String(error);
    throw usageError(`cannot read ${name}: ${reason}`, "unreadable_file");
  }
  const value = extname(path).toLowerCase() === ".json" ? parseJson(text, name) : await parseYaml(text, name);
  return sitesOf(unwrapAnswer(value), name);
}

/**
 * @param {string} text
 * @param {string} name
 * @returns {unknown}
 */
function parseJson(text, name) {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (error) {
    throw usageError(`${name} is not valid JSON: ${/** @type {Error} */ (error).message}`, "invalid_file");
  }
}

/**
 * @param {string} text
 * @param {string} name
 * @returns {Promise<unknown>}
 */
async function parseYaml(text, name) {
  // Loaded here, not at startup: it takes longer to load than the rest of the CLI, and most commands read
  // no file.
  const { parseAllDocuments } = await import("yaml");
  const documents = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(documents)) return undefined; // an empty stream
  const values = [];
  for (const document of documents) {
    const [error] = document.errors;
    if (error !== undefined) {
      throw usageError(`${name} is not valid YAML: ${firstLine(error.message)}`, "invalid_file");
    }
    try {
      values.push(document.toJS({ maxAliasCount: 100 }));
    } catch (error) {
      throw usageError(`${name} is not valid YAML: ${firstLine(/** @type {Error} */ (error).message)}`, "invalid_file");
    }
  }
  if (values.length === 1) return values[0];
  return values.flat();
}

/**
 * @param {unknown} value
 * @returns {unknown}
 */
function unwrapAnswer(value) {
  if (!isObject(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "site" && isObject(value.site)) return value.site;
  if (Array.isArray(value.sites) && keys.every((key) => key === "sites" || key === "cursor")) return value.sites;
  return value;
}

/**
 * @param {unknown} value
 * @param {string} name
 * @returns {SiteFile}
 */
function sitesOf(value, name) {
  const isList = Array.isArray(value);
  const sites = isList ? value : [value];
  if (value === undefined || value === null || sites.length === 0) {
    throw usageError(`${name} holds no site`, "invalid_file");
  }
  sites.forEach((site, index) => {
    const which = isList ? `site ${index + 1} of ${name}` : name;
    if (!isObject(site)) throw usageError(`${which} is not an object`, "invalid_file");
    if (site.id !== undefined && (typeof site.id !== "string" || !SITE_ID.test(site.id))) {
      throw usageError(`${which}: id must be 8–64 characters of A–Z, a–z, 0–9, _ or -`, "invalid_file");
    }
  });
  return { sites, isList };
}

/**
 * @param {string} text
 * @returns {string}
 */
function firstLine(text) {
  return text.split("\n", 1)[0] ?? text;
}
