import { usageError } from "./errors.mjs";

/** Where `npm start` runs the Worker. */
export const DEFAULT_URL = "http://localhost:8787";

/** The local Worker's addresses: wrangler prints the 127.0.0.1 one, the docs use localhost. */
const LOCAL_URLS = new Set([DEFAULT_URL, "http://127.0.0.1:8787", "http://[::1]:8787"]);

/**
 * The admin token `npm start` gives the local Worker. Used only against {@link LOCAL_URLS} and only when
 * `TIERCEL_TOKEN` is unset, so a real deployment never sees it.
 */
export const LOCAL_DEV_TOKEN = "tiercel-local-admin-token-not-a-secret";

const DEFAULT_TIMEOUT_MS = 10_000;
/** Longest `--timeout` accepted: what a Node timer can hold. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** Visible ASCII only: anything else cannot travel in an Authorization header. */
const BEARER_TOKEN = /^[\x21-\x7e]+$/;

/**
 * @typedef {object} Connection
 * @property {string} baseUrl the Worker's origin, e.g. `http://localhost:8787`
 * @property {string} token the admin bearer token
 * @property {number} timeoutMs deadline of each request, answer body included
 */

/**
 * Decides where the CLI talks to and with which token, from the global options and the environment. The
 * token comes from `TIERCEL_TOKEN` only: a flag would land in shell history. It never appears in a message.
 *
 * @param {{ url?: string | undefined, timeout?: string | undefined }} options the global options
 * @param {Record<string, string | undefined>} env
 * @returns {Connection}
 */
export function resolveConnection(options, env) {
  const baseUrl = parseBaseUrl(options.url ?? nonEmpty(env.TIERCEL_URL) ?? DEFAULT_URL);
  const timeoutMs = parseTimeout(options.timeout);
  const token = nonEmpty(env.TIERCEL_TOKEN?.trim()) ?? (LOCAL_URLS.has(baseUrl) ? LOCAL_DEV_TOKEN : undefined);
  if (token === undefined) {
    throw usageError(
      `TIERCEL_TOKEN is not set: export the admin token (the Worker's ADMIN_TOKEN secret) to talk to ${baseUrl}; the local development token is only used for ${[...LOCAL_URLS].join(", ")}`,
      "token_required",
    );
  }
  if (!BEARER_TOKEN.test(token)) {
    throw usageError("TIERCEL_TOKEN holds spaces or characters a bearer token cannot have", "invalid_token");
  }
  return { baseUrl, token, timeoutMs };
}

/**
 * The admin API lives at `/_tiercel/api/v1/` on the Worker's origin, so the base is an origin: a path, a
 * query or credentials in it would be ignored or leak into logs, and are refused instead.
 *
 * @param {string} value
 * @returns {string}
 */
function parseBaseUrl(value) {
  /** @type {URL} */
  let url;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`the Worker URL (--url or TIERCEL_URL) must be an absolute http or https URL, not "${value}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(`the Worker URL (--url or TIERCEL_URL) must be http or https, not ${url.protocol}`);
  }
  if (url.username !== "" || url.password !== "") {
    throw usageError("the Worker URL (--url or TIERCEL_URL) must not carry credentials; set TIERCEL_TOKEN instead");
  }
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") {
    throw usageError(
      `the Worker URL (--url or TIERCEL_URL) must be an origin, such as ${url.origin}: the API is always under /_tiercel/api/v1/`,
    );
  }
  return url.origin;
}

/**
 * @param {string | undefined} value
 * @returns {number}
 */
function parseTimeout(value) {
  if (value === undefined) return DEFAULT_TIMEOUT_MS;
  const ms = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_TIMEOUT_MS)) {
    throw usageError(`--timeout must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, not "${value}"`);
  }
  return ms;
}

/**
 * @param {string | undefined} value
 * @returns {string | undefined}
 */
function nonEmpty(value) {
  return value === undefined || value === "" ? undefined : value;
}
