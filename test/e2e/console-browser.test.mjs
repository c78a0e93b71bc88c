// End to end: the operators' console (src/console/) in a real browser, Debian's Chromium driven by
// playwright-core, against the Worker under `wrangler dev` and a counting HTTP origin on loopback. An operator
// signs in, creates a site (a bad field first), purges a URL and sees the next request miss, sees a stat change
// after traffic, and signs out; and the security promises: no token in any URL, page or script-readable
// storage, changes refused without the CSRF token, a scoped token refused another site, no CSP violation.
// Run by `npm test` with `node --test test/e2e/`. Without Chromium (and outside CI) it is skipped with a message.
// CONSOLE_SCREENSHOT=1 also writes the README's screenshot, docs/console.png.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { startWranglerDev } from "../support/wrangler-dev.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} not installed (apt-get install chromium)` : false;
const TOKEN = "e2e-console-token-0123456789abcdef0123";
const HOST = "shop.console.test";

let dev;
let origin;
let originUrl;
let browser;
const hits = new Map();

/** A request to the Worker for a site's host (the browser cannot set Host); answers status and headers. */
function siteGet(host, path) {
  const { hostname, port } = new URL(dev.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function api(method, path, body) {
  const response = await fetch(`${dev.url}/_tiercel/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

before(async () => {
  if (skip) return;
  origin = createServer((req, res) => {
    const path = new URL(req.url, "http://origin").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    res.writeHead(200, { "content-type": "text/css", "cache-control": "public, max-age=600" });
    res.end(`/* ${path} #${hits.get(path)} */`);
  });
  await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
  originUrl = `http://127.0.0.1:${origin.address().port}`;
  dev = await startWranglerDev({ token: TOKEN });
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve()));
});

/** A browser context that records every URL it asks for and every CSP violation or page error it sees. */
async function watchedPage(viewport = { width: 1200, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const seen = { urls: [], problems: [], sources: [] };
  page.on("request", (request) => seen.urls.push(request.url()));
  // Refusals the test provokes on purpose (400, 403) are logged as failed loads; anything else is a problem.
  page.on("console", (message) => {
    const text = message.text();
    if (message.type() === "error" && !/status of (400|403) /.test(text)) seen.problems.push(text);
  });
  page.on("pageerror", (error) => seen.problems.push(String(error)));
  page.on("load", async () => {
    try {
      seen.sources.push(await page.content());
    } catch {}
  });
  return { context, page, seen };
}

async function signIn(page, token, base = dev.url) {
  await page.goto(`${base}/_tiercel/console/`);
  assert.match(page.url(), /\/_tiercel\/console\/login$/);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/_tiercel\/console\/sites$/);
}

/** axe-core's WCAG 2.x A and AA checks of the page as it is (run through the DevTools protocol: no CSP change). */
async function accessibilityProblems(page) {
  const source = await readFile(`${ROOT}node_modules/axe-core/axe.min.js`, "utf8");
  await page.evaluate(source);
  const result = await page.evaluate(() =>
    globalThis.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21aa"] } }),
  );
  // The checks ran (a page where nothing was checked would pass anything).
  assert.ok(result.passes.length >= 10, `${page.url()}: only ${result.passes.length} axe checks passed`);
  return result.violations.map(
    (v) => `${page.url()}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target).join(" ")}`,
  );
}

function requestsFigure(page) {
  return page.locator('td[data-figure="Requests"]').textContent();
}

test("the console serves the installed uPlot: its vendored copies are the package's files", async () => {
  for (const [vendored, dist] of [
    ["uplot.iife.min.js.txt", "uPlot.iife.min.js"],
    ["uplot.min.css.txt", "uPlot.min.css"],
  ]) {
    const copy = await readFile(`${ROOT}src/console/static/vendor/${vendored}`);
    const installed = await readFile(`${ROOT}node_modules/uplot/dist/${dist}`);
    assert.ok(
      copy.equals(installed),
      `src/console/static/vendor/${vendored} differs from node_modules/uplot/dist/${dist}: copy it again`,
    );
  }
});

