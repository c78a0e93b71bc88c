// Runs the `tiercel` command as a child process against an in-memory fake of the admin API
// (cli/testing/fake-admin-api.mjs), checking standard output, standard error and exit statuses. Each test
// has its own fake, so the tests run concurrently. Run with: node --test cli/test/
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_URL, LOCAL_DEV_TOKEN, resolveConnection } from "../connection.mjs";
import { startFakeAdminApi } from "../testing/fake-admin-api.mjs";

const CLI = fileURLToPath(new URL("../tiercel.mjs", import.meta.url));
const TOKEN = "test-admin-token-7f3a9c-0123456789abcdef";
const concurrently = { concurrency: true };

/** @typedef {Awaited<ReturnType<typeof startFakeAdminApi>>} FakeApi */
/** @typedef {import("node:test").TestContext} TestContext */

/** @type {string} */
let dir;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tiercel-cli-"));
});
after(() => rm(dir, { recursive: true, force: true }));

/**
 * A fake admin API holding `sites`, closed when the test ends.
 *
 * @param {TestContext} t
 * @param {Record<string, any>[]} [sites]
 * @returns {Promise<FakeApi>}
 */
async function fakeApi(t, sites = []) {
  const api = await startFakeAdminApi({ token: TOKEN, sites });
  t.after(() => api.close());
  return api;
}

/**
 * Any HTTP server, for answers the admin API would never give; closed when the test ends.
 *
 * @param {TestContext} t
 * @param {import("node:http").RequestListener} handler
 * @returns {Promise<string>} its URL
 */
async function serve(t, handler) {
  const server = createServer(handler);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${/** @type {import("node:net").AddressInfo} */ (server.address()).port}`;
}

/**
 * The URL of a port nothing listens on: bound, then released.
 *
 * @returns {Promise<string>}
 */
function freeUrl() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
      server.close(() => resolve(`http://127.0.0.1:${port}`));
    });
  });
}

/**
 * @param {string} id
 * @param {string[]} hosts
 * @returns {Record<string, any>}
 */
function httpSite(id, hosts, url = "https://backend.example") {
  return { version: 1, id, hosts, origin: { kind: "http", url }, cache: { edgeTtl: 60 }, generation: 0 };
}

/**
 * Runs the CLI with only the environment given, never the developer's own TIERCEL_* variables: by default
 * the fake's URL and the right token.
 *
 * @param {string[]} args
 * @param {{ api?: FakeApi, env?: Record<string, string>, stdin?: string }} [options]
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string }>}
 */
