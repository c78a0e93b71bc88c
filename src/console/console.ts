import { parse as parseYaml } from "yaml";
import { type AdminDeps, handleAdmin, principalOf } from "../admin/api";
import { TiercelError } from "../core/errors";
import type { SiteCounters, StatsWindow } from "../core/stats-buckets";
import type { AuditRecord } from "../sites/audit";
import type { Site } from "../sites/schema";
import { MIN_ADMIN_TOKEN_LENGTH, type Principal } from "../sites/tokens";
import { assetResponse } from "./assets";
import { type Html, html } from "./html";
import {
  auditPage,
  deletePage,
  errorNotice,
  errorPage,
  type Frame,
  type ImportRow,
  importPage,
  loginPage,
  notice,
  originSummary,
  P,
  type PurgeResult,
  purgePage,
  type SiteRow,
  sitePage,
  sitesPage,
  statsPage,
} from "./pages";
import {
  CONSOLE_PATH,
  checkCsrf,
  cookieValue,
  csrfToken,
  newSession,
  type Session,
  seal,
  sessionCookie,
  unseal,
} from "./session";
import { formValues, issuesByField, siteBody, siteValues } from "./site-form";

/**
 * The operators' console (docs/admin-api.md, "Console"): server-rendered pages under `/_tiercel/console/`,
 * served where the admin API is. It keeps no state and no second copy of any rule: every read and change is
 * a call of the admin API's own handler (`handleAdmin`), in-process, with the token of the session, so the
 * API's authentication, scopes, validation, owners and audit log apply as they are.
 */

const API = "/_tiercel/api/v1";
/** A form body larger than this is refused (an import file is at most 1 MB). */
const MAX_FORM_BYTES = 1_100_000;
const MAX_IMPORT_SITES = 500;
/** The sites list follows at most this many pages of the API (100 sites each). */
const MAX_LIST_PAGES = 10;

export function isConsolePath(pathname: string): boolean {
  return pathname === CONSOLE_PATH || pathname.startsWith(`${CONSOLE_PATH}/`);
}

/** The headers of every console page: no caching, a CSP that runs only the console's own files. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // Not no-referrer: with it a browser sends `Origin: null` on the console's own forms, which the check refuses.
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
};

function page(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { ...PAGE_HEADERS, ...headers } });
}

function redirect(location: string, headers: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: { ...PAGE_HEADERS, location, ...headers } });
}

interface Context {
  deps: AdminDeps;
  session: Session;
  who: Principal;
  csrf: string;
  url: URL;
}

export interface ConsoleOptions {
  /** Whether ADMIN_HOST is set (the console is then only reached on the admin host). */
  adminHostSet: boolean;
}

export async function handleConsole(request: Request, deps: AdminDeps, options: ConsoleOptions): Promise<Response> {
  const url = new URL(request.url);
  try {
    return await serve(request, url, deps, options);
  } catch (error) {
    const known =
      error instanceof TiercelError
        ? error
        : new TiercelError("internal_error", 502, "The console could not complete the request");
    if (!(error instanceof TiercelError)) deps.log("console.failed", { error: String(error) });
    return page(
      known.status,
      errorPage({ title: "Error", who: null, csrf: null }, known.status, known.code, known.message),
    );
  }
}