test("an operator signs in, creates a site, purges a URL, watches the stats and signs out", {
  skip,
  timeout: 180_000,
}, async () => {
  const { context, page, seen } = await watchedPage();
  await signIn(page, TOKEN);

  // The session cookie, as the browser keeps it under http://127.0.0.1 (Chromium accepts Secure there).
  const cookies = await context.cookies();
  const session = cookies.find((cookie) => cookie.name === "tiercel_console");
  assert.ok(session, JSON.stringify(cookies));
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/_tiercel/console");
  assert.ok(!session.value.includes(TOKEN));

  // A new site with a bad origin URL: the schema's message next to the field; then fixed.
  await page.getByRole("link", { name: "New site" }).click();
  await page.getByLabel("Hosts").fill(HOST);
  await page.getByLabel("Origin URL").fill("not a url");
  await page.getByLabel("Allow a private or loopback origin address").check();
  await page.getByRole("button", { name: "Create site" }).click();
  const fieldError = page.locator("#f-origin-url-error");
  assert.match((await fieldError.textContent()) ?? "", /must be an absolute http or https URL/);
  assert.equal(await page.getByLabel("Origin URL").getAttribute("aria-invalid"), "true");
  await page.getByLabel("Origin URL").fill(originUrl);
  await page.getByRole("button", { name: "Create site" }).click();
  await page.waitForURL(/\/sites\/[A-Za-z0-9_-]+\?saved=1$/);
  assert.match((await page.locator(".notice.ok").textContent()) ?? "", /Saved: revision 1/);
  const siteId = /\/sites\/([A-Za-z0-9_-]+)\?/.exec(page.url())[1];

  // Traffic: a miss, then a hit.
  assert.match((await siteGet(HOST, "/style.css")).headers["cache-status"], /fwd=miss/);
  assert.match((await siteGet(HOST, "/style.css")).headers["cache-status"], /hit/);
  assert.equal(hits.get("/style.css"), 1);

  // Purge the URL: the answer says when it is visible everywhere; the next request misses.
  await page.getByRole("link", { name: "Purge" }).first().click();
  await page.getByLabel("URLs").fill(`https://${HOST}/style.css`);
  await page.getByRole("button", { name: "Purge" }).click();
  const done = (await page.locator(".notice.ok").textContent()) ?? "";
  assert.match(done, /Purged 1 URL/);
  assert.match(done, /everywhere within [\d.]+ s/);
  assert.match((await siteGet(HOST, "/style.css")).headers["cache-status"], /fwd=miss/);
  assert.equal(hits.get("/style.css"), 2);

  // Stats: the site's figures over 5 minutes, charted; more traffic shows on reload.
  await page.goto(`${dev.url}/_tiercel/console/stats?site=${siteId}&window=5m`);
  await page.locator(".uplot").first().waitFor();
  assert.equal(await page.locator(".uplot").count(), 7);
  const before = Number(await requestsFigure(page));
  assert.ok(before >= 3, `requests ${before}`);
  await siteGet(HOST, "/style.css");
  await siteGet(HOST, "/other.css");
  await page.reload();
  assert.equal(Number(await requestsFigure(page)), before + 2);
  if (process.env.CONSOLE_SCREENSHOT) {
    const { writeFile } = await import("node:fs/promises");
    await page.setViewportSize({ width: 1100, height: 760 });
    await page.waitForTimeout(300);
    await writeFile(`${ROOT}docs/console.png`, await page.screenshot({ type: "png" }));
  }

  // The sites list shows the hit ratio from the same stats, and finds the site by search.
  await page.goto(`${dev.url}/_tiercel/console/sites`);
  await page.getByLabel("Search sites").fill("shop.console");
  await page.getByRole("button", { name: "Search" }).click();
  const row = page.locator("table.sites tbody tr");
  assert.equal(await row.count(), 1);
  assert.match((await row.textContent()) ?? "", /\d+\.\d% of \d+/);

  // The audit log has the change.
  await page.getByRole("link", { name: "Audit log" }).click();
  assert.match((await page.locator("table").textContent()) ?? "", /site\.purge/);

  // A change whose form lost its CSRF token is refused, and changes nothing.
  await page.goto(`${dev.url}/_tiercel/console/sites/${siteId}/purge`);
  await page.evaluate(() => {
    for (const input of document.querySelectorAll('input[name="_csrf"]')) input.remove();
  });
  await page.getByLabel("Everything (the whole site)").check();
  await page.getByRole("button", { name: "Purge" }).click();
  assert.match((await page.locator("main").textContent()) ?? "", /csrf_failed/);
  assert.equal((await api("GET", `/sites/${siteId}`)).body.site.generation, 0);

  // Nothing a page or script can read holds the token: URLs, page sources, storage, document.cookie.
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  assert.equal(await page.evaluate(() => document.cookie), "");
  for (const url of seen.urls) assert.ok(!url.includes(TOKEN), url);
  for (const source of seen.sources) assert.ok(!source.includes(TOKEN));
  assert.ok(seen.sources.length >= 8, `${seen.sources.length} pages seen`);
  assert.deepEqual(seen.problems, []);

  // Accessibility (labels, names, contrast, structure) of every kind of page, errors shown included.
  const problems = [];
  for (const path of [
    "sites",
    `sites/${siteId}`,
    `sites/${siteId}/purge`,
    `sites/${siteId}/delete`,
    "import",
    "audit",
    "stats",
  ]) {
    await page.goto(`${dev.url}/_tiercel/console/${path}`);
    problems.push(...(await accessibilityProblems(page)));
  }
  await page.goto(`${dev.url}/_tiercel/console/stats?site=${siteId}`);
  await page.locator(".uplot").first().waitFor();
  problems.push(...(await accessibilityProblems(page)));
  await page.goto(`${dev.url}/_tiercel/console/sites/new`);
  await page.getByLabel("Origin URL").fill("nope");
  await page.getByRole("button", { name: "Create site" }).click();
  problems.push(...(await accessibilityProblems(page)));
  assert.deepEqual(problems, []);

  // On a phone: one column, nothing wider than the screen.
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  for (const path of ["sites", `sites/${siteId}`, `stats?site=${siteId}`]) {
    await phone.goto(`${dev.url}/_tiercel/console/${path}`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${path}: ${overflow}px wider than the phone`);
  }
  await phone.close();

  // Sign out: the cookie is gone and the console asks to sign in again.
  await page.goto(`${dev.url}/_tiercel/console/sites`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login$/);
  assert.equal((await context.cookies()).filter((cookie) => cookie.name === "tiercel_console").length, 0);
  await page.goto(`${dev.url}/_tiercel/console/sites`);
  assert.match(page.url(), /\/login$/);
  await context.close();
});

test("a site-scoped token sees only its site and is refused another site's purge", {
  skip,
  timeout: 120_000,
}, async () => {
  const mine = await api("POST", "/sites", {
    hosts: ["mine.console.test"],
    origin: { kind: "http", url: originUrl, allowPrivate: true },
  });
  const theirs = await api("POST", "/sites", {
    hosts: ["theirs.console.test"],
    origin: { kind: "http", url: originUrl, allowPrivate: true },
  });
  const made = await api("POST", "/tokens", { name: "console e2e", sites: [mine.body.site.id] });
  const secret = made.body.secret;
  // At http://localhost this time (what `npm start` prints): the Secure cookie is kept there too.
  const { context, page, seen } = await watchedPage();
  const local = dev.url.replace("127.0.0.1", "localhost");
  // By keyboard alone: the token field has the focus, Enter signs in, Tab reaches the skip link first.
  await page.goto(`${local}/_tiercel/console/`);
  await page.keyboard.type(secret);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/_tiercel\/console\/sites$/);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  const list = (await page.locator("main").textContent()) ?? "";
  assert.match(list, /mine\.console\.test/);
  assert.doesNotMatch(list, /theirs\.console\.test/);

  // With this session's own CSRF token, a purge of the other site is refused by the API's scope check.
  const csrf = await page.locator('input[name="_csrf"]').first().getAttribute("value");
  const refused = await page.request.post(`${local}/_tiercel/console/sites/${theirs.body.site.id}/purge`, {
    form: { _csrf: csrf, all: "on" },
    headers: { origin: local, "sec-fetch-site": "same-origin" },
  });
  assert.equal(refused.status(), 403);
  assert.match(await refused.text(), /forbidden_site/);
  assert.equal((await api("GET", `/sites/${theirs.body.site.id}`)).body.site.generation, 0);
  // And its own site's purge goes through.
  const allowed = await page.request.post(`${local}/_tiercel/console/sites/${mine.body.site.id}/purge`, {
    form: { _csrf: csrf, all: "on" },
    headers: { origin: local, "sec-fetch-site": "same-origin" },
  });
  assert.equal(allowed.status(), 200);
  assert.equal((await api("GET", `/sites/${mine.body.site.id}`)).body.site.generation, 1);

  for (const url of seen.urls) assert.ok(!url.includes(secret), url);
  for (const source of seen.sources) assert.ok(!source.includes(secret));
  assert.deepEqual(seen.problems, []);
  await context.close();
});
