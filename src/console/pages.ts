import type { SiteCounters, StatsWindow } from "../core/stats-buckets";
import type { AuditRecord } from "../sites/audit";
import type { Site } from "../sites/schema";
import type { Principal } from "../sites/tokens";
import { ASSET_PATHS } from "./assets";
import { type Html, html, jsonData } from "./html";
import { CONSOLE_PATH } from "./session";
import { FIELD_GROUPS, type Field, type FormValues } from "./site-form";

/**
 * The console's pages: server-rendered HTML, every value escaped (html.ts). No inline script or style: the
 * only script is the console's own file (charts, confirmations), loaded under a CSP that allows nothing else.
 */

export const P = CONSOLE_PATH;

export interface Frame {
  title: string;
  /** Null on the sign-in page. */
  who: Principal | null;
  csrf: string | null;
  /** The nav entry to mark as current. */
  nav?: "sites" | "import" | "stats" | "audit";
  /** Load the chart library. */
  charts?: boolean;
}

export function layout(frame: Frame, body: Html): string {
  const item = (key: Frame["nav"], href: string, label: string) =>
    html`<li><a href="${P}${href}"${frame.nav === key ? html` aria-current="page"` : ""}>${label}</a></li>`;
  const header = frame.who
    ? html`<header class="top">
  <a class="brand" href="${P}/sites">Tiercel</a>
  <nav aria-label="Console"><ul>
    ${item("sites", "/sites", "Sites")}${frame.who.kind === "admin" ? item("import", "/import", "Import") : ""}${item("stats", "/stats", "Stats")}${item("audit", "/audit", "Audit log")}
  </ul></nav>
  <form method="post" action="${P}/logout" class="signout">
    <input type="hidden" name="_csrf" value="${frame.csrf ?? ""}">
    <span class="who">${frame.who.kind === "admin" ? "admin" : `token ${frame.who.name}`}</span>
    <button type="submit">Sign out</button>
  </form>
</header>`
    : html`<header class="top"><span class="brand">Tiercel</span></header>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>${frame.title} · Tiercel console</title>
<link rel="stylesheet" href="${ASSET_PATHS.css}">
${frame.charts ? html`<link rel="stylesheet" href="${ASSET_PATHS.uplotCss}"><script src="${ASSET_PATHS.uplotJs}" defer></script>` : ""}
<script src="${ASSET_PATHS.js}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
${header}
<main id="main">
<h1>${frame.title}</h1>
${body}
</main>
</body>
</html>`.text;
}

export function notice(kind: "ok" | "error", message: Html | string): Html {
  return html`<div class="notice ${kind}" role="${kind === "error" ? "alert" : "status"}">${message}</div>`;
}

export function errorNotice(code: string, message: string): Html {
  return notice("error", html`${message} <code class="code">${code}</code>`);
}

export function loginPage(error: { code: string; message: string } | null, insecure = false): string {
  return layout(
    { title: "Sign in", who: null, csrf: null },
    html`${error ? errorNotice(error.code, error.message) : ""}
${insecure ? notice("error", "This page came over plain HTTP: browsers keep the console's session cookie (Secure) only over HTTPS and on localhost, so a sign-in here will not last. Open the console over HTTPS.") : ""}
<form method="post" action="${P}/login" class="card narrow">
  <p>Sign in with the admin token (ADMIN_TOKEN), or a site-scoped token to see only its sites.</p>
  <label for="token">Token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Sign in</button>
</form>`,
  );
}

/** A hidden CSRF field. */
export function csrfField(csrf: string): Html {
  return html`<input type="hidden" name="_csrf" value="${csrf}">`;
}

export interface SiteRow {
  site: Site;
  /** Hits (fresh and stale) over requests in the last hour, or null without requests. */
  hitRatio: number | null;
  requests: number;
}