async function serve(request: Request, url: URL, deps: AdminDeps, options: ConsoleOptions): Promise<Response> {
  const rest = url.pathname.slice(CONSOLE_PATH.length) || "/";
  const method = request.method === "HEAD" ? "GET" : request.method;
  if (rest.startsWith("/assets/")) {
    const asset = method === "GET" ? assetResponse(rest.slice("/assets/".length)) : null;
    if (asset) return asset;
    throw new TiercelError("not_found", 404, "No such console file");
  }
  await refuseSiteHost(url, deps, options);
  const secret = deps.token;
  if (!secret || secret.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new TiercelError(
      "admin_disabled",
      503,
      `The console is disabled: set the ADMIN_TOKEN secret (at least ${MIN_ADMIN_TOKEN_LENGTH} characters)`,
    );
  }
  const cookie = cookieValue(request.headers.get("cookie"));
  const session = cookie ? await unseal(cookie, secret, deps.now()) : null;
  if (rest === "/login") {
    if (method === "POST") return signIn(request, url, deps, secret);
    if (session) return redirect(`${P}/sites`);
    return page(200, loginPage(null, insecure(url)));
  }
  if (!session) {
    // A cookie that no longer opens (expired, or ADMIN_TOKEN rotated) is dropped.
    const clear = cookie ? { "set-cookie": sessionCookie(null) } : undefined;
    if (method === "GET") return redirect(`${P}/login`, clear);
    return page(401, loginPage({ code: "unauthorized", message: "Sign in first: nothing was changed" }), clear);
  }
  let who: Principal;
  try {
    who = await principalOf(session.token, deps);
  } catch (error) {
    // A scoped token revoked since sign-in, or an ADMIN_TOKEN changed: the session ends.
    if (error instanceof TiercelError && error.status === 401) {
      return redirect(`${P}/login`, { "set-cookie": sessionCookie(null) });
    }
    throw error;
  }
  const ctx: Context = { deps, session, who, csrf: await csrfToken(session, secret), url };
  try {
    return await signedIn(ctx, request, method, rest, secret);
  } catch (error) {
    // A refusal keeps the console's navigation (and its sign-out) around the message.
    if (!(error instanceof TiercelError)) throw error;
    return page(error.status, errorPage(frame(ctx, "Error"), error.status, error.code, error.message));
  }
}

async function signedIn(
  ctx: Context,
  request: Request,
  method: string,
  rest: string,
  secret: string,
): Promise<Response> {
  const { session, url } = ctx;
  if (method === "POST") {
    const form = await readForm(request);
    if (!sameOrigin(request, url) || !(await checkCsrf(stringOf(form.get("_csrf")), session, secret))) {
      throw new TiercelError(
        "csrf_failed",
        403,
        "Refused: the form did not carry this session's CSRF token (reload the page and try again); nothing was changed",
      );
    }
    return post(ctx, rest, form);
  }
  if (method !== "GET") throw new TiercelError("method_not_allowed", 405, "The console answers GET and POST");
  return get(ctx, rest);
}

/**
 * Without ADMIN_HOST the console shares an origin with a site on that site's hosts, where the site's own
 * pages could script it: it is served there only on loopback names (local development).
 */
async function refuseSiteHost(url: URL, deps: AdminDeps, options: ConsoleOptions): Promise<void> {
  if (options.adminHostSet) return;
  if (isLoopback(url)) return;
  const host = url.hostname.toLowerCase();
  const site = await deps.sites.siteForHost(host).catch(() => null);
  if (site) {
    throw new TiercelError(
      "console_needs_admin_host",
      404,
      "The console is not served on a site's host: set ADMIN_HOST and open it there",
    );
  }
}

function isLoopback(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Browsers keep a Secure cookie only over HTTPS and on loopback names: elsewhere a sign-in would not last. */
function insecure(url: URL): boolean {
  return url.protocol === "http:" && !isLoopback(url);
}

/** Whether a browser says the form came from a console page (Sec-Fetch-Site, Origin); others pass. */
function sameOrigin(request: Request, url: URL): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin") return false;
  const origin = request.headers.get("origin");
  return origin === null || origin === url.origin;
}

async function signIn(request: Request, url: URL, deps: AdminDeps, secret: string): Promise<Response> {
  const form = await readForm(request);
  if (!sameOrigin(request, url)) {
    throw new TiercelError("csrf_failed", 403, "Refused: sign in from the console's own page");
  }
  const token = stringOf(form.get("token")).trim();
  try {
    await principalOf(token, deps);
  } catch (error) {
    if (error instanceof TiercelError && error.status === 401) {
      return page(401, loginPage({ code: "unauthorized", message: "That token is not valid" }));
    }
    throw error;
  }
  const sealed = await seal(newSession(token, deps.now()), secret);
  deps.log("console.signin", { at: new Date(deps.now()).toISOString() });
  return redirect(`${P}/sites`, { "set-cookie": sessionCookie(sealed) });
}

