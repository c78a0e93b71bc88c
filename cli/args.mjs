import { parseArgs } from "node:util";
import { usageError } from "./errors.mjs";

/**
 * @typedef {NonNullable<import("node:util").ParseArgsConfig["options"]>} OptionsConfig
 * @typedef {import("./api.mjs").AdminClient} AdminClient
 */

/**
 * What a command runs with.
 *
 * @typedef {object} CommandContext
 * @property {AdminClient} api
 * @property {Record<string, any>} values the command's options, parsed
 * @property {string[]} positionals its arguments
 * @property {boolean} json print the API's JSON instead of text
 * @property {(text: string) => void} print to standard output
 * @property {(error: unknown, about?: string) => void} report an error to standard error (and, under
 *   --json, the API's error answer to standard output), for commands that go on after one; `about` says
 *   what it concerns
 * @property {() => Promise<string>} readStdin
 * @property {(text: string) => void} warn a notice to standard error (e.g. a deprecated spelling)
 */

/**
 * One command: its words, its options and arguments, its help, and what it does.
 *
 * @typedef {object} CommandSpec
 * @property {string} name its words, e.g. `sites put`
 * @property {string[]} args `<name>` for a required argument, `[name]` for an optional one
 * @property {string} summary one line for the command list
 * @property {string} help the rest of `tiercel <command> --help`: what it does, its options
 * @property {OptionsConfig} options its own options; one named like a global option replaces it after the
 *   command (the deprecated `purge --url`)
 * @property {(context: CommandContext) => Promise<number>} run resolves to the exit status
 */