function tiercel(args, { api, env = api ? { TIERCEL_URL: api.url, TIERCEL_TOKEN: TOKEN } : {}, stdin = "" } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? "", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/**
 * @param {string} name unique within the run: tests write concurrently
 * @param {string} content
 */
async function file(name, content) {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

describe("sites list", concurrently, () => {
  test("follows the cursor across pages and prints one aligned row per site", async (t) => {
    const api = await fakeApi(t, [
      httpSite("site-aaaaaaaa", ["a.example", "www.a.example"]),
      httpSite("site-bbbbbbbb", ["b.example"]),
      {
        ...httpSite("site-cccccccc", ["c.example"]),
        origin: { kind: "s3", endpoint: "https://s3.example", bucket: "media", prefix: "c/" },
      },
      httpSite("site-dddddddd", ["d.example"]),
      httpSite("site-eeeeeeee", []),
    ]);
    const { code, stdout, stderr } = await tiercel(["sites", "list"], { api });
    assert.equal(stderr, "");
    assert.equal(code, 0);
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines.length, 6);
    assert.match(lines[0] ?? "", /^ID\s+HOSTS\s+KIND\s+ORIGIN$/);
    assert.equal(lines[1], "site-aaaaaaaa  a.example, www.a.example  http  https://backend.example");
    assert.match(stdout, /^site-cccccccc {2}c\.example +s3 {4}media\/c\/ at https:\/\/s3\.example$/m);
    assert.match(stdout, /^site-eeeeeeee {2}\(none\) +http/m);
    const kindColumn = (lines[0] ?? "").indexOf("KIND");
    for (const line of lines.slice(1)) assert.match(line.slice(kindColumn), /^(http|s3) /);
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.path}${r.search}`),
      ["GET /_tiercel/api/v1/sites", "GET /_tiercel/api/v1/sites?cursor=2", "GET /_tiercel/api/v1/sites?cursor=4"],
    );
    assert.ok(api.requests.every((r) => r.authorization === `Bearer ${TOKEN}`));
  });

  test("--json prints every page's sites as one answer that parses", async (t) => {
    const sites = [
      httpSite("site-aaaaaaaa", ["a.example"]),
      httpSite("site-bbbbbbbb", []),
      httpSite("site-cccccccc", []),
    ];
    const api = await fakeApi(t, sites);
    const { code, stdout } = await tiercel(["sites", "list", "--json"], { api });
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { sites, cursor: null });
    assert.equal(api.requests.length, 2);
  });

  test("says so when there are no sites", async (t) => {
    const { code, stdout } = await tiercel(["sites", "list"], { api: await fakeApi(t) });
    assert.equal(code, 0);
    assert.equal(stdout, "no sites\n");
  });
});

describe("sites get", concurrently, () => {
  test("prints aligned key: value lines", async (t) => {
    const site = { ...httpSite("site-aaaaaaaa", ["a.example", "b.example"]), purges: { urls: { k: 1 }, tags: {} } };
    const { code, stdout } = await tiercel(["sites", "get", "site-aaaaaaaa"], { api: await fakeApi(t, [site]) });
    assert.equal(code, 0);
    assert.equal(
      stdout,
      `id:             site-aaaaaaaa
hosts:          a.example, b.example
version:        1
origin.kind:    http
origin.url:     https://backend.example
cache.edgeTtl:  60
generation:     0
purges:         1 url, 0 tag, 0 soft tag recorded
`,
    );
  });

  test("--json prints the API's answer", async (t) => {
    const api = await fakeApi(t, [httpSite("site-aaaaaaaa", ["a.example"])]);
    const { code, stdout } = await tiercel(["--json", "sites", "get", "site-aaaaaaaa"], { api });
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { site: httpSite("site-aaaaaaaa", ["a.example"]) });
  });

  test("an unknown site is the API's error: exit 1", async (t) => {
    const { code, stdout, stderr } = await tiercel(["sites", "get", "site-missing1"], { api: await fakeApi(t) });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.equal(stderr, "tiercel: No site site-missing1 (site_not_found)\n");
  });

  test("under --json the API's error answer also goes to standard output", async (t) => {
    const { code, stdout, stderr } = await tiercel(["sites", "get", "site-missing1", "--json"], {
      api: await fakeApi(t),
    });
    assert.equal(code, 1);
    assert.equal(JSON.parse(stdout).error.code, "site_not_found");
    assert.match(stderr, /\(site_not_found\)\n$/);
  });

  test("an argument that is not a site id is refused before anything is sent", async (t) => {
    const api = await fakeApi(t);
    const { code, stderr } = await tiercel(["sites", "get", ".."], { api });
    assert.equal(code, 2);
    assert.match(stderr, /is not a site id/);
    assert.equal(api.requests.length, 0);
  });
});

describe("sites put", concurrently, () => {
  test("from a JSON file: a site without id is created with POST", async (t) => {
    const api = await fakeApi(t);
    const site = { hosts: ["new.example"], origin: { kind: "http", url: "https://backend.example" } };
    const path = await file("one.json", JSON.stringify(site));
    const { code, stdout, stderr } = await tiercel(["sites", "put", path], { api });
    assert.equal(stderr, "");
    assert.equal(code, 0);
    const [created] = api.sites.values();
    assert.equal(stdout, `created  ${created?.id}  new.example\n`);
    assert.deepEqual(
      api.requests.map((r) => [r.method, r.path, r.body]),
      [["POST", "/_tiercel/api/v1/sites", site]],
    );
  });

  test("from a YAML list: each site is sent, failures are reported and the rest still done", async (t) => {
    const api = await fakeApi(t, [httpSite("site-owner01", ["taken.example"])]);
    const path = await file(
      "many.yaml",
      `# bulk import
- hosts: [one.example]
  origin: { kind: http, url: "https://one.backend.example" }
- id: site-chosen01
  hosts: [two.example]
  origin:
    kind: s3
    endpoint: https://s3.us-east-1.amazonaws.com
    bucket: media
    region: us-east-1
    accessKeyIdSecret: KEY
    secretAccessKeySecret: SECRET
- hosts: [taken.example]
  origin: { kind: http, url: "https://three.backend.example" }
- hosts: [bad host.example]
  origin: { kind: http, url: "not a url" }
- hosts: [five.example]
  origin: { kind: http, url: "https://five.backend.example" }
`,
    );
    const { code, stdout, stderr } = await tiercel(["sites", "put", path], { api });
    assert.equal(code, 1);
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.match(lines[0] ?? "", /^created {2}\S+ {2}one\.example$/);
    assert.equal(lines[1], "saved    site-chosen01  two.example");
    assert.match(lines[2] ?? "", /^created {2}\S+ {2}five\.example$/);
    assert.equal(
      stderr,
      `tiercel: site 3 (taken.example): Host taken.example is already claimed by another site (host_taken)
  taken.example belongs to site site-owner01
tiercel: site 4 (bad host.example): the site config is invalid (invalid_config)
  hosts.0: must be a host name without port
  origin.url: must be an absolute http or https URL
tiercel: 2 of 5 sites failed (some_failed)
`,
    );
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.path}`),
      [
        "POST /_tiercel/api/v1/sites",
        "PUT /_tiercel/api/v1/sites/site-chosen01",
        "POST /_tiercel/api/v1/sites",
        "POST /_tiercel/api/v1/sites",
        "POST /_tiercel/api/v1/sites",
      ],
    );
    assert.equal(api.sites.size, 4);
  });

  test("a list stops when the Worker cannot be reached: exit 3", async () => {
    const path = await file("unreached.json", JSON.stringify([{ hosts: ["a.example"] }, { hosts: ["b.example"] }]));
    const closed = await freeUrl();
    const { code, stdout, stderr } = await tiercel(["sites", "put", path], {
      env: { TIERCEL_URL: closed, TIERCEL_TOKEN: TOKEN },
    });
    assert.equal(code, 3);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      `tiercel: site 1 (a.example): cannot reach the Worker at ${closed}: ECONNREFUSED (unreachable)
tiercel: stopped: 2 of 2 sites not sent or not confirmed (stopped)
`,
    );
  });

  test("a list under --json gives one JSON line per answer, error answers included", async (t) => {
    const api = await fakeApi(t, [httpSite("site-owner01", ["taken.example"])]);
    const path = await file(
      "list.json",
      JSON.stringify([
        { hosts: ["ok.example"], origin: { kind: "http", url: "https://ok.example" } },
        { hosts: ["taken.example"], origin: { kind: "http", url: "https://ok.example" } },
      ]),
    );
    const { code, stdout } = await tiercel(["sites", "put", path, "--json"], { api });
    assert.equal(code, 1);
    const answers = stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.equal(answers.length, 2);
    assert.deepEqual(answers[0].site.hosts, ["ok.example"]);
    assert.equal(answers[1].error.code, "host_taken");
  });

  test("one invalid site: exit 1 with every issue's path", async (t) => {
    const path = await file("bad.yml", "hosts: [a.example]\norigin: { kind: ftp }\nextra: 1\n");
    const { code, stdout, stderr } = await tiercel(["sites", "put", path], { api: await fakeApi(t) });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      'tiercel: the site config is invalid (invalid_config)\n  (root): Unrecognized key: "extra"\n  origin.kind: must be "http" or "s3"\n',
    );
  });

  test("from flags: one http site, created", async (t) => {
    const api = await fakeApi(t);
    const { code, stdout, stderr } = await tiercel(
      [
        "sites",
        "put",
        "--host",
        "a.example",
        "--host",
        "b.example",
        "--origin-url",
        "https://backend.example",
        "--connect-to",
        "203.0.113.10:8080",
        "--edge-ttl",
        "3600",
        "--browser-ttl",
        "60",
      ],
      { api },
    );
    assert.equal(stderr, "");
    assert.equal(code, 0);
    assert.match(stdout, /^created {2}\S+ {2}a\.example, b\.example\n$/);
    assert.equal(api.requests[0]?.method, "POST");
    assert.deepEqual(api.requests[0]?.body, {
      hosts: ["a.example", "b.example"],
      origin: { kind: "http", url: "https://backend.example", connectTo: "203.0.113.10:8080" },
      cache: { edgeTtl: 3600, browserTtl: 60 },
    });
  });

  test("from flags with --id: PUT under that id", async (t) => {
    const api = await fakeApi(t);
    const args = ["--id", "site-flags01", "--host", "local.example", "--origin-url", "http://127.0.0.1:9000"];
    const { code, stdout } = await tiercel(["sites", "put", ...args, "--allow-private"], { api });
    assert.equal(code, 0);
    assert.equal(stdout, "saved    site-flags01  local.example\n");
    assert.equal(api.requests[0]?.method, "PUT");
    assert.equal(api.requests[0]?.path, "/_tiercel/api/v1/sites/site-flags01");
    assert.deepEqual(api.requests[0]?.body, {
      id: "site-flags01",
      hosts: ["local.example"],
      origin: { kind: "http", url: "http://127.0.0.1:9000", allowPrivate: true },
    });
  });

  test("from standard input, in the shape sites get --json prints", async (t) => {
    const stdin = JSON.stringify({ site: httpSite("site-stdin001", ["in.example"]) });
    const { code, stdout } = await tiercel(["sites", "put", "-"], { api: await fakeApi(t), stdin });
    assert.equal(code, 0);
    assert.equal(stdout, "saved    site-stdin001  in.example\n");
  });

  /** @type {[string, string[], RegExp][]} */
  const usageErrors = [
    ["no file and no flags", [], /give a site file/],
    ["a file and flags", ["x.json", "--host", "a.example"], /not both/],
    ["flags without --origin-url", ["--host", "a.example"], /--origin-url is required/],
    [
      "a TTL that is not whole seconds",
      ["--host", "a", "--origin-url", "https://b", "--edge-ttl", "1.5"],
      /--edge-ttl/,
    ],
    ["an unknown flag", ["--hots", "a.example"], /Unknown option '--hots'; see tiercel sites put --help/],
  ];
  for (const [what, args, message] of usageErrors) {
    test(`usage error: ${what}`, async (t) => {
      const api = await fakeApi(t);
      const { code, stderr } = await tiercel(["sites", "put", ...args], { api });
      assert.equal(code, 2);
      assert.match(stderr, message);
      assert.match(stderr, /\(usage\)\n$/);
      assert.equal(api.requests.length, 0);
    });
  }

  test("a file that cannot be read or parsed sends nothing: exit 2", async (t) => {
    const api = await fakeApi(t);
    const broken = await file("broken.yaml", "- hosts: [a.example\n  origin: {\n");
    const parsed = await tiercel(["sites", "put", broken], { api });
    assert.equal(parsed.code, 2);
    assert.match(parsed.stderr, /^tiercel: .*broken\.yaml is not valid YAML: .* \(invalid_file\)\n$/);
    const missing = await tiercel(["sites", "put", join(dir, "missing.json")], { api });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read .*missing\.json: ENOENT \(unreadable_file\)\n$/);
    const scalars = await tiercel(["sites", "put", await file("scalars.json", "[1, 2]")], { api });
    assert.equal(scalars.code, 2);
    assert.match(scalars.stderr, /site 1 of .*scalars\.json is not an object \(invalid_file\)\n$/);
    assert.equal(api.requests.length, 0);
  });
});