export function sitesPage(
  frame: Frame,
  rows: SiteRow[],
  query: string,
  flash: Html | null,
  truncated: boolean,
): string {
  const table = rows.length
    ? html`<div class="table-wrap"><table class="sites">
<caption>${rows.length} site${rows.length === 1 ? "" : "s"}; hit ratio over the last hour</caption>
<thead><tr><th scope="col">Hosts</th><th scope="col">Origin</th><th scope="col">Optimize</th><th scope="col">Hit ratio</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>
${rows.map(
  (row) => html`<tr>
  <td data-label="Hosts"><a href="${P}/sites/${row.site.id}">${row.site.hosts.join(", ")}</a><br><small class="muted">${row.site.id}</small></td>
  <td data-label="Origin">${originSummary(row.site)}</td>
  <td data-label="Optimize">${optimizeSummary(row.site)}</td>
  <td data-label="Hit ratio">${row.hitRatio === null ? html`<span class="muted">no traffic</span>` : `${(row.hitRatio * 100).toFixed(1)}% of ${row.requests}`}</td>
  <td class="actions"><a href="${P}/sites/${row.site.id}">Edit</a> <a href="${P}/sites/${row.site.id}/purge">Purge</a> <a href="${P}/stats?site=${row.site.id}">Stats</a>${frame.who?.kind === "admin" ? html` <a href="${P}/sites/${row.site.id}/delete">Delete</a>` : ""}</td>
</tr>`,
)}
</tbody></table></div>`
    : html`<p>${query ? "No site matches." : "No sites yet."}</p>`;
  return layout(
    frame,
    html`${flash ?? ""}
<div class="toolbar">
<form method="get" action="${P}/sites" role="search" class="search">
  <label for="q">Search sites</label>
  <input id="q" name="q" type="search" value="${query}" placeholder="host, id or origin">
  <button type="submit">Search</button>
</form>
${frame.who?.kind === "admin" ? html`<a class="button" href="${P}/sites/new">New site</a>` : ""}
</div>
${truncated ? notice("error", "Only the first 1,000 sites are listed; search to narrow.") : ""}
${table}`,
  );
}

export function originSummary(site: Site): string {
  const origin = site.origin;
  return origin.kind === "http" ? origin.url : `s3 ${origin.bucket} at ${origin.endpoint}`;
}

export function optimizeSummary(site: Site): string {
  const o = site.optimize;
  const parts: string[] = [];
  if (o.polish !== "off") parts.push(`polish ${o.polish}${o.polish === "lossy" ? ` q${o.quality}` : ""}`);
  if (o.formats.length) parts.push(o.formats.join("+"));
  if (o.resize !== false) parts.push("resize");
  const minify = (["html", "css", "js"] as const).filter((kind) => o.minify[kind]);
  if (minify.length) parts.push(`minify ${minify.join(",")}`);
  return parts.length ? parts.join(" · ") : "none";
}

export function sitePage(
  frame: Frame,
  options: {
    action: string;
    values: FormValues;
    errors: Record<string, string[]>;
    other: Html | null;
    revision: number | null;
    siteId: string | null;
    flash: Html | null;
    /** The stored config, shown whole (read-only) under the form. */
    stored?: Site | null;
  },
): string {
  const { values, errors } = options;
  const errorCount = Object.keys(errors).length;
  return layout(
    frame,
    html`${options.flash ?? ""}${options.other ?? ""}
${
  errorCount
    ? notice(
        "error",
        html`The site was not saved: ${errorCount} field${errorCount === 1 ? " has" : "s have"} an error:
${Object.keys(errors).map((name, i) => html`${i ? ", " : ""}<a href="#${fieldId(name)}">${labelOf(name)}</a>`)}.`,
      )
    : ""
}
${options.siteId ? html`<p class="muted">Site id <code>${options.siteId}</code>${options.revision !== null ? html`, revision ${options.revision}` : ""}. <a href="${P}/sites/${options.siteId}/purge">Purge</a> · <a href="${P}/stats?site=${options.siteId}">Stats</a> · <a href="${P}/audit?site=${options.siteId}">Audit</a></p>` : ""}
<form method="post" action="${options.action}" class="card site-form" novalidate>
${csrfField(frame.csrf ?? "")}
${FIELD_GROUPS.map(
  (group) => html`<fieldset><legend>${group.legend}</legend>
${group.fields.map((field) => fieldHtml(field, values[field.name], errors[field.name]))}
</fieldset>`,
)}
<p class="muted">Other settings (bypass rules, query policy, limits…) are kept as they are; change them with the API or the CLI.</p>
<button type="submit">${options.siteId ? "Save" : "Create site"}</button>
</form>
${options.stored ? html`<details class="card"><summary>The whole stored config (JSON)</summary><pre class="config">${JSON.stringify(options.stored, null, 2)}</pre></details>` : ""}`,
  );
}

function labelOf(name: string): string {
  return FIELD_GROUPS.flatMap((group) => group.fields).find((field) => field.name === name)?.label ?? name;
}

function fieldId(name: string): string {
  return `f-${name.replaceAll(".", "-")}`;
}

