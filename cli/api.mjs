import { CliError, EXIT } from "./errors.mjs";
import { isObject, parseJsonOrUndefined } from "./json.mjs";

/** Every admin request goes under this path, on any host of the Worker (docs/admin-api.md). */
const API_PREFIX = "/_tiercel/api/v1";

/** A list that keeps answering with new cursors past this many pages is treated as a broken server. */
const MAX_LIST_PAGES = 10_000;

/**
 * A successful answer of the admin API: its status and its JSON body.
 *
 * @typedef {{ status: number, body: Record<string, any> }} ApiAnswer
 */

/**
 * @typedef {object} AdminClientOptions
 * @property {string} baseUrl the Worker's origin
 * @property {string} token sent as `Authorization: Bearer`, never in the URL
 * @property {number} timeoutMs deadline of each request, answer body included
 * @property {typeof fetch} [fetch]
 */

/**
 * A thin client for the admin API of docs/admin-api.md. Each method resolves to the API's answer or rejects
 * with a {@link CliError}: exit status 1 for an error answer (with the API's `code`, `issues` and body),
 * 3 when the Worker cannot be reached in time.
 *
 * @param {AdminClientOptions} options
 */
export function createAdminClient({ baseUrl, token, timeoutMs, fetch = globalThis.fetch }) {
  /**
   * @param {string} method
   * @param {string} path below {@link API_PREFIX}
   * @param {unknown} [body] sent as JSON
   * @returns {Promise<ApiAnswer>}
   */
  async function request(method, path, body) {
    const url = new URL(`${API_PREFIX}${path}`, baseUrl);
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    /** @type {Response} */
    let response;
    /** @type {string} */
    let text;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // A redirect would carry the request (and, same-origin, the token) somewhere the operator did not
        // name; it is reported instead of followed.
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw transportError(error, baseUrl, timeoutMs);
    }
    return interpretAnswer(response, text, `${method} ${url.pathname}`, baseUrl);
  }

  const site = (/** @type {string} */ id) => `/sites/${encodeURIComponent(id)}`;

  return {
    /**
     * Every page of the site list, following `cursor` until the API answers `null`.
     *
     * @returns {AsyncGenerator<ApiAnswer>}
     */
    async *listSitePages() {
      /** @type {string | null} */
      let cursor = null;
      const seen = new Set();
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const answer = await request("GET", cursor === null ? "/sites" : `/sites?cursor=${encodeURIComponent(cursor)}`);
        if (!Array.isArray(answer.body.sites)) throw badAnswer("GET /sites", "has no sites list", answer.body);
        yield answer;
        cursor = answer.body.cursor ?? null;
        if (cursor === null) return;
        if (typeof cursor !== "string" || seen.has(cursor)) {
          throw badAnswer("GET /sites", "repeats or garbles its cursor", answer.body);
        }
        seen.add(cursor);
      }
      throw badAnswer("GET /sites", `did not end after ${MAX_LIST_PAGES} pages`, undefined);
    },
    /** @param {string} id */
    getSite: (id) => request("GET", site(id)),
    /** @param {Record<string, unknown>} config a site without `id`; the API generates one */
    createSite: (config) => request("POST", "/sites", config),
    /**
     * @param {string} id
     * @param {Record<string, unknown>} config the whole site
     */
    putSite: (id, config) => request("PUT", site(id), config),
    /** @param {string} id */
    deleteSite: (id) => request("DELETE", site(id)),
    /**
     * @param {string} id
     * @param {{ urls?: string[], tags?: string[], all?: boolean, soft?: boolean }} purge
     */
    purge: (id, purge) => request("POST", `${site(id)}/purge`, purge),
    /**
     * @param {string} [id] one site's figures; all sites' when absent
     * @param {string} [window] the window ("5m", "1h", "24h" or "7d"); the API's default, an hour, when absent
     */
    stats: (id, window) =>
      request(
        "GET",
        `${id === undefined ? "/stats" : `${site(id)}/stats`}${window === undefined ? "" : `?window=${encodeURIComponent(window)}`}`,
      ),
    /** @param {{ name: string, sites: string[] }} token */
    createToken: (token) => request("POST", "/tokens", token),
    listTokens: () => request("GET", "/tokens"),
    /** @param {string} id */
    revokeToken: (id) => request("DELETE", `/tokens/${encodeURIComponent(id)}`),
    /** @param {{ site?: string, limit?: string, before?: string }} query */
    audit: (query) => {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, value);
      const search = params.toString();
      return request("GET", `/audit${search === "" ? "" : `?${search}`}`);
    },
  };
}