describe("sites delete", concurrently, () => {
  test("prints one line", async (t) => {
    const api = await fakeApi(t, [httpSite("site-aaaaaaaa", ["a.example"])]);
    const { code, stdout } = await tiercel(["sites", "delete", "site-aaaaaaaa"], { api });
    assert.equal(code, 0);
    assert.equal(stdout, "deleted site-aaaaaaaa\n");
    assert.equal(api.sites.size, 0);
    assert.equal(api.requests[0]?.method, "DELETE");
  });
});

describe("purge", concurrently, () => {
  const site = httpSite("site-aaaaaaaa", ["a.example"]);

  test("URLs and tags", async (t) => {
    const api = await fakeApi(t, [site]);
    const { code, stdout } = await tiercel(
      [
        "purge",
        "site-aaaaaaaa",
        "--purge-url",
        "https://a.example/a.css",
        "--purge-url",
        "https://a.example/b.js",
        "--tag",
        "p-42",
      ],
      { api },
    );
    assert.equal(code, 0);
    assert.equal(
      stdout,
      "purged 2 URLs, 1 tag of site site-aaaaaaaa; reaches this data center at once; every data center within 2.05 s\n",
    );
    assert.equal(api.requests[0]?.path, "/_tiercel/api/v1/sites/site-aaaaaaaa/purge");
    assert.deepEqual(api.requests[0]?.body, {
      urls: ["https://a.example/a.css", "https://a.example/b.js"],
      tags: ["p-42"],
    });
  });

  test("all, soft", async (t) => {
    const api = await fakeApi(t, [site]);
    const { code, stdout } = await tiercel(["purge", "site-aaaaaaaa", "--all", "--soft"], { api });
    assert.equal(code, 0);
    assert.match(stdout, /^soft-purged everything of site site-aaaaaaaa; reaches /);
    assert.deepEqual(api.requests[0]?.body, { all: true, soft: true });
  });

  test("--json prints the API's answer", async (t) => {
    const api = await fakeApi(t, [site]);
    const { code, stdout } = await tiercel(["purge", "site-aaaaaaaa", "--tag", "x", "--json"], { api });
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout).purged, { urls: [], tags: ["x"], all: false, soft: false });
  });

  test("--url is the Worker, --purge-url a URL to purge, in any order", async (t) => {
    const api = await fakeApi(t, [site]);
    const env = { TIERCEL_URL: "http://127.0.0.1:1", TIERCEL_TOKEN: TOKEN };
    for (const argv of [
      ["--url", api.url, "purge", "site-aaaaaaaa", "--purge-url", "https://a.example/x"],
      ["purge", "site-aaaaaaaa", "--purge-url", "https://a.example/x"],
    ]) {
      const before = api.requests.length;
      const { code, stderr } = await tiercel(argv, {
        env: argv[0] === "--url" ? env : { TIERCEL_TOKEN: TOKEN, TIERCEL_URL: api.url },
      });
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      assert.deepEqual(api.requests[before]?.body, { urls: ["https://a.example/x"] });
    }
  });

  test("--url after purge still names a URL to purge, with a deprecation notice", async (t) => {
    const api = await fakeApi(t, [site]);
    const { code, stderr } = await tiercel(
      ["--url", api.url, "purge", "site-aaaaaaaa", "--url", "https://a.example/x"],
      {
        env: { TIERCEL_URL: "http://127.0.0.1:1", TIERCEL_TOKEN: TOKEN },
      },
    );
    assert.equal(code, 0);
    assert.match(stderr, /^tiercel: after "purge", --url is deprecated: use --purge-url/);
    assert.deepEqual(api.requests[0]?.body, { urls: ["https://a.example/x"] });
  });

  test("nothing to purge is a usage error", async (t) => {
    const api = await fakeApi(t, [site]);
    const { code, stdout, stderr } = await tiercel(["purge", "site-aaaaaaaa"], { api });
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.equal(stderr, "tiercel: say what to purge: --purge-url, --tag or --all; see tiercel purge --help (usage)\n");
    assert.equal(api.requests.length, 0);
  });

  test("--soft with URLs only, or a relative URL, is a usage error", async (t) => {
    const api = await fakeApi(t, [site]);
    const soft = await tiercel(["purge", "site-aaaaaaaa", "--purge-url", "https://a.example/x", "--soft"], { api });
    assert.equal(soft.code, 2);
    assert.match(soft.stderr, /--soft applies to --tag and --all/);
    const relative = await tiercel(["purge", "site-aaaaaaaa", "--purge-url", "/a.css"], { api });
    assert.equal(relative.code, 2);
    assert.match(relative.stderr, /--purge-url must be an absolute http or https URL/);
    assert.equal(api.requests.length, 0);
  });
});