function fieldHtml(field: Field, value: FormValues[string] | undefined, errors: string[] | undefined): Html {
  const id = fieldId(field.name);
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [field.hint ? hintId : "", errors ? errorId : ""].filter(Boolean).join(" ");
  const aria = html`${described ? html` aria-describedby="${described}"` : ""}${errors ? html` aria-invalid="true"` : ""}`;
  const hint = field.hint ? html`<small id="${hintId}" class="hint">${field.hint}</small>` : "";
  const error = errors
    ? html`<p id="${errorId}" class="field-error" role="alert">${errors.map((message, i) => html`${i ? "; " : ""}${message}`)}</p>`
    : "";
  const text = typeof value === "string" ? value : "";
  let control: Html;
  switch (field.kind) {
    case "checkbox":
      return html`<div class="field check${errors ? " invalid" : ""}"><input type="checkbox" id="${id}" name="${field.name}"${value === true ? " checked" : ""}${aria}> <label for="${id}">${field.label}</label>${hint}${error}</div>`;
    case "checkboxes": {
      const chosen = Array.isArray(value) ? value : [];
      return html`<fieldset class="field inline${errors ? " invalid" : ""}" id="${id}"${aria}><legend>${field.label}</legend>${(field.options ?? []).map((option) => html`<label><input type="checkbox" name="${field.name}" value="${option}"${chosen.includes(option) ? " checked" : ""}> ${option}</label> `)}${hint}${error}</fieldset>`;
    }
    case "select":
      control = html`<select id="${id}" name="${field.name}"${aria}>${(field.options ?? []).map((option) => html`<option${option === text ? " selected" : ""}>${option}</option>`)}</select>`;
      break;
    case "lines":
      control = html`<textarea id="${id}" name="${field.name}" rows="3"${aria}>${text}</textarea>`;
      break;
    case "number":
      control = html`<input id="${id}" name="${field.name}" inputmode="numeric" value="${text}"${aria}>`;
      break;
    default:
      control = html`<input id="${id}" name="${field.name}" value="${text}" autocomplete="off"${aria}>`;
  }
  return html`<div class="field${errors ? " invalid" : ""}"${field.origin ? html` data-origin="${field.origin}"` : ""}><label for="${id}">${field.label}</label>${control}${hint}${error}</div>`;
}

export function deletePage(frame: Frame, site: Site, error: Html | null): string {
  return layout(
    frame,
    html`${error ?? ""}
<form method="post" action="${P}/sites/${site.id}/delete" class="card narrow">
${csrfField(frame.csrf ?? "")}
<p>Delete site <strong>${site.hosts.join(", ")}</strong> (<code>${site.id}</code>)? Its hosts are released and it
stops being served at once. This cannot be undone.</p>
<label for="confirm">Type the first host, <strong>${site.hosts[0] ?? ""}</strong>, to confirm</label>
<input id="confirm" name="confirm" autocomplete="off" required>
<button type="submit" class="danger">Delete site</button> <a href="${P}/sites/${site.id}">Cancel</a>
</form>`,
  );
}

export interface PurgeResult {
  purged: { urls: string[]; tags: string[]; all: boolean; soft: boolean; generation: number };
  revision: number;
  purgeVersion: number;
  propagation?: { here: string; everywhereWithinMs: number; how: string };
  evictedTags?: number;
}

export function purgePage(
  frame: Frame,
  site: Site,
  options: { result: PurgeResult | null; error: Html | null; values: Record<string, string | boolean> },
): string {
  const { result, values } = options;
  const summary = result
    ? notice(
        "ok",
        html`Purged ${[
          result.purged.urls.length
            ? `${result.purged.urls.length} URL${result.purged.urls.length === 1 ? "" : "s"}`
            : "",
          result.purged.tags.length ? `tags ${result.purged.tags.join(", ")}` : "",
          result.purged.all ? "everything" : "",
        ]
          .filter(Boolean)
          .join(
            ", ",
          )}${result.purged.soft ? " (soft: served stale while refreshed)" : ""}. Revision ${result.revision}, purge version ${result.purgeVersion}.
${result.propagation ? html`<br><span class="propagation">Visible ${result.propagation.here}; everywhere within <strong>${formatMs(result.propagation.everywhereWithinMs)}</strong> (${result.propagation.how}).</span>` : ""}`,
      )
    : "";
  const host = site.hosts[0] ?? "example.com";
  return layout(
    frame,
    html`${summary}${options.error ?? ""}
<p>Site <a href="${P}/sites/${site.id}">${site.hosts.join(", ")}</a></p>
<form method="post" action="${P}/sites/${site.id}/purge" class="card">
${csrfField(frame.csrf ?? "")}
<div class="field"><label for="urls">URLs</label>
<textarea id="urls" name="urls" rows="4" aria-describedby="urls-hint">${typeof values.urls === "string" ? values.urls : ""}</textarea>
<small id="urls-hint" class="hint">One absolute URL per line, on the site's hosts, e.g. https://${host}/styles.css</small></div>
<div class="field"><label for="tags">Tags</label>
<input id="tags" name="tags" value="${typeof values.tags === "string" ? values.tags : ""}" aria-describedby="tags-hint">
<small id="tags-hint" class="hint">Separated by commas or spaces (Cache-Tag values)</small></div>
<div class="field check"><input type="checkbox" id="all" name="all"${values.all === true ? " checked" : ""}> <label for="all">Everything (the whole site)</label></div>
<div class="field check"><input type="checkbox" id="soft" name="soft"${values.soft === true ? " checked" : ""}> <label for="soft">Soft: mark stale instead of removing (tags and everything)</label></div>
<button type="submit">Purge</button>
</form>`,
  );
}

