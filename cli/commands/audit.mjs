import { EXIT } from "../errors.mjs";
import { formatTable, printable } from "../output.mjs";
import { siteId } from "./sites.mjs";

/** @type {import("../args.mjs").CommandSpec} */
export const audit = {
  name: "audit",
  args: [],
  summary: "show the audit log: who changed what, when",
  help: `Shows the newest changes first: site creates, edits, deletes and purges, token creates and
revokes, with who made them ("admin" for the global token, else the scoped token's name and id).
A scoped token sees its own sites' records only.

  --site <id>       only this site's records
  --limit <n>       how many (1–500, default 50)
  --before <mark>   older records: the "next" mark a page prints, or an ISO 8601 time`,
  options: {
    site: { type: "string" },
    limit: { type: "string" },
    before: { type: "string" },
  },
  async run({ api, json, print, values }) {
    const query = {
      ...(values.site === undefined ? {} : { site: siteId(values.site) }),
      ...(values.limit === undefined ? {} : { limit: values.limit }),
      ...(values.before === undefined ? {} : { before: values.before }),
    };
    const { body } = await api.audit(query);
    if (json) {
      print(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.OK;
    }
    const records = Array.isArray(body.records) ? body.records : [];
    if (records.length === 0) print("no records\n");
    else {
      const rows = records.map((/** @type {any} */ r) => [
        r.at,
        r.actor?.kind === "token" ? `${r.actor.name} (${r.actor.id})` : "admin",
        r.action,
        r.site ?? "",
        summaryOf(r.summary),
      ]);
      const columns = [{ title: "WHEN" }, { title: "WHO" }, { title: "ACTION" }, { title: "SITE" }, { title: "WHAT" }];
      print(formatTable(columns, rows));
    }
    if (typeof body.next === "string") print(`older: tiercel audit --before ${printable(body.next)}\n`);
    return EXIT.OK;
  },
};

/** @param {unknown} summary */
function summaryOf(summary) {
  if (typeof summary !== "object" || summary === null) return "";
  return Object.entries(summary)
    .filter(([, value]) => value !== false && !(Array.isArray(value) && value.length === 0))
    .map(
      ([name, value]) =>
        `${name}=${Array.isArray(value) ? value.join(",") : typeof value === "object" ? JSON.stringify(value) : value}`,
    )
    .join(" ");
}