describe("stats", concurrently, () => {
  test("every site: a table with a column per tier that has hits, one for optimizing sites, and a sparkline", async (t) => {
    const api = await fakeApi(t);
    const { code, stdout } = await tiercel(["stats"], { api });
    assert.equal(code, 0);
    assert.equal(api.requests[0]?.path, "/_tiercel/api/v1/stats");
    assert.equal(api.requests[0]?.search, "");
    assert.equal(
      stdout,
      `window 1h: 2026-11-23T10:00:00.000Z to 2026-11-23T11:00:00.000Z, across all isolates
SITE           REQUESTS  HIT%  EDGE HITS  KV HITS  R2 HITS  STALE  ORIGIN  FROM ORIGIN  ERRORS  OPTIMIZED T/O/F      BYTES
site-aaaaaaaa        10   80%          6        2        0      1       2      2.0 KiB       1                   120.6 KiB
site-bbbbbbbb         4   50%          1        0        1      0       2          0 B       0            3/1/0      512 B
requests per minute: ${"·".repeat(57)}▂▄█ (max 8)
config lookups (this isolate): kvReads 3, memoryHits 7, cacheHits 1, negativeHits 0
`,
    );
  });

  test("one site, with --json that parses", async (t) => {
    const api = await fakeApi(t, [httpSite("site-aaaaaaaa", ["a.example"])]);
    const { code, stdout } = await tiercel(["stats", "site-aaaaaaaa", "--json"], { api });
    assert.equal(code, 0);
    assert.equal(api.requests[0]?.path, "/_tiercel/api/v1/sites/site-aaaaaaaa/stats");
    const answer = JSON.parse(stdout);
    assert.equal(answer.scope, "global");
    assert.deepEqual(Object.keys(answer.sites), ["site-aaaaaaaa"]);
  });

  test("--window and --site choose the window and the site; 7 days in hour buckets, two a character", async (t) => {
    const api = await fakeApi(t, [httpSite("site-aaaaaaaa", ["a.example"])]);
    const { code, stdout } = await tiercel(["stats", "--window", "7d", "--site", "site-aaaaaaaa"], { api });
    assert.equal(code, 0);
    assert.equal(api.requests[0]?.path, "/_tiercel/api/v1/sites/site-aaaaaaaa/stats");
    assert.equal(api.requests[0]?.search, "?window=7d");
    assert.match(stdout, /^window 7d: /);
    assert.match(stdout, /^site-aaaaaaaa +10 /m);
    assert.doesNotMatch(stdout, /site-bbbbbbbb/);
    assert.match(stdout, new RegExp(`^requests per 2 hours: ${"·".repeat(82)}▂█ \\(max 12\\)$`, "m"));
  });

  test("a window the API does not have, or two different sites: exit 2, nothing asked", async (t) => {
    const api = await fakeApi(t);
    const window = await tiercel(["stats", "--window", "2h"], { api });
    assert.equal(window.code, 2);
    assert.equal(window.stderr, "tiercel: --window must be one of 5m, 1h, 24h, 7d (usage)\n");
    const twice = await tiercel(["stats", "site-aaaaaaaa", "--site", "site-bbbbbbbb"], { api });
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /give the site once/);
    assert.equal(api.requests.length, 0);
  });
});

