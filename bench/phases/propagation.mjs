// The control plane (unnumbered: no table of its own, its figures are in the JSON) in one running Tiercel (one
// local data center under wrangler dev): how long a
// settings change takes to be served, and what the hot path costs per request — the `site` step of
// Server-Timing (config and purge state, the control feed's check) and the whole edge hit — in the steady
// state and on the first requests after a change. Propagation across data centers (several isolates with
// their own caches, one feed) is measured by test/integration/propagation.test.ts; here the admin's
// isolate may well be the one serving. Loopback only; every loop is bounded. Figures on a shared machine are
// indicative only.
import { keepAliveAgent, median, percentile, timedRequest } from "../lib/http.mjs";

/** `site;dur=1.2` from a Server-Timing header, in ms (NaN when absent). */
function siteMs(headers) {
  const match = /(?:^|,\s*)site;dur=([0-9.]+)/.exec(headers["server-timing"] ?? "");
  return match ? Number(match[1]) : Number.NaN;
}

async function admin(url, token, method, path, body) {
  const response = await fetch(`${url}/_tiercel/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json).slice(0, 200)}`);
  return json;
}

/**
 * `url`: the running Tiercel; `token`: its ADMIN_TOKEN; `originUrl`: an origin serving `/o/<bytes>/<name>`
 * (bench/lib/origin.mjs). Creates a site of its own, so no other phase sees its changes.
 */
export async function propagation({ url, token, originUrl, requests = 200, changes = 5 }) {
  const host = `propagation-${crypto.randomUUID().slice(0, 8)}.bench.test`;
  const settings = (browserTtl) => ({
    hosts: [host],
    origin: { kind: "http", url: originUrl, allowPrivate: true },
    cache: { browserTtl },
  });
  const created = await admin(url, token, "POST", "/sites", settings(100));
  const id = created.site.id;
  const agent = keepAliveAgent(1);
  const path = `/o/1024/propagation-${id.slice(0, 8)}`;
  const hit = () => timedRequest(`${url}${path}`, { host, agent, timeoutMs: 10_000 });
  try {
    for (let i = 0; i < 5; i++) await hit();
    const steady = { site: [], total: [] };
    for (let i = 0; i < requests; i++) {
      const answer = await hit();
      steady.site.push(siteMs(answer.headers));
      steady.total.push(answer.totalMs);
    }
    const pending = { site: [], total: [] };
    const visibleMs = [];
    for (let change = 1; change <= changes; change++) {
      const ttl = 100 + change;
      const t0 = performance.now();
      await admin(url, token, "PUT", `/sites/${id}`, settings(ttl));
      const answered = performance.now();
      let seen = Number.NaN;
      // The first requests after the change: bounded (100), until the new settings are served.
      for (let i = 0; i < 100; i++) {
        const answer = await hit();
        if (i < 3) {
          pending.site.push(siteMs(answer.headers));
          pending.total.push(answer.totalMs);
        }
        if ((answer.headers["cache-control"] ?? "").includes(`max-age=${ttl}`)) {
          seen = performance.now() - answered;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      visibleMs.push({ adminMs: answered - t0, visibleAfterMs: seen });
      // A window and more between changes, so each finds the feed settled.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
    }
    const figures = (values) => {
      const known = values.filter((value) => Number.isFinite(value));
      return { n: known.length, medianMs: median(known), p95Ms: percentile(known, 95) };
    };
    return {
      site: id,
      requests,
      changes,
      steady: { siteStep: figures(steady.site), edgeHit: figures(steady.total) },
      afterChange: { siteStep: figures(pending.site), edgeHit: figures(pending.total) },
      propagation: {
        visibleAfterMs: figures(visibleMs.map((v) => v.visibleAfterMs)),
        adminWriteMs: figures(visibleMs.map((v) => v.adminMs)),
        allSeen: visibleMs.every((v) => Number.isFinite(v.visibleAfterMs)),
      },
    };
  } finally {
    agent.destroy();
    await admin(url, token, "DELETE", `/sites/${id}`).catch(() => {});
  }
}
