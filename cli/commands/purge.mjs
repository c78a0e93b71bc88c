import { EXIT, usageError } from "../errors.mjs";
import { plural, printable } from "../output.mjs";
import { siteId } from "./sites.mjs";

/** @type {import("../args.mjs").CommandSpec} */
export const purge = {
  name: "purge",
  args: ["<site-id>"],
  summary: "purge URLs, tags or everything of a site",
  help: `Purges cached entries of one site. Give at least one of --purge-url, --tag or --all.

  --purge-url <url>  an absolute URL to purge, as clients request it; repeat for more. Deleted at
                     once from KV and from this data center's cache; elsewhere within the control
                     window (about 2 s; the answer says). URL purges are always hard.
  --tag <tag>        a cache tag to purge; repeat for more. Reaches every data center within the
                     control window (about 2 s by default; the answer says).
  --all              everything the site has cached (its generation is bumped). Same reach as tags.
  --soft             with --tag or --all: mark the entries stale instead, so they can still be served
                     stale while they revalidate and within stale-if-error.

--url is the Worker's address, as for every command; put it before "purge" (or use TIERCEL_URL).
Written after "purge", --url still means a URL to purge, as it did before --purge-url existed:
that spelling is deprecated and prints a notice.`,
  options: {
    "purge-url": { type: "string", multiple: true },
    /** Deprecated spelling of --purge-url (it clashed with the global --url). */
    url: { type: "string", multiple: true },
    tag: { type: "string", multiple: true },
    all: { type: "boolean" },
    soft: { type: "boolean" },
  },
  async run({ api, json, print, positionals, values, warn }) {
    const id = siteId(positionals[0]);
    if (values.url !== undefined) {
      warn(
        'after "purge", --url is deprecated: use --purge-url for URLs to purge (--url names the Worker, before the command)',
      );
    }
    /** @type {string[]} */
    const urls = [...(values["purge-url"] ?? []), ...(values.url ?? [])];
    /** @type {string[]} */
    const tags = values.tag ?? [];
    const all = values.all === true;
    const soft = values.soft === true;
    if (urls.length === 0 && tags.length === 0 && !all) {
      throw usageError("say what to purge: --purge-url, --tag or --all; see tiercel purge --help");
    }
    if (soft && tags.length === 0 && !all) throw usageError("--soft applies to --tag and --all; URL purges are hard");
    for (const url of urls) checkPurgeUrl(url);
    for (const tag of tags) if (tag === "") throw usageError("--tag needs a tag, not an empty string");

    const answer = await api.purge(id, {
      ...(urls.length > 0 ? { urls } : {}),
      ...(tags.length > 0 ? { tags } : {}),
      ...(all ? { all } : {}),
      ...(soft ? { soft } : {}),
    });
    if (json) {
      print(`${JSON.stringify(answer.body, null, 2)}\n`);
      return EXIT.OK;
    }
    /** @type {string[]} */
    const what = [];
    if (all) what.push("everything");
    if (urls.length > 0) what.push(plural(urls.length, "URL"));
    if (tags.length > 0) what.push(plural(tags.length, "tag"));
    const mode = soft ? "soft-purged" : "purged";
    const reach = answer.body.propagation;
    // A string from Workers before the control feed; an object since ({here, everywhereWithinMs}).
    const propagation =
      typeof reach === "string"
        ? `; reaches ${reach}`
        : typeof reach?.everywhereWithinMs === "number"
          ? `; reaches this data center at once; every data center within ${(reach.everywhereWithinMs / 1000).toFixed(reach.everywhereWithinMs < 10_000 ? 2 : 0)} s`
          : "";
    print(`${mode} ${what.join(", ")} of site ${id}${printable(propagation)}\n`);
    return EXIT.OK;
  },
};

/**
 * URL purges go through the same key function as requests, which needs the absolute URL a client asks
 * for; a path alone would purge nothing, silently.
 *
 * @param {string} value
 */
function checkPurgeUrl(value) {
  /** @type {URL | undefined} */
  let url;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw usageError(
      `--purge-url must be an absolute http or https URL such as https://example.com/a.css, not "${value}"`,
    );
  }
}
