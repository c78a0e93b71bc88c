import { createAdminClient } from "./api.mjs";
import { parseCommandLine } from "./args.mjs";
import { audit } from "./commands/audit.mjs";
import { purge } from "./commands/purge.mjs";
import { sitesDelete, sitesGet, sitesList, sitesPut } from "./commands/sites.mjs";
import { stats } from "./commands/stats.mjs";
import { tokensCreate, tokensList, tokensRevoke } from "./commands/tokens.mjs";
import { resolveConnection } from "./connection.mjs";
import { CliError, EXIT } from "./errors.mjs";
import { helpText } from "./help.mjs";
import { formatError } from "./output.mjs";

/** Every command, in the order `tiercel help` lists them. */
export const COMMANDS = [
  sitesList,
  sitesGet,
  sitesPut,
  sitesDelete,
  purge,
  stats,
  tokensCreate,
  tokensList,
  tokensRevoke,
  audit,
];

/**
 * What the CLI touches of its process, so it can run inside a test as well.
 *
 * @typedef {object} CliIo
 * @property {Record<string, string | undefined>} env
 * @property {{ write(text: string): unknown }} stdout
 * @property {{ write(text: string): unknown }} stderr
 * @property {() => Promise<string>} readStdin
 * @property {typeof fetch} [fetch]
 */

/**
 * Runs one `tiercel` command line and resolves to its exit status; it never throws.
 *
 * @param {string[]} argv without the node and script paths
 * @param {CliIo} io
 * @returns {Promise<number>}
 */
export async function runCli(argv, io) {
  let json = false;
  /**
   * Errors go to standard error; under --json the API's own error answer also goes to standard output, so
   * a script reads the API's JSON there whatever happened.
   *
   * @param {unknown} error
   * @param {string} [about]
   */
  const report = (error, about) => {
    if (json && error instanceof CliError && error.body !== undefined) {
      io.stdout.write(`${JSON.stringify(error.body)}\n`);
    }
    io.stderr.write(formatError(error, about));
  };
  try {
    const request = parseCommandLine(argv, COMMANDS);
    if (request.kind === "help") {
      (request.exitCode === EXIT.OK ? io.stdout : io.stderr).write(helpText(request.topic, COMMANDS));
      return request.exitCode;
    }
    json = request.globals.json === true;
    const connection = resolveConnection(request.globals, io.env);
    const api = createAdminClient({ ...connection, ...(io.fetch === undefined ? {} : { fetch: io.fetch }) });
    return await request.command.run({
      api,
      values: request.values,
      positionals: request.positionals,
      json,
      print: (text) => io.stdout.write(text),
      report,
      readStdin: io.readStdin,
      warn: (text) => io.stderr.write(`tiercel: ${text}\n`),
    });
  } catch (error) {
    report(error);
    return error instanceof CliError ? error.exitCode : EXIT.API;
  }
}