/** @typedef {ReturnType<typeof createAdminClient>} AdminClient */

/**
 * @param {Response} response
 * @param {string} text
 * @param {string} what `METHOD /path`, for messages
 * @param {string} baseUrl
 * @returns {ApiAnswer}
 */
function interpretAnswer(response, text, what, baseUrl) {
  const { status } = response;
  const body = parseJsonOrUndefined(text);
  if (status >= 200 && status < 300) {
    if (isObject(body)) return { status, body };
    throw badAnswer(what, `answered ${status} without a JSON object; is ${baseUrl} a Tiercel Worker?`, undefined);
  }
  if (status >= 300 && status < 400) {
    const location = response.headers.get("location") ?? "elsewhere";
    throw new CliError(
      "unexpected_redirect",
      `${what} was redirected (${status}) to ${location}; give the final address with --url or TIERCEL_URL`,
      { exitCode: EXIT.API },
    );
  }
  const error = isObject(body) && isObject(body.error) ? body.error : undefined;
  if (error === undefined || typeof error.code !== "string") {
    throw new CliError(
      `http_${status}`,
      `${what} answered ${status} ${response.statusText} without an admin API error; is ${baseUrl} a Tiercel Worker with the admin API?`,
      { exitCode: EXIT.API, body },
    );
  }
  const { message, details } = describeApiError(error, status);
  throw new CliError(error.code, message, { exitCode: EXIT.API, details, body });
}

/**
 * The message and detail lines of an API error: one line per `issues` entry (invalid_config), and who
 * holds the host for host_taken.
 *
 * @param {Record<string, any>} error the `error` member of the answer
 * @param {number} status
 * @returns {{ message: string, details: string[] }}
 */
function describeApiError(error, status) {
  let message = typeof error.message === "string" && error.message !== "" ? error.message : `HTTP ${status}`;
  /** @type {string[]} */
  const details = [];
  if (Array.isArray(error.issues)) {
    for (const issue of error.issues) {
      details.push(`${issue?.path || "(root)"}: ${issue?.message ?? "invalid"}`);
    }
    // The API's message may already list every issue; then the lines below say it better.
    if (details.length > 0 && details.every((line) => message.includes(line))) message = "the site config is invalid";
  }
  if (typeof error.host === "string" && typeof error.siteId === "string") {
    details.push(`${error.host} belongs to site ${error.siteId}`);
  }
  return { message, details };
}

/**
 * Connection refused, DNS failure, reset, or the deadline: the Worker was not reached (exit status 3).
 *
 * @param {unknown} error what fetch or reading the body threw
 * @param {string} baseUrl
 * @param {number} timeoutMs
 */
function transportError(error, baseUrl, timeoutMs) {
  const name = error instanceof Error ? error.name : "";
  if (name === "TimeoutError" || name === "AbortError") {
    return new CliError("timeout", `no answer from the Worker at ${baseUrl} within ${timeoutMs} ms`, {
      exitCode: EXIT.UNREACHABLE,
      cause: error,
    });
  }
  if (!(error instanceof TypeError)) return error;
  // undici reports "fetch failed" with the system error as its cause; happy eyeballs wraps several.
  /** @type {any} */
  const cause = error.cause;
  const reason = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? error.message;
  return new CliError("unreachable", `cannot reach the Worker at ${baseUrl}: ${reason}`, {
    exitCode: EXIT.UNREACHABLE,
    cause: error,
  });
}

/**
 * @param {string} what
 * @param {string} problem
 * @param {unknown} body
 */
function badAnswer(what, problem, body) {
  return new CliError("bad_answer", `${what} ${problem}`, { exitCode: EXIT.API, body });
}
