// Timed requests with node:http (not fetch): the clock starts before the request is written and stops at
// the response head, at the first body byte (TTFB) and at the end of the body.
import { Agent, request } from "node:http";

/** A keep-alive agent, so a warmed-up connection is reused and connection setup is not measured. */
export function keepAliveAgent(maxSockets = 1) {
  return new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

/**
 * GET (or HEAD) `url`, sending `host` as Host. Resolves with the status, the response headers and the times
 * in milliseconds: `headersMs` (response event), `ttfbMs` (first body byte; the head for an empty body),
 * `totalMs` (end of body), and `bytes`. Rejects after `timeoutMs`.
 */
export function timedRequest(url, { host, agent, method = "GET", headers = {}, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const since = () => Number(process.hrtime.bigint() - start) / 1e6;
    let headersMs = 0;
    let ttfbMs = 0;
    let bytes = 0;
    let head;
    const req = request(url, { method, agent, headers: { ...(host ? { host } : {}), ...headers } }, (res) => {
      headersMs = since();
      head = res.headers;
      res.on("data", (chunk) => {
        if (bytes === 0) ttfbMs = since();
        bytes += chunk.length;
      });
      res.on("end", () => {
        clearTimeout(timer);
        const totalMs = since();
        resolve({
          status: res.statusCode,
          headers: res.headers,
          headersMs,
          ttfbMs: ttfbMs || headersMs,
          totalMs,
          bytes,
        });
      });
      res.on("error", fail);
    });
    const timer = setTimeout(() => {
      const got = head
        ? `head after ${headersMs.toFixed(0)} ms (${head["cache-status"] ?? head["x-bench-tier"]}), ${bytes} body bytes`
        : "no response head";
      fail(new Error(`timed out after ${timeoutMs} ms (${got}): ${method} ${url}`));
    }, timeoutMs);
    function fail(error) {
      clearTimeout(timer);
      req.destroy();
      reject(error);
    }
    req.on("error", fail);
    req.end();
  });
}

/** JSON from a GET, with a bearer token. */
export async function getJson(url, { token, agent, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    const req = request(url, { agent, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        text += chunk;
      });
      res.on("end", () => {
        clearTimeout(timer);
        if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode} ${text.slice(0, 200)}`));
        else resolve(JSON.parse(text));
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`timed out: GET ${url}`)), timeoutMs);
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

/** Median, and the p-th percentile (nearest rank) of a list of numbers; NaN for an empty list. */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function median(values) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
