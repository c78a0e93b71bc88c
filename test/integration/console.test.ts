import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { html } from "../../src/console/html";
import { checkCsrf, csrfToken, newSession, SESSION_MS, seal, unseal } from "../../src/console/session";
import type { Site } from "../../src/sites/schema";
import worker from "../../src/worker";
import { ADMIN_TOKEN, adminCall, origin, send, unique } from "../support/harness";

/**
 * The operators' console (src/console/): sessions in a sealed cookie, CSRF on every change, the CSP, and
 * pages that read and change through the admin API's own handler.
 */

const BASE = "http://admin.test/_tiercel/console";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

async function call(
  path: string,
  options: { cookie?: string | null; form?: Record<string, string | string[]>; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie) headers.cookie = `tiercel_console=${options.cookie}`;
  const init: RequestInit = { method: options.form ? "POST" : "GET", headers, redirect: "manual" };
  if (options.form) {
    const body = new URLSearchParams();
    for (const [name, value] of Object.entries(options.form)) {
      for (const one of Array.isArray(value) ? value : [value]) body.append(name, one);
    }
    headers["content-type"] = "application/x-www-form-urlencoded";
    init.body = body;
  }
  const response = await send(`${BASE}${path}`, init);
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Signs in and answers the session cookie's value. */
async function signIn(token = ADMIN_TOKEN): Promise<string> {
  const answer = await call("/login", { form: { token } });
  expect(answer.status).toBe(303);
  const cookie = answer.headers.get("set-cookie") ?? "";
  const value = /^tiercel_console=([^;]+);/.exec(cookie)?.[1];
  expect(value).toBeTruthy();
  return value as string;
}

function csrfOf(page: string): string {
  const value = /name="_csrf" value="([^"]+)"/.exec(page)?.[1];
  expect(value).toBeTruthy();
  return value as string;
}

async function session(token = ADMIN_TOKEN): Promise<{ cookie: string; csrf: string }> {
  const cookie = await signIn(token);
  const page = await call("/sites", { cookie });
  expect(page.status).toBe(200);
  return { cookie, csrf: csrfOf(page.text) };
}

function siteForm(host: string, url: string): Record<string, string | string[]> {
  return {
    hosts: host,
    "origin.kind": "http",
    "origin.url": url,
    "origin.allowPrivate": "on",
    "cache.staleWhileRevalidate": "0",
    "cache.staleIfError": "0",
    "optimize.polish": "off",
    "optimize.quality": "80",
  };
}

async function createSite(): Promise<Site> {
  const created = await adminCall("POST", "/sites", {
    body: { hosts: [`${unique("con")}.test`], origin: { kind: "http", url: origin.url, allowPrivate: true } },
  });
  expect(created.status).toBe(201);
  return created.body.site as Site;
}

describe("sessions and escaping, as functions", () => {
  const secret = "a-secret-of-at-least-32-characters-0123";

  it("opens a sealed session only with its secret and before it expires", async () => {
    const now = 1_800_000_000_000;
    const session = newSession("the-token", now);
    const sealed = await seal(session, secret);
    expect(sealed).not.toContain("the-token");
    expect(await unseal(sealed, secret, now + 1000)).toEqual(session);
    expect(await unseal(sealed, `${secret}x`, now + 1000)).toBeNull();
    expect(await unseal(sealed, secret, now + SESSION_MS)).toBeNull();
    expect(await unseal("garbage!", secret, now)).toBeNull();
    // Two seals of one session differ (a fresh IV each time).
    expect(await seal(session, secret)).not.toBe(sealed);
  });

  it("derives a CSRF token per session, checked in full", async () => {
    const a = newSession("t", 0);
    const b = newSession("t", 0);
    const token = await csrfToken(a, secret);
    expect(await checkCsrf(token, a, secret)).toBe(true);
    expect(await checkCsrf(token, b, secret)).toBe(false);
    expect(await checkCsrf(token.slice(0, -1), a, secret)).toBe(false);
    expect(await checkCsrf(null, a, secret)).toBe(false);
  });

  it("escapes every interpolated value", () => {
    const evil = `<script>alert("x")</script>' onload='x`;
    expect(html`<p title="${evil}">${evil}</p>`.text).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;x">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;x</p>',
    );
    expect(html`${[html`<b>${"<i>"}</b>`, null, false, 1]}`.text).toBe("<b>&lt;i&gt;</b>1");
  });
});

