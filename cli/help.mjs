import { subcommandsOf } from "./args.mjs";
import { DEFAULT_URL, LOCAL_DEV_TOKEN } from "./connection.mjs";

/** @typedef {import("./args.mjs").CommandSpec} CommandSpec */

const GLOBAL_HELP = `Global options (before or after the command):
  --url <base>     the Worker's address (default: $TIERCEL_URL, else ${DEFAULT_URL})
  --json           print the API's JSON answers as they are, for scripts
  --timeout <ms>   give up on a request after this many milliseconds (default 10000)
  -h, --help       show help

Environment:
  TIERCEL_URL      the default for --url
  TIERCEL_TOKEN    the Worker's admin token (its ADMIN_TOKEN secret, or a scoped token from
                   "tiercel tokens create"). Required, except that against
                   ${DEFAULT_URL} the local development token "${LOCAL_DEV_TOKEN}", which
                   npm start gives the local Worker, is used when it is unset. There is no --token
                   flag: a token on the command line would land in shell history.

Exit status:
  0  done
  1  the API answered with an error (4xx or 5xx), or some sites of a bulk put failed
  2  usage error: bad options or arguments, no token, a file that cannot be read or parsed
  3  the Worker could not be reached: connection refused, DNS failure, timeout

Errors are printed to standard error as "tiercel: <message> (<code>)", with the fields the API names
in an invalid config on the lines below.`;

/**
 * The help text for a topic: "" for the overview, a group (`sites`) or a command name.
 *
 * @param {string} topic
 * @param {CommandSpec[]} commands
 * @returns {string}
 */
export function helpText(topic, commands) {
  const command = commands.find((candidate) => candidate.name === topic);
  if (command !== undefined) {
    return `Usage: tiercel ${usageOf(command)}\n\n${command.summary}.\n\n${command.help}\n\n${GLOBAL_HELP}\n`;
  }
  const listed = topic === "" ? commands : commands.filter((candidate) => candidate.name.startsWith(`${topic} `));
  const heading =
    topic === ""
      ? "tiercel: manage a Tiercel edge cache (sites, purges, stats, tokens, audit) through its admin API\n\nUsage: tiercel <command> [options]"
      : `Usage: tiercel ${topic} ${subcommandsOf(topic, commands).replace(/, | or /g, "|")} [options]`;
  const width = Math.max(...listed.map((c) => usageOf(c).length));
  const lines = listed.map((c) => `  ${usageOf(c).padEnd(width)}  ${c.summary}`);
  const help = topic === "" ? [`  ${"help [command]".padEnd(width)}  show help for a command`] : [];
  return `${heading}\n\nCommands:\n${[...lines, ...help].join("\n")}\n\nRun "tiercel <command> --help" for a command's options.\n\n${GLOBAL_HELP}\n`;
}

/**
 * @param {CommandSpec} command
 * @returns {string}
 */
function usageOf(command) {
  return [command.name, ...command.args, ...(Object.keys(command.options).length > 0 ? ["[options]"] : [])].join(" ");
}