/** Reads a form body (urlencoded or multipart), refusing one larger than MAX_FORM_BYTES. */
async function readForm(request: Request): Promise<FormData> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_FORM_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_FORM_BYTES) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const type = request.headers.get("content-type") ?? "";
  try {
    return await new Response(new Blob(chunks), { headers: { "content-type": type } }).formData();
  } catch {
    throw new TiercelError("invalid_form", 400, "The form could not be read");
  }
}

function tooLarge(): TiercelError {
  return new TiercelError("invalid_form", 413, "The form is larger than 1 MB");
}

function stringOf(value: File | string | null): string {
  return typeof value === "string" ? value : "";
}

/** One admin API call, in-process, as the session's token. */
async function api(
  ctx: Context,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { authorization: `Bearer ${ctx.session.token}` };
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await handleAdmin(new Request(`https://tiercel.invalid${API}${path}`, init), ctx.deps);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

interface ApiError {
  code: string;
  message: string;
  issues?: { path: string; message: string }[];
}

function errorOf(body: Record<string, unknown>): ApiError {
  const error = body.error as ApiError | undefined;
  return error ?? { code: "internal_error", message: "The admin API gave no answer" };
}

/** An API refusal as a page (its status kept). */
function apiError(ctx: Context, answer: { status: number; body: Record<string, unknown> }): Response {
  const { code, message } = errorOf(answer.body);
  return page(answer.status, errorPage(frame(ctx, "Error"), answer.status, code, message));
}

function frame(ctx: Context, title: string, nav?: Frame["nav"]): Frame {
  return { title, who: ctx.who, csrf: ctx.csrf, ...(nav ? { nav } : {}) };
}

const SITE_PATH = /^\/sites\/([A-Za-z0-9_-]{1,64})(\/delete|\/purge)?$/;

async function get(ctx: Context, rest: string): Promise<Response> {
  const params = ctx.url.searchParams;
  if (rest === "/" || rest === "") return redirect(`${P}/sites`);
  if (rest === "/sites") return sitesList(ctx);
  if (rest === "/sites/new") {
    return page(
      200,
      sitePage(frame(ctx, "New site", "sites"), {
        action: `${P}/sites/new`,
        values: siteValues(null),
        errors: {},
        other: null,
        revision: null,
        siteId: null,
        flash: null,
      }),
    );
  }
  const match = SITE_PATH.exec(rest);
  if (match?.[1]) {
    const id = match[1];
    const answer = await api(ctx, "GET", `/sites/${id}`);
    if (answer.status !== 200) return apiError(ctx, answer);
    const site = answer.body.site as Site;
    const revision = answer.body.revision as number;
    if (match[2] === "/delete") return page(200, deletePage(frame(ctx, "Delete site", "sites"), site, null));
    if (match[2] === "/purge") {
      return page(200, purgePage(frame(ctx, "Purge", "sites"), site, { result: null, error: null, values: {} }));
    }
    const flash = params.has("saved") ? notice("ok", `Saved: revision ${revision}.`) : null;
    return page(
      200,
      sitePage(frame(ctx, site.hosts[0] ?? site.id, "sites"), {
        action: `${P}/sites/${id}`,
        values: siteValues(site),
        errors: {},
        other: null,
        revision,
        siteId: id,
        flash,
        stored: site,
      }),
    );
  }
  if (rest === "/import") return page(200, importPage(frame(ctx, "Import sites", "import"), null, null));
  if (rest === "/stats") return statsView(ctx);
  if (rest === "/audit") return auditView(ctx);
  throw new TiercelError("not_found", 404, "No such console page");
}

async function post(ctx: Context, rest: string, form: FormData): Promise<Response> {
  if (rest === "/logout") {
    ctx.deps.log("console.signout", { at: new Date(ctx.deps.now()).toISOString() });
    return redirect(`${P}/login`, { "set-cookie": sessionCookie(null) });
  }
  if (rest === "/sites/new") return saveSite(ctx, form, null);
  if (rest === "/import") return importSites(ctx, form);
  const match = SITE_PATH.exec(rest);
  if (match?.[1]) {
    const id = match[1];
    if (!match[2]) return saveSite(ctx, form, id);
    const answer = await api(ctx, "GET", `/sites/${id}`);
    if (answer.status !== 200) return apiError(ctx, answer);
    const site = answer.body.site as Site;
    if (match[2] === "/delete") return removeSite(ctx, form, site);
    return purgeSite(ctx, form, site);
  }
  throw new TiercelError("not_found", 404, "No such console action");
}

/** Every site the session may see (bounded), as the API lists them. */
async function allSites(ctx: Context, maxPages = MAX_LIST_PAGES): Promise<{ sites: Site[]; truncated: boolean }> {
  const sites: Site[] = [];
  let cursor: string | null = null;
  for (let pageNo = 0; pageNo < maxPages; pageNo++) {
    const answer = await api(ctx, "GET", `/sites${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (answer.status !== 200) throw apiRefusal(answer);
    sites.push(...(answer.body.sites as Site[]));
    cursor = answer.body.cursor as string | null;
    if (!cursor) return { sites, truncated: false };
  }
  return { sites, truncated: true };
}

function apiRefusal(answer: { status: number; body: Record<string, unknown> }): TiercelError {
  const { code, message } = errorOf(answer.body);
  return new TiercelError(code as TiercelError["code"], answer.status, message);
}

/** Each site's figures over the last hour: one global query for the admin, one per site for a scoped token. */
async function hourFigures(ctx: Context, ids: string[]): Promise<Record<string, SiteCounters> | null> {
  if (ctx.who.kind === "admin") {
    const answer = await api(ctx, "GET", "/stats?window=1h");
    return answer.status === 200 ? (answer.body as unknown as StatsWindow).sites : null;
  }
  const answers = await Promise.all(ids.map((id) => api(ctx, "GET", `/sites/${id}/stats?window=1h`)));
  const figures: Record<string, SiteCounters> = {};
  for (const [i, answer] of answers.entries()) {
    if (answer.status !== 200) return null;
    const site = (answer.body as unknown as StatsWindow).sites[ids[i] as string];
    if (site) figures[ids[i] as string] = site;
  }
  return figures;
}

async function sitesList(ctx: Context): Promise<Response> {
  const query = (ctx.url.searchParams.get("q") ?? "").trim().toLowerCase();
  const { sites, truncated } = await allSites(ctx);
  const shown = query
    ? sites.filter((site) =>
        [site.id, ...site.hosts, originSummary(site)].some((text) => text.toLowerCase().includes(query)),
      )
    : sites;
  const figures = await hourFigures(
    ctx,
    shown.map((site) => site.id),
  );
  const rows: SiteRow[] = shown.map((site) => {
    const c = figures?.[site.id];
    const hits = c ? Object.values(c.hits).reduce((a, b) => a + b, 0) + c.stale : 0;
    return { site, requests: c?.requests ?? 0, hitRatio: c?.requests ? hits / c.requests : null };
  });
  const deleted = ctx.url.searchParams.get("deleted");
  const flash: Html | null = deleted
    ? notice("ok", html`Site <code>${deleted}</code> deleted.`)
    : figures === null
      ? notice("error", "Stats are unavailable right now: hit ratios are not shown.")
      : null;
  return page(200, sitesPage(frame(ctx, "Sites", "sites"), rows, query, flash, truncated));
}

async function saveSite(ctx: Context, form: FormData, id: string | null): Promise<Response> {
  const values = formValues(form);
  let current: Site | null = null;
  let revision: number | null = null;
  if (id) {
    const answer = await api(ctx, "GET", `/sites/${id}`);
    if (answer.status !== 200) return apiError(ctx, answer);
    current = answer.body.site as Site;
    revision = answer.body.revision as number;
  }
  const body = siteBody(values, current);
  // An edit applies to the config it was merged onto (If-Match): a change in between is a conflict, not lost.
  const answer = id ? await apiWithIfMatch(ctx, id, body, revision ?? 0) : await api(ctx, "POST", "/sites", body);
  if (answer.status === 200 || answer.status === 201) {
    const site = answer.body.site as Site;
    return redirect(`${P}/sites/${site.id}?saved=1`);
  }
  const error = errorOf(answer.body);
  const { fields, other } = issuesByField(error.issues ?? []);
  const otherHtml =
    error.code === "invalid_config"
      ? other.length
        ? notice("error", html`${other.map((issue, i) => html`${i ? html`<br>` : ""}${issue.path}: ${issue.message}`)}`)
        : null
      : errorNotice(error.code, error.message);
  const title = id ? (current?.hosts[0] ?? id) : "New site";
  return page(
    answer.status,
    sitePage(frame(ctx, title, "sites"), {
      action: id ? `${P}/sites/${id}` : `${P}/sites/new`,
      values,
      errors: fields,
      other: otherHtml,
      revision,
      siteId: id,
      flash: null,
    }),
  );
}

async function apiWithIfMatch(ctx: Context, id: string, body: unknown, revision: number) {
  const headers: Record<string, string> = {
    authorization: `Bearer ${ctx.session.token}`,
    "content-type": "application/json",
    "if-match": `"${revision}"`,
  };
  const response = await handleAdmin(
    new Request(`https://tiercel.invalid${API}/sites/${id}`, { method: "PUT", headers, body: JSON.stringify(body) }),
    ctx.deps,
  );
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function removeSite(ctx: Context, form: FormData, site: Site): Promise<Response> {
  const confirm = stringOf(form.get("confirm")).trim().toLowerCase();
  if (confirm !== (site.hosts[0] ?? "")) {
    return page(
      400,
      deletePage(
        frame(ctx, "Delete site", "sites"),
        site,
        notice("error", "Not deleted: type the site's first host exactly to confirm."),
      ),
    );
  }
  const answer = await api(ctx, "DELETE", `/sites/${site.id}`);
  if (answer.status !== 200) {
    const { code, message } = errorOf(answer.body);
    return page(answer.status, deletePage(frame(ctx, "Delete site", "sites"), site, errorNotice(code, message)));
  }
  return redirect(`${P}/sites?deleted=${encodeURIComponent(site.id)}`);
}

async function purgeSite(ctx: Context, form: FormData, site: Site): Promise<Response> {
  const values = {
    urls: stringOf(form.get("urls")),
    tags: stringOf(form.get("tags")),
    all: form.get("all") === "on",
    soft: form.get("soft") === "on",
  };
  const split = (text: string, by: RegExp) =>
    text
      .split(by)
      .map((item) => item.trim())
      .filter((item) => item !== "");
  const body = {
    urls: split(values.urls, /\r?\n/),
    tags: split(values.tags, /[\s,]+/),
    all: values.all,
    soft: values.soft,
  };
  const answer = await api(ctx, "POST", `/sites/${site.id}/purge`, body);
  if (answer.status === 202) {
    return page(
      200,
      purgePage(frame(ctx, "Purge", "sites"), site, {
        result: answer.body as unknown as PurgeResult,
        error: null,
        values: {},
      }),
    );
  }
  const error = errorOf(answer.body);
  const detail = error.issues?.length
    ? notice(
        "error",
        html`${error.issues.map((issue, i) => html`${i ? html`<br>` : ""}${issue.path === "(root)" ? "" : `${issue.path}: `}${issue.message}`)} <code class="code">${error.code}</code>`,
      )
    : errorNotice(error.code, error.message);
  return page(answer.status, purgePage(frame(ctx, "Purge", "sites"), site, { result: null, error: detail, values }));
}

async function importSites(ctx: Context, form: FormData): Promise<Response> {
  const view = (status: number, rows: ImportRow[] | null, error: Html | null) =>
    page(status, importPage(frame(ctx, "Import sites", "import"), rows, error));
  const file = form.get("file");
  if (file === null || typeof file === "string") {
    return view(400, null, errorNotice("invalid_config", "Choose a YAML or JSON file"));
  }
  let doc: unknown;
  try {
    doc = parseYaml(await file.text(), { maxAliasCount: 100 });
  } catch (error) {
    return view(400, null, errorNotice("invalid_config", `The file is not valid YAML or JSON: ${String(error)}`));
  }
  const list = Array.isArray(doc)
    ? doc
    : typeof doc === "object" && doc !== null
      ? (doc as { sites?: unknown }).sites
      : null;
  if (!Array.isArray(list)) {
    return view(400, null, errorNotice("invalid_config", 'The file must hold a list of sites, or {"sites": [...]}'));
  }
  if (list.length > MAX_IMPORT_SITES) {
    return view(400, null, errorNotice("invalid_config", `At most ${MAX_IMPORT_SITES} sites per file`));
  }
  const rows: ImportRow[] = [];
  // One at a time, in the file's order: each is one write through its owner, as the API makes it.
  for (const [index, item] of list.entries()) {
    const label = labelOf(item, index);
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      rows.push({ label, ok: false, status: 400, message: "invalid_config: not a site object", siteId: null });
      continue;
    }
    const id = (item as { id?: unknown }).id;
    const answer =
      typeof id === "string" && id !== ""
        ? await api(ctx, "PUT", `/sites/${encodeURIComponent(id)}`, item)
        : await api(ctx, "POST", "/sites", item);
    if (answer.status === 200 || answer.status === 201) {
      const site = answer.body.site as Site;
      rows.push({
        label: site.hosts.join(", "),
        ok: true,
        status: answer.status,
        message: `${answer.status === 201 ? "created" : "written"}, revision ${answer.body.revision as number}`,
        siteId: site.id,
      });
    } else {
      const error = errorOf(answer.body);
      rows.push({ label, ok: false, status: answer.status, message: `${error.code}: ${error.message}`, siteId: null });
    }
  }
  return view(200, rows, null);
}

function labelOf(item: unknown, index: number): string {
  if (typeof item === "object" && item !== null) {
    const hosts = (item as { hosts?: unknown }).hosts;
    if (Array.isArray(hosts) && hosts.length) return hosts.map(String).join(", ").slice(0, 200);
    const id = (item as { id?: unknown }).id;
    if (typeof id === "string") return id.slice(0, 64);
  }
  return `#${index + 1}`;
}

async function statsView(ctx: Context): Promise<Response> {
  const params = ctx.url.searchParams;
  const window = params.get("window") ?? "1h";
  // The site menu lists the first page of sites (each is read through its owner); any site id can be asked for.
  const { sites } = await allSites(ctx, 1);
  const choices = sites.map((site) => ({ id: site.id, label: site.hosts.join(", ") || site.id }));
  let site = params.get("site") || null;
  if (site !== null && !choices.some((choice) => choice.id === site)) choices.push({ id: site, label: site });
  // A scoped token reads its sites' stats one at a time; the first is shown by default.
  if (ctx.who.kind === "token" && site === null) site = choices[0]?.id ?? null;
  const view = (status: number, stats: StatsWindow | null, error: Html | null) =>
    page(status, statsPage(frame(ctx, "Stats", "stats"), { window, site, sites: choices, stats, error }));
  if (ctx.who.kind === "token" && site === null) return view(200, null, notice("error", "This token has no sites."));
  const query = `window=${encodeURIComponent(window)}`;
  const answer = await api(ctx, "GET", site ? `/sites/${encodeURIComponent(site)}/stats?${query}` : `/stats?${query}`);
  if (answer.status !== 200) {
    const { code, message } = errorOf(answer.body);
    return view(answer.status, null, errorNotice(code, message));
  }
  return view(200, answer.body as unknown as StatsWindow, null);
}

async function auditView(ctx: Context): Promise<Response> {
  const params = new URLSearchParams();
  const site = ctx.url.searchParams.get("site") || null;
  const before = ctx.url.searchParams.get("before");
  if (site) params.set("site", site);
  if (before) params.set("before", before);
  const answer = await api(ctx, "GET", `/audit${params.size ? `?${params}` : ""}`);
  const f = frame(ctx, "Audit log", "audit");
  if (answer.status !== 200) {
    const { code, message } = errorOf(answer.body);
    return page(answer.status, auditPage(f, { records: [], next: null, site, error: errorNotice(code, message) }));
  }
  const { records, next } = answer.body as unknown as { records: AuditRecord[]; next: string | null };
  return page(200, auditPage(f, { records, next, site, error: null }));
}