describe("sign-in and session", () => {
  it("sends a visitor without a session to the sign-in page, under a strict CSP", async () => {
    const home = await call("/sites");
    expect(home.status).toBe(303);
    expect(home.headers.get("location")).toBe("/_tiercel/console/login");
    const login = await call("/login");
    expect(login.status).toBe(200);
    const csp = login.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe-inline");
    expect(login.headers.get("cache-control")).toBe("no-store");
    // Every script is a file of the console's own: no inline script, no inline style.
    expect(login.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(login.text).not.toMatch(/\sstyle=/);
    expect(login.text).toContain('type="password"');
    // Over plain HTTP on a host that is not loopback the Secure cookie would be dropped: the page says so.
    expect(login.text).toContain("plain HTTP");
    const overHttps = await send("https://admin.test/_tiercel/console/login");
    expect(await overHttps.text()).not.toContain("plain HTTP");
  });

  it("refuses a wrong token, and seals the right one in an HttpOnly, Secure, SameSite=Strict cookie", async () => {
    const wrong = await call("/login", { form: { token: "not-the-token-0123456789abcdef0123456789" } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    const right = await call("/login", { form: { token: ADMIN_TOKEN } });
    expect(right.status).toBe(303);
    expect(right.headers.get("location")).toBe("/_tiercel/console/sites");
    const cookie = right.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; SameSite=Strict/);
    expect(cookie).toMatch(/; Path=\/_tiercel\/console/);
    // Opaque: neither the token nor any recognisable part of it is in the cookie.
    expect(cookie).not.toContain(ADMIN_TOKEN);
    expect(cookie).not.toContain(btoa(ADMIN_TOKEN).slice(0, 16));
    const value = /^tiercel_console=([^;]+)/.exec(cookie)?.[1] as string;
    const page = await call("/sites", { cookie: value });
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(ADMIN_TOKEN);
    expect(page.text).toContain("Sign out");
  });

  it("drops a forged or altered cookie", async () => {
    const cookie = await signIn();
    const altered = `${cookie.slice(0, -2)}${cookie.endsWith("A") ? "B" : "A"}A`;
    const answer = await call("/sites", { cookie: altered });
    expect(answer.status).toBe(303);
    expect(answer.headers.get("location")).toBe("/_tiercel/console/login");
    expect(answer.headers.get("set-cookie")).toMatch(/Max-Age=0/);
  });

  it("signs out: the cookie is cleared", async () => {
    const { cookie, csrf } = await session();
    const out = await call("/logout", { cookie, form: { _csrf: csrf } });
    expect(out.status).toBe(303);
    expect(out.headers.get("location")).toBe("/_tiercel/console/login");
    expect(out.headers.get("set-cookie")).toMatch(/^tiercel_console=; .*Max-Age=0/);
  });
});

describe("CSRF", () => {
  it("refuses a change without the session's CSRF token, with a wrong one, or from another site", async () => {
    const { cookie, csrf } = await session();
    const host = `${unique("csrf")}.test`;
    const form = siteForm(host, origin.url);
    const other = await session();
    for (const [label, extra, headers] of [
      ["none", {}, {}],
      ["wrong", { _csrf: "x".repeat(43) }, {}],
      ["another session's", { _csrf: other.csrf }, {}],
      ["cross-site", { _csrf: csrf }, { "sec-fetch-site": "cross-site" }],
      ["other origin", { _csrf: csrf }, { origin: "https://evil.example" }],
    ] as const) {
      const answer = await call("/sites/new", { cookie, form: { ...form, ...extra }, headers });
      expect(answer.status, label).toBe(403);
      expect(answer.text, label).toContain("csrf_failed");
    }
    // Nothing was created.
    const list = await adminCall("GET", "/sites");
    expect(JSON.stringify(list.body)).not.toContain(host);
  });

  it("refuses a change with no session at all", async () => {
    const answer = await call("/sites/new", { form: siteForm(`${unique("nosess")}.test`, origin.url) });
    expect(answer.status).toBe(401);
  });
});

describe("sites", () => {
  it("shows the schema's error next to the field, then creates the site once it is fixed", async () => {
    const { cookie, csrf } = await session();
    const host = `${unique("form")}.test`;
    const bad = await call("/sites/new", {
      cookie,
      form: { ...siteForm(host, "not a url"), "optimize.quality": "120", _csrf: csrf },
    });
    expect(bad.status, bad.text.slice(bad.text.indexOf("<main"))).toBe(400);
    expect(bad.text).toMatch(
      /id="f-origin-url"[^>]*aria-describedby="[^"]*f-origin-url-error"[^>]*aria-invalid="true"/,
    );
    expect(bad.text).toMatch(/id="f-origin-url-error"[^>]*>must be an absolute http or https URL/);
    expect(bad.text).toMatch(/id="f-optimize-quality-error"/);
    // The summary at the top links to each field in error.
    expect(bad.text).toMatch(
      /2 fields have an error:\s*<a href="#f-origin-url">Origin URL<\/a>, <a href="#f-optimize-quality">/,
    );
    // What was typed is kept.
    expect(bad.text).toContain('value="not a url"');

    const good = await call("/sites/new", { cookie, form: { ...siteForm(host, origin.url), _csrf: csrf } });
    expect(good.status).toBe(303);
    const location = good.headers.get("location") ?? "";
    const id = /\/sites\/([A-Za-z0-9_-]+)\?saved=1$/.exec(location)?.[1] as string;
    expect(id).toBeTruthy();
    const read = await adminCall("GET", `/sites/${id}`);
    expect((read.body.site as Site).hosts).toEqual([host]);

    // The list finds it by search, and the edit page shows what was saved.
    const list = await call(`/sites?q=${encodeURIComponent(host)}`, { cookie });
    expect(list.text).toContain(host);
    expect(list.text).toContain("1 site;");
    const edit = await call(`/sites/${id}?saved=1`, { cookie });
    expect(edit.text).toContain("Saved: revision");
    // The whole stored config is shown under the form, escaped.
    expect(edit.text).toContain("The whole stored config (JSON)");
    expect(edit.text).toContain(`&quot;id&quot;: &quot;${id}&quot;`);
  });

  it("edits a site, keeping the settings the form does not show", async () => {
    const site = await createSite();
    await adminCall("PUT", `/sites/${site.id}`, {
      body: { ...site, bypass: { paths: ["/admin/"], cookies: [] } },
    });
    const { cookie, csrf } = await session();
    const host = site.hosts[0] as string;
    const form = { ...siteForm(host, origin.url), "cache.edgeTtl": "120", "optimize.minify.css": "on", _csrf: csrf };
    const saved = await call(`/sites/${site.id}`, { cookie, form });
    expect(saved.status).toBe(303);
    const read = (await adminCall("GET", `/sites/${site.id}`)).body.site as Site;
    expect(read.cache.edgeTtl).toBe(120);
    expect(read.optimize.minify.css).toBe(true);
    expect(read.bypass.paths).toEqual(["/admin/"]);
  });

  it("deletes a site only when its first host is typed to confirm", async () => {
    const site = await createSite();
    const { cookie, csrf } = await session();
    const confirmPage = await call(`/sites/${site.id}/delete`, { cookie });
    expect(confirmPage.status).toBe(200);
    const wrong = await call(`/sites/${site.id}/delete`, { cookie, form: { _csrf: csrf, confirm: "nope" } });
    expect(wrong.status).toBe(400);
    expect((await adminCall("GET", `/sites/${site.id}`)).status).toBe(200);
    const done = await call(`/sites/${site.id}/delete`, {
      cookie,
      form: { _csrf: csrf, confirm: site.hosts[0] as string },
    });
    expect(done.status).toBe(303);
    expect((await adminCall("GET", `/sites/${site.id}`)).status).toBe(404);
  });

  it("imports a YAML file and answers per site", async () => {
    const { cookie, csrf } = await session();
    const good = `${unique("imp")}.test`;
    const yaml = [
      `- hosts: [${good}]`,
      `  origin: { kind: http, url: ${origin.url}, allowPrivate: true }`,
      `- hosts: [${unique("imp")}.test]`,
      "  origin: { kind: http, url: 'ftp://nope' }",
    ].join("\n");
    const body = new FormData();
    body.set("_csrf", csrf);
    body.set("file", new File([yaml], "sites.yaml", { type: "application/yaml" }));
    const response = await send(`${BASE}/import`, {
      method: "POST",
      headers: { cookie: `tiercel_console=${cookie}` },
      body,
    });
    const text = await response.text();
    expect(response.status).toBe(200);
    expect(text).toContain("1 of 2 sites imported.");
    expect(text).toContain(good);
    expect(text).toMatch(/invalid_config: origin\.url/);
  });
});

describe("purge, stats and audit", () => {
  it("purges a URL: the answer says when it is visible everywhere, and the next request misses", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    const path = `/${unique("p")}.css`;
    await origin.route(path, { status: 200, headers: { "cache-control": "max-age=600" }, body: "a{}" });
    await send(`http://${host}${path}`);
    expect((await send(`http://${host}${path}`)).headers.get("cache-status")).toMatch(/hit/);
    const { cookie, csrf } = await session();
    const purged = await call(`/sites/${site.id}/purge`, {
      cookie,
      form: { _csrf: csrf, urls: `https://${host}${path}`, tags: "" },
    });
    expect(purged.status).toBe(200);
    expect(purged.text).toContain("Purged 1 URL");
    expect(purged.text).toMatch(/everywhere within <strong>[\d.]+ s<\/strong>/);
    const after = await send(`http://${host}${path}`);
    expect(after.headers.get("cache-status")).toMatch(/fwd=miss/);

    const bad = await call(`/sites/${site.id}/purge`, {
      cookie,
      form: { _csrf: csrf, urls: "https://elsewhere.test/x" },
    });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("not an absolute URL on one of the site");
  });

  it("charts the global stats with the window chosen, and lists the audit log", async () => {
    const site = await createSite();
    const host = site.hosts[0] as string;
    await origin.route("/stat.txt", { status: 200, headers: { "cache-control": "max-age=60" }, body: "s" });
    await send(`http://${host}/stat.txt`);
    await send(`http://${host}/stat.txt`);
    const { cookie } = await session();
    const stats = await call(`/stats?site=${site.id}&window=5m`, { cookie });
    expect(stats.status).toBe(200);
    expect(stats.text).toContain('id="stats-data"');
    expect(stats.text).toMatch(/<th scope="row">Requests<\/th><td data-figure="Requests">2<\/td>/);
    expect(stats.text).toMatch(/<option selected>5m<\/option>/);
    expect(stats.text).toMatch(/src="\/_tiercel\/console\/assets\/uplot\.[0-9a-f]{8}\.js"/);
    // All sites: the same site in the per-site table, linked to its own view.
    const all = await call("/stats?window=5m", { cookie });
    expect(all.status).toBe(200);
    expect(all.text).toContain(
      `<a href="/_tiercel/console/stats?site=${site.id}&amp;window=5m">${host}</a></td><td>2</td>`,
    );
    const badWindow = await call(`/stats?window=2h`, { cookie });
    expect(badWindow.status).toBe(400);
    expect(badWindow.text).toContain("invalid_window");
    const audit = await call(`/audit?site=${site.id}`, { cookie });
    expect(audit.status).toBe(200);
    expect(audit.text).toContain("site.create");
  });

  it("serves its files with a long cache life, by digest", async () => {
    const { cookie } = await session();
    const page = await call("/stats", { cookie });
    for (const [, path] of page.text.matchAll(/(?:src|href)="(\/_tiercel\/console\/assets\/[^"]+)"/g)) {
      const file = await send(`http://admin.test${path}`);
      expect(file.status, path).toBe(200);
      expect(file.headers.get("cache-control")).toContain("immutable");
      expect((await file.text()).length).toBeGreaterThan(500);
    }
    expect((await send(`${BASE}/assets/nope.js`)).status).toBe(404);
  });
});