/** Accepted before or after the command. */
export const GLOBAL_OPTIONS = /** @type {const} */ ({
  url: { type: "string" },
  json: { type: "boolean" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
});

/** Global options that take a value: needed to tell a value from a command word. */
const GLOBAL_VALUE_OPTIONS = new Set(["--url", "--timeout"]);

/**
 * @typedef {{ url?: string, json?: boolean, timeout?: string }} GlobalValues
 *
 * @typedef {{ kind: "help", topic: string, exitCode: 0 | 2 }} HelpRequest `topic` is a command name, a
 *   group (`sites`) or "" for the overview; exit status 2 when no command was given
 * @typedef {{ kind: "run", command: CommandSpec, values: Record<string, any>, positionals: string[],
 *   globals: GlobalValues }} RunRequest
 */

/**
 * Splits a command line into the command, its options and arguments, and the global options. Global options
 * may come before or after the command words; before them they always mean the global option, which is how
 * `tiercel --url BASE purge ID --url URL` tells the two `--url`s apart.
 *
 * @param {string[]} argv without the node and script paths
 * @param {CommandSpec[]} commands
 * @returns {HelpRequest | RunRequest}
 */
export function parseCommandLine(argv, commands) {
  refuseTokenFlag(argv);
  const first = nextWord(argv, 0);
  const leading = parseOptions(argv.slice(0, first === -1 ? argv.length : first), GLOBAL_OPTIONS, false, "tiercel");
  if (first === -1) return { kind: "help", topic: "", exitCode: leading.values.help ? 0 : 2 };

  const word = /** @type {string} */ (argv[first]);
  if (word === "help") return { kind: "help", topic: helpTopic(argv.slice(first + 1), commands), exitCode: 0 };

  const isGroup = commands.some((command) => command.name.startsWith(`${word} `));
  /** @type {number[]} */
  const wordIndexes = [first];
  let name = word;
  if (isGroup) {
    const second = nextWord(argv, first + 1);
    if (second === -1) {
      if (asksForHelp(argv.slice(first + 1)) || leading.values.help) return { kind: "help", topic: word, exitCode: 0 };
      throw usageError(`${word} needs a subcommand: ${subcommandsOf(word, commands)}`);
    }
    wordIndexes.push(second);
    name = `${word} ${argv[second]}`;
  }
  const command = commands.find((candidate) => candidate.name === name);
  if (command === undefined) {
    throw usageError(
      isGroup
        ? `unknown command "${name}"; ${word} has ${subcommandsOf(word, commands)}`
        : `unknown command "${word}"; see tiercel help`,
    );
  }

  const rest = argv.slice(first + 1).filter((_, index) => !wordIndexes.includes(index + first + 1));
  if (asksForHelp(rest) || leading.values.help) return { kind: "help", topic: name, exitCode: 0 };

  const options = { ...GLOBAL_OPTIONS, ...command.options };
  const parsed = parseOptions(rest, options, true, `tiercel ${name}`);
  checkArgumentCount(command, parsed.positionals);

  /** @type {Record<string, any>} */
  const values = parsed.values;
  /** @type {GlobalValues} */
  const globals = { ...leading.values };
  for (const key of ["url", "json", "timeout"]) {
    // After the command, a command's own option of the same name wins (the deprecated `purge --url`).
    if (!(key in command.options) && values[key] !== undefined) Object.assign(globals, { [key]: values[key] });
  }
  return { kind: "run", command, values, positionals: parsed.positionals, globals };
}

/**
 * A token must never be typed on a command line, where shell history and `ps` keep it. The message does
 * not repeat what was given.
 *
 * @param {string[]} argv
 */
function refuseTokenFlag(argv) {
  const end = argv.indexOf("--");
  const options = end === -1 ? argv : argv.slice(0, end);
  if (options.some((arg) => arg === "--token" || arg.startsWith("--token="))) {
    throw usageError(
      "there is no --token option: a token on the command line lands in shell history; set TIERCEL_TOKEN",
    );
  }
}

/**
 * The index of the next argument that is not an option (nor a global option's value), or -1.
 *
 * @param {string[]} argv
 * @param {number} from
 * @returns {number}
 */
function nextWord(argv, from) {
  for (let index = from; index < argv.length; index++) {
    const arg = /** @type {string} */ (argv[index]);
    if (arg === "--") return -1;
    if (arg.startsWith("-") && arg !== "-") {
      if (GLOBAL_VALUE_OPTIONS.has(arg)) index++;
      continue;
    }
    return index;
  }
  return -1;
}

/**
 * @param {string[]} args
 * @returns {boolean}
 */
function asksForHelp(args) {
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

/**
 * @param {string[]} args
 * @param {OptionsConfig} options
 * @param {boolean} allowPositionals
 * @param {string} usage what to point at in the message
 */
function parseOptions(args, options, allowPositionals, usage) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    // parseArgs explains at length how to pass an argument starting with "-"; the first sentence is the point.
    const [reason = ""] = /** @type {Error} */ (error).message.split(/\.\s|\n/, 1);
    throw usageError(`${reason.replace(/\.$/, "")}; see ${usage} --help`);
  }
}

/**
 * @param {CommandSpec} command
 * @param {string[]} positionals
 */
function checkArgumentCount(command, positionals) {
  const required = command.args.filter((arg) => arg.startsWith("<"));
  if (positionals.length < required.length) {
    throw usageError(`${command.name} needs ${required.slice(positionals.length).join(" ")}`);
  }
  if (positionals.length > command.args.length) {
    const extra = positionals.slice(command.args.length).join(" ");
    throw usageError(`${command.name} takes ${command.args.join(" ") || "no arguments"}, not also "${extra}"`);
  }
}

/**
 * `tiercel help sites put` → "sites put"; an unknown topic is a usage error.
 *
 * @param {string[]} args
 * @param {CommandSpec[]} commands
 * @returns {string}
 */
function helpTopic(args, commands) {
  const topic = args.filter((arg) => !arg.startsWith("-")).join(" ");
  const known = topic === "" || commands.some((c) => c.name === topic || c.name.startsWith(`${topic} `));
  if (!known) throw usageError(`no help for "${topic}": there is no such command; see tiercel help`);
  return topic;
}

/**
 * @param {string} group
 * @param {CommandSpec[]} commands
 * @returns {string} e.g. "list, get, put or delete"
 */
export function subcommandsOf(group, commands) {
  const names = commands.filter((c) => c.name.startsWith(`${group} `)).map((c) => c.name.slice(group.length + 1));
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}` : (names[0] ?? "");
}