function formatMs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 2)} s` : `${Math.round(ms / 1000)} s`;
}

export interface ImportRow {
  label: string;
  ok: boolean;
  status: number;
  message: string;
  siteId: string | null;
}

export function importPage(frame: Frame, rows: ImportRow[] | null, error: Html | null): string {
  const ok = rows?.filter((row) => row.ok).length ?? 0;
  return layout(
    frame,
    html`${error ?? ""}
${rows ? notice(ok === rows.length ? "ok" : "error", `${ok} of ${rows.length} site${rows.length === 1 ? "" : "s"} imported.`) : ""}
${
  rows
    ? html`<div class="table-wrap"><table><caption>Import result, per site</caption>
<thead><tr><th scope="col">Site</th><th scope="col">Result</th></tr></thead><tbody>
${rows.map((row) => html`<tr class="${row.ok ? "ok" : "failed"}"><td>${row.siteId ? html`<a href="${P}/sites/${row.siteId}">${row.label}</a>` : row.label}</td><td>${row.ok ? "✓ " : "✗ "}${row.status} ${row.message}</td></tr>`)}
</tbody></table></div>`
    : ""
}
<form method="post" action="${P}/import" enctype="multipart/form-data" class="card">
${csrfField(frame.csrf ?? "")}
<div class="field"><label for="file">A YAML or JSON file</label>
<input type="file" id="file" name="file" accept=".yaml,.yml,.json,application/json,application/yaml" required aria-describedby="file-hint">
<small id="file-hint" class="hint">A list of sites (or <code>{"sites": [...]}</code>), each as the API takes it. A site with an <code>id</code> is written to that id (created or replaced); one without gets a new id. At most 1 MB, 500 sites.</small></div>
<button type="submit">Import</button>
</form>`,
  );
}

const FIGURES = ["requests", "hit ratio", "origin", "bytes", "operations", "errors", "optimizer"];

export function statsPage(
  frame: Frame,
  options: {
    window: string;
    site: string | null;
    sites: { id: string; label: string }[];
    stats: StatsWindow | null;
    error: Html | null;
  },
): string {
  const { stats } = options;
  const windows = ["5m", "1h", "24h", "7d"];
  const allowAll = frame.who?.kind === "admin";
  const total = stats ? (options.site ? (stats.sites[options.site] ?? stats.total) : stats.total) : null;
  return layout(
    { ...frame, charts: true },
    html`${options.error ?? ""}
<form method="get" action="${P}/stats" class="toolbar">
  <div class="field"><label for="site">Site</label>
  <select id="site" name="site">${allowAll ? html`<option value=""${options.site === null ? " selected" : ""}>All sites</option>` : ""}${options.sites.map((s) => html`<option value="${s.id}"${s.id === options.site ? " selected" : ""}>${s.label}</option>`)}</select></div>
  <div class="field"><label for="window">Window</label>
  <select id="window" name="window">${windows.map((w) => html`<option${w === options.window ? " selected" : ""}>${w}</option>`)}</select></div>
  <button type="submit">Show</button>
</form>
${
  stats && total
    ? html`<p class="muted">From ${stats.from} to ${stats.to}, ${stats.bucketSeconds} s buckets, summed over every data center.</p>
<div class="charts" id="charts" aria-label="Charts over time: ${FIGURES.join(", ")}; the same figures as totals in the table below">
${FIGURES.map((name) => html`<figure class="chart" data-chart="${name}"><figcaption>${name}</figcaption></figure>`)}
</div>
${totalsTable(total)}
${options.site === null ? bySiteTable(stats, options.sites) : ""}
<script type="application/json" id="stats-data">${jsonData({ series: stats.series, bucketSeconds: stats.bucketSeconds })}</script>`
    : ""
}`,
  );
}

/** The window's figures per site (all sites' view), busiest first, at most 100 rows. */
function bySiteTable(stats: StatsWindow, sites: { id: string; label: string }[]): Html {
  const labels = new Map(sites.map((site) => [site.id, site.label]));
  const rows = Object.entries(stats.sites)
    .sort(([, a], [, b]) => b.requests - a.requests)
    .slice(0, 100);
  if (rows.length === 0) return html``;
  return html`<div class="table-wrap"><table class="by-site"><caption>By site, busiest first</caption>