describe("scoped tokens", () => {
  it("see only their sites, and are refused another site's purge and the admin pages", async () => {
    const [mine, theirs] = [await createSite(), await createSite()];
    const made = await adminCall("POST", "/tokens", { body: { name: unique("console"), sites: [mine.id] } });
    const secret = made.body.secret as string;
    const { cookie, csrf } = await session(secret);
    const list = await call("/sites", { cookie });
    expect(list.text).toContain(mine.hosts[0] as string);
    expect(list.text).not.toContain(theirs.hosts[0] as string);
    expect(list.text).not.toContain(secret);
    expect(list.text).not.toContain("New site");
    const purge = await call(`/sites/${theirs.id}/purge`, { cookie, form: { _csrf: csrf, all: "on" } });
    expect(purge.status).toBe(403);
    expect(purge.text).toContain("forbidden_site");
    const create = await call("/sites/new", {
      cookie,
      form: { ...siteForm(`${unique("s")}.test`, origin.url), _csrf: csrf },
    });
    expect(create.status).toBe(403);
    expect(create.text).toContain("admin_only");
    const stats = await call("/stats", { cookie });
    expect(stats.status).toBe(200);

    // Revoked: the session ends at the next request.
    await adminCall("DELETE", `/tokens/${(made.body.token as { id: string }).id}`);
    const after = await call("/sites", { cookie });
    expect(after.status).toBe(303);
    expect(after.headers.get("location")).toBe("/_tiercel/console/login");
  });
});