describe("errors and exit statuses", concurrently, () => {
  test("a wrong token: exit 1, unauthorized, and no token printed", async (t) => {
    const api = await fakeApi(t);
    const wrong = "wrong-token-0d1e2f";
    const { code, stdout, stderr } = await tiercel(["sites", "list"], {
      env: { TIERCEL_URL: api.url, TIERCEL_TOKEN: wrong },
    });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.equal(stderr, "tiercel: A valid admin token is required (unauthorized)\n");
    assert.ok(!stderr.includes(wrong));
  });

  test("nothing listening: exit 3", async () => {
    const closed = await freeUrl();
    const { code, stdout, stderr } = await tiercel(["sites", "list", "--url", closed], {
      env: { TIERCEL_TOKEN: TOKEN },
    });
    assert.equal(code, 3);
    assert.equal(stdout, "");
    assert.equal(stderr, `tiercel: cannot reach the Worker at ${closed}: ECONNREFUSED (unreachable)\n`);
  });

  test("no answer within --timeout: exit 3", async (t) => {
    const url = await serve(t, () => {});
    const { code, stderr } = await tiercel(["stats", "--timeout", "200"], {
      env: { TIERCEL_URL: url, TIERCEL_TOKEN: TOKEN },
    });
    assert.equal(code, 3);
    assert.equal(stderr, `tiercel: no answer from the Worker at ${url} within 200 ms (timeout)\n`);
  });

  test("a server that is not the admin API, or that redirects: exit 1", async (t) => {
    const url = await serve(t, (req, res) => {
      if (req.url?.endsWith("/stats")) {
        res.writeHead(302, { location: "https://elsewhere.example/" }).end();
      } else {
        res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not found</h1>");
      }
    });
    const env = { TIERCEL_URL: url, TIERCEL_TOKEN: TOKEN };
    const html = await tiercel(["sites", "list"], { env });
    assert.equal(html.code, 1);
    assert.match(
      html.stderr,
      /GET \/_tiercel\/api\/v1\/sites answered 404 Not Found without an admin API error.*\(http_404\)\n$/,
    );
    const redirect = await tiercel(["stats"], { env });
    assert.equal(redirect.code, 1);
    assert.match(redirect.stderr, /redirected \(302\) to https:\/\/elsewhere\.example\/.*\(unexpected_redirect\)\n$/);
  });

  test("an unknown command: exit 2", async () => {
    const { code, stdout, stderr } = await tiercel(["sites", "frobnicate"]);
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.equal(stderr, 'tiercel: unknown command "sites frobnicate"; sites has list, get, put or delete (usage)\n');
    const top = await tiercel(["deploy"]);
    assert.equal(top.code, 2);
    assert.equal(top.stderr, 'tiercel: unknown command "deploy"; see tiercel help (usage)\n');
  });

  test("no command: help on standard error, exit 2", async () => {
    const { code, stdout, stderr } = await tiercel([]);
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.match(stderr, /^Usage: tiercel <command>/m);
  });

  test("a URL other than the local default needs TIERCEL_TOKEN: exit 2", async (t) => {
    const api = await fakeApi(t);
    const { code, stderr } = await tiercel(["sites", "list"], { env: { TIERCEL_URL: api.url } });
    assert.equal(code, 2);
    assert.match(stderr, /^tiercel: TIERCEL_TOKEN is not set: .* \(token_required\)\n$/);
    assert.equal(api.requests.length, 0);
  });

  test("a token flag is refused without being echoed", async () => {
    const { code, stderr } = await tiercel(["sites", "list", "--token=s3cr3t-value"]);
    assert.equal(code, 2);
    assert.match(stderr, /there is no --token option/);
    assert.ok(!stderr.includes("s3cr3t-value"));
  });

  test("bad global options: exit 2", async (t) => {
    const api = await fakeApi(t);
    for (const args of [
      ["--timeout", "soon"],
      ["--url", "ftp://x.example"],
      ["--url", `${api.url}/prefix`],
      ["--url"],
    ]) {
      const { code, stderr } = await tiercel(["stats", ...args], { api });
      assert.equal(code, 2, args.join(" "));
      assert.match(stderr, /\(usage\)\n$/);
    }
    assert.equal(api.requests.length, 0);
  });
});

