/**
 * Exit statuses of `tiercel`, documented in `tiercel help`. Scripts branch on them, so they never change
 * meaning.
 */
export const EXIT = Object.freeze({
  /** Everything asked for was done. */
  OK: 0,
  /** The admin API answered with an error (4xx or 5xx), or with something that is not the admin API. */
  API: 1,
  /** The command line or an input file is wrong; nothing was sent. */
  USAGE: 2,
  /** The Worker could not be reached: connection refused, DNS failure, timeout. */
  UNREACHABLE: 3,
});

/**
 * The one error type of the CLI: a stable `code`, the exit status it leads to, and optional detail lines
 * (the API's `issues`, for example). Printed as `tiercel: <message> (<code>)`.
 */
export class CliError extends Error {
  /**
   * @param {string} code stable and machine-readable: the API's error code, or one of the CLI's own
   * @param {string} message one sentence, never containing the token
   * @param {object} options
   * @param {number} options.exitCode one of {@link EXIT}
   * @param {string[]} [options.details] more lines, printed indented below the message
   * @param {unknown} [options.body] the API's JSON answer, printed as is under `--json`
   * @param {unknown} [options.cause]
   */
  constructor(code, message, { exitCode, details = [], body, cause }) {
    super(message, { cause });
    this.name = "CliError";
    this.code = code;
    this.exitCode = exitCode;
    this.details = details;
    this.body = body;
  }
}

/**
 * A mistake on the command line or in an input file (exit status 2).
 *
 * @param {string} message
 * @param {string} [code]
 */
export function usageError(message, code = "usage") {
  return new CliError(code, message, { exitCode: EXIT.USAGE });
}