/** A request through the Worker with ADMIN_HOST set, as a deploy would set it. */
async function sendWithAdminHost(url: string, init: RequestInit = {}) {
  const ctx = createExecutionContext();
  const request = new Request(url, init) as Request<unknown, IncomingRequestCfProperties>;
  const response = await worker.fetch(request, { ...env, ADMIN_HOST: "console.admin.test" } as Env, ctx);
  const text = await response.text();
  await waitOnExecutionContext(ctx);
  return { status: response.status, headers: response.headers, text };
}

describe("where the console is served", () => {
  it("is served on ADMIN_HOST when it is set, and on no other host", async () => {
    const site = await createSite();
    const login = await sendWithAdminHost("https://console.admin.test/_tiercel/console/login");
    expect(login.status).toBe(200);
    expect(login.text).toContain('type="password"');
    const signedIn = await sendWithAdminHost("https://console.admin.test/_tiercel/console/login", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: ADMIN_TOKEN }),
      redirect: "manual",
    });
    expect(signedIn.status).toBe(303);
    for (const host of [site.hosts[0] as string, "elsewhere.test"]) {
      const elsewhere = await sendWithAdminHost(`https://${host}/_tiercel/console/login`);
      expect(elsewhere.status, host).toBe(404);
      expect(elsewhere.text, host).toContain("admin_host_only");
    }
  });

  it("is not served on a site's host when ADMIN_HOST is unset (the site's pages share its origin)", async () => {
    const site = await createSite();
    const answer = await send(`http://${site.hosts[0]}/_tiercel/console/login`);
    expect(answer.status).toBe(404);
    expect(await answer.text()).toContain("console_needs_admin_host");
  });
});