describe("help", concurrently, () => {
  for (const args of [["help"], ["--help"], ["purge", "--help"], ["sites", "put", "-h"], ["help", "sites"]]) {
    test(`tiercel ${args.join(" ")} documents the exit statuses`, async () => {
      const { code, stdout, stderr } = await tiercel(args);
      assert.equal(code, 0);
      assert.equal(stderr, "");
      assert.match(stdout, /Exit status:\n {2}0 .*\n {2}1 .*\n {2}2 .*\n {2}3 /);
    });
  }

  test("sites put --help names every site flag", async () => {
    const { stdout } = await tiercel(["sites", "put", "--help"]);
    for (const flag of [
      "--host",
      "--origin-url",
      "--connect-to",
      "--allow-private",
      "--id",
      "--edge-ttl",
      "--browser-ttl",
    ]) {
      assert.ok(stdout.includes(`  ${flag} `), flag);
    }
  });
});

describe("resolveConnection", () => {
  test("the local development token is used only for the local Worker's URLs, and only without TIERCEL_TOKEN", () => {
    assert.deepEqual(resolveConnection({}, {}), { baseUrl: DEFAULT_URL, token: LOCAL_DEV_TOKEN, timeoutMs: 10_000 });
    assert.equal(resolveConnection({ url: "http://localhost:8787/" }, {}).token, LOCAL_DEV_TOKEN);
    assert.equal(resolveConnection({}, { TIERCEL_TOKEN: "mine" }).token, "mine");
    assert.throws(() => resolveConnection({ url: "https://cache.example.com" }, {}), { code: "token_required" });
    assert.equal(resolveConnection({}, { TIERCEL_URL: "http://127.0.0.1:8787" }).token, LOCAL_DEV_TOKEN);
    assert.equal(resolveConnection({ url: "http://[::1]:8787" }, {}).token, LOCAL_DEV_TOKEN);
    assert.throws(() => resolveConnection({}, { TIERCEL_URL: "http://127.0.0.1:8788" }), { code: "token_required" });
    assert.throws(() => resolveConnection({ url: "https://127.0.0.1:8787" }, {}), { code: "token_required" });
    assert.throws(() => resolveConnection({}, { TIERCEL_TOKEN: "two words" }), { code: "invalid_token" });
  });
});
