import { EXIT, usageError } from "../errors.mjs";
import { formatTable, printable } from "../output.mjs";
import { siteId } from "./sites.mjs";

/** @type {import("../args.mjs").CommandSpec} */
export const tokensCreate = {
  name: "tokens create",
  args: ["<name>"],
  summary: "create a token scoped to some sites (global token only)",
  help: `Creates an admin token that can read, edit (not the hosts) and purge only the sites named, and
read their audit records. The secret is printed once, here; the Worker keeps only its SHA-256.

  --site <id>   a site the token may touch; repeat for more (at least one, at most 100)`,
  options: { site: { type: "string", multiple: true } },
  async run({ api, json, print, positionals, values }) {
    const name = positionals[0];
    if (name === undefined || name.trim() === "") throw usageError("give the token a name");
    /** @type {string[]} */
    const sites = (values.site ?? []).map((/** @type {string} */ id) => siteId(id));
    if (sites.length === 0) throw usageError("name at least one site with --site <id>");
    const { body } = await api.createToken({ name, sites });
    if (json) {
      print(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.OK;
    }
    print(`token ${printable(body.token?.id ?? "?")} "${printable(name)}" for ${printable(sites.join(", "))}\n`);
    print(`secret (shown once, keep it now): ${printable(body.secret ?? "")}\n`);
    return EXIT.OK;
  },
};

/** @type {import("../args.mjs").CommandSpec} */
export const tokensList = {
  name: "tokens list",
  args: [],
  summary: "list the scoped tokens, without their secrets (global token only)",
  help: "Lists every scoped token: its id, name, sites and when it was made. Secrets are never shown again.",
  options: {},
  async run({ api, json, print }) {
    const { body } = await api.listTokens();
    if (json) {
      print(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.OK;
    }
    const tokens = Array.isArray(body.tokens) ? body.tokens : [];
    if (tokens.length === 0) {
      print("no tokens\n");
      return EXIT.OK;
    }
    const rows = tokens.map((/** @type {any} */ t) => [t.id, t.name, (t.sites ?? []).join(","), t.createdAt]);
    print(formatTable([{ title: "ID" }, { title: "NAME" }, { title: "SITES" }, { title: "CREATED" }], rows));
    return EXIT.OK;
  },
};

/** @type {import("../args.mjs").CommandSpec} */
export const tokensRevoke = {
  name: "tokens revoke",
  args: ["<token-id>"],
  summary: "revoke a scoped token (global token only)",
  help: "Revokes a scoped token by its id (tiercel tokens list): it is refused from the next request on.",
  options: {},
  async run({ api, json, print, positionals }) {
    const id = positionals[0];
    if (id === undefined || !/^[0-9a-f]{16}$/.test(id))
      throw usageError(`"${id ?? ""}" is not a token id (16 hex digits)`);
    const { body } = await api.revokeToken(id);
    print(json ? `${JSON.stringify(body, null, 2)}\n` : `revoked token ${id}\n`);
    return EXIT.OK;
  },
};