<thead><tr><th scope="col">Site</th><th scope="col">Requests</th><th scope="col">Hit ratio</th><th scope="col">Origin fetches</th><th scope="col">Errors</th></tr></thead><tbody>
${rows.map(([id, c]) => {
  const hits = Object.values(c.hits).reduce((a, b) => a + b, 0) + c.stale;
  return html`<tr><td><a href="${P}/stats?site=${id}&amp;window=${stats.window}">${labels.get(id) ?? id}</a></td><td>${c.requests}</td><td>${c.requests ? `${((hits / c.requests) * 100).toFixed(1)}%` : "–"}</td><td>${c.originFetches}</td><td>${c.errors}</td></tr>`;
})}
</tbody></table></div>`;
}

function totalsTable(c: SiteCounters): Html {
  const hits = Object.values(c.hits).reduce((a, b) => a + b, 0);
  const ratio = c.requests ? `${(((hits + c.stale) / c.requests) * 100).toFixed(1)}%` : "–";
  const byTier = (record: Record<string, number>) =>
    Object.entries(record)
      .map(([tier, n]) => `${tier} ${n}`)
      .join(", ") || "0";
  const rows: [string, string][] = [
    ["Requests", String(c.requests)],
    ["Hit ratio (fresh + stale)", ratio],
    ["Hits by tier", byTier(c.hits)],
    ["Stale, misses, bypass", `${c.stale}, ${c.misses}, ${c.bypass}`],
    ["Origin fetches", String(c.originFetches)],
    ["Origin bytes", String(c.originBytes)],
    ["Bytes served from the tiers", String(c.bytes)],
    ["Tier reads", byTier(c.reads)],
    ["Tier writes", byTier(c.writes)],
    ["Errors (5xx)", String(c.errors)],
    [
      "Optimizer: transformed, original, failed (busy)",
      `${c.optimize.transformed}, ${c.optimize.original}, ${c.optimize.failed} (${c.optimize.busy})`,
    ],
  ];
  return html`<div class="table-wrap"><table class="totals" id="totals"><caption>Totals over the window</caption><tbody>
${rows.map(([name, value]) => html`<tr><th scope="row">${name}</th><td data-figure="${name}">${value}</td></tr>`)}
</tbody></table></div>`;
}

export function auditPage(
  frame: Frame,
  options: { records: AuditRecord[]; next: string | null; site: string | null; error: Html | null },
): string {
  return layout(
    frame,
    html`${options.error ?? ""}
<form method="get" action="${P}/audit" class="toolbar">
<div class="field"><label for="site">Site id</label><input id="site" name="site" value="${options.site ?? ""}"></div>
<button type="submit">Filter</button>
</form>
${
  options.records.length
    ? html`<div class="table-wrap"><table><caption>Changes, newest first</caption>
<thead><tr><th scope="col">When (UTC)</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Site</th><th scope="col">Details</th></tr></thead><tbody>
${options.records.map(
  (
    r,
  ) => html`<tr><td data-label="When">${r.at.replace("T", " ").replace(/\.\d+Z$/, "")}</td><td data-label="Who">${r.actor.kind === "admin" ? "admin" : `token ${r.actor.name}`}</td><td data-label="What">${r.action}</td>
<td data-label="Site">${r.site ? html`<a href="${P}/audit?site=${r.site}">${r.hosts.join(", ") || r.site}</a>` : "–"}</td><td data-label="Details"><code class="summary">${JSON.stringify(r.summary)}</code></td></tr>`,
)}
</tbody></table></div>
${options.next ? html`<p><a href="${P}/audit?${new URLSearchParams({ ...(options.site ? { site: options.site } : {}), before: options.next }).toString()}">Older changes</a></p>` : ""}`
    : html`<p>No changes recorded${options.site ? " for this site" : ""}.</p>`
}`,
  );
}

export function errorPage(frame: Frame, status: number, code: string, message: string): string {
  return layout({ ...frame, title: status === 403 ? "Refused" : "Error" }, errorNotice(code, message));
}
