import {
  createExecutionContext,
  env,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import type { AuditRecord } from "../../src/sites/audit";
import type { AuditHandOver, HostRegistryApi } from "../../src/sites/owner";
import type { Site } from "../../src/sites/schema";
import worker from "../../src/worker";
import { ADMIN_TOKEN, adminCall, origin, unique } from "../support/harness";

/** Operators: the dedicated admin host, the global token's minimum length, site-scoped tokens, the audit log. */

const API = "/_tiercel/api/v1";

/** A request through the Worker with some variables changed (ADMIN_HOST, ADMIN_TOKEN), as a deploy would set them. */
async function sendWith(vars: Record<string, string>, url: string, init: RequestInit = {}) {
  const ctx = createExecutionContext();
  const request = new Request(url, init) as Request<unknown, IncomingRequestCfProperties>;
  const response = await worker.fetch(request, { ...env, ...vars } as Env, ctx);
  const body = await response.text();
  await waitOnExecutionContext(ctx);
  const isJson = response.headers.get("content-type")?.startsWith("application/json");
  return { status: response.status, body: isJson ? (JSON.parse(body) as Record<string, unknown>) : { text: body } };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}`, "content-type": "application/json" });

function codeOf(body: Record<string, unknown>) {
  return (body as unknown as ErrorBody).error?.code;
}

async function createSite(): Promise<Site> {
  const created = await adminCall("POST", "/sites", {
    body: { hosts: [`${unique("op")}.test`], origin: { kind: "http", url: origin.url, allowPrivate: true } },
  });
  expect(created.status).toBe(201);
  return created.body.site as Site;
}

async function createToken(sites: string[], name = unique("ci")) {
  const made = await adminCall("POST", "/tokens", { body: { name, sites } });
  expect(made.status).toBe(201);
  return { id: (made.body.token as { id: string }).id, secret: made.body.secret as string, name };
}

async function auditOf(query: string, token = ADMIN_TOKEN) {
  const answer = await adminCall("GET", `/audit?${query}`, { token });
  expect(answer.status).toBe(200);
  return answer.body as { records: AuditRecord[]; next: string | null };
}

describe("dedicated admin host (ADMIN_HOST)", () => {
  const vars = { ADMIN_HOST: "Admin.Tiercel.test" };

  it("serves the admin API on the admin host only; elsewhere the prefix is 404 admin_host_only, never the site's", async () => {
    const site = await createSite();
    const onAdmin = await sendWith(vars, `http://admin.tiercel.test${API}/sites/${site.id}`, {
      headers: bearer(ADMIN_TOKEN),
    });
    expect(onAdmin.status).toBe(200);
    expect((onAdmin.body.site as Site).id).toBe(site.id);

    // On a site's host, with the right token: refused before any site is looked up; the origin never sees it.
    const path = `${API}/sites/${site.id}`;
    const onSite = await sendWith(vars, `http://${site.hosts[0]}${path}`, { headers: bearer(ADMIN_TOKEN) });
    expect(onSite.status).toBe(404);
    expect(codeOf(onSite.body)).toBe("admin_host_only");
    expect((await origin.hits(path)).hits).toBe(0);

    // The site itself is served as before, and its resize URLs are still its own.
    const page = `/${unique("page")}`;
    expect((await sendWith(vars, `http://${site.hosts[0]}${page}`)).status).toBe(200);
    const resize = await sendWith(vars, `http://${site.hosts[0]}/_tiercel/image/width=100/a.jpg`);
    expect(codeOf(resize.body)).toBe("resize_not_enabled");
  });

  it("serves nothing else on the admin host, and lets no site claim it", async () => {
    const other = await sendWith(vars, "http://admin.tiercel.test/index.html");
    expect(other.status).toBe(404);
    expect(codeOf(other.body)).toBe("not_found");

    const claim = await sendWith(vars, `http://admin.tiercel.test${API}/sites`, {
      method: "POST",
      headers: bearer(ADMIN_TOKEN),
      body: JSON.stringify({
        hosts: [`${unique("ok")}.test`, "ADMIN.tiercel.test."],
        origin: { kind: "http", url: origin.url, allowPrivate: true },
      }),
    });
    expect(claim.status).toBe(400);
    expect(codeOf(claim.body)).toBe("invalid_config");
    expect(JSON.stringify(claim.body)).toContain("hosts.1");
  });

  it("answers the prefix on every host when unset, and fails closed when ADMIN_HOST is not a host name", async () => {
    expect(
      (await sendWith({}, `http://any-${unique("h")}.test${API}/tokens`, { headers: bearer(ADMIN_TOKEN) })).status,
    ).toBe(200);
    const bad = await sendWith({ ADMIN_HOST: "https://admin.example.com/" }, `http://admin.example.com${API}/sites`, {
      headers: bearer(ADMIN_TOKEN),
    });
    expect(bad.status).toBe(503);
    expect(codeOf(bad.body)).toBe("admin_disabled");
  });
});

describe("global token", () => {
  it("refuses a configured ADMIN_TOKEN shorter than 32 characters with 503 admin_token_too_short, even when sent", async () => {
    const short = "only-31-characters-long-0123456";
    expect(short.length).toBe(31);
    const answer = await sendWith({ ADMIN_TOKEN: short }, `http://admin.test${API}/sites`, { headers: bearer(short) });
    expect(answer.status).toBe(503);
    expect(codeOf(answer.body)).toBe("admin_token_too_short");
    const long = `${short}x`;
    expect(
      (await sendWith({ ADMIN_TOKEN: long }, `http://admin.test${API}/tokens`, { headers: bearer(long) })).status,
    ).toBe(200);
  });
});

describe("site-scoped tokens", () => {
  it("shows the secret once, keeps only its hash, and is refused on every other site", async () => {
    const [mine, theirs] = [await createSite(), await createSite()];
    const token = await createToken([mine.id]);
    expect(token.secret).toMatch(/^tcs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);

    const listed = await adminCall("GET", "/tokens");
    const entry = (listed.body.tokens as Record<string, unknown>[]).find((t) => t.id === token.id);
    expect(entry).toMatchObject({ name: token.name, sites: [mine.id] });
    expect(JSON.stringify(listed.body)).not.toContain(token.secret.slice(22));

    const as = (method: string, path: string, body?: unknown) =>
      adminCall(method, path, { token: token.secret, ...(body === undefined ? {} : { body }) });
    expect((await as("GET", `/sites/${mine.id}`)).status).toBe(200);
    const sites = (await as("GET", "/sites")).body.sites as Site[];
    expect(sites.map((s) => s.id)).toEqual([mine.id]);

    for (const [method, path, body] of [
      ["GET", `/sites/${theirs.id}`],
      ["PUT", `/sites/${theirs.id}`, { ...theirs, cache: { edgeTtl: 5 } }],
      ["POST", `/sites/${theirs.id}/purge`, { all: true }],
      ["GET", `/sites/${theirs.id}/stats`],
      ["GET", `/sites/does-not-exist-${unique("x")}`],
    ] as const) {
      const refused = await as(method, path, body);
      expect(refused.status, `${method} ${path}`).toBe(403);
      expect(codeOf(refused.body)).toBe("forbidden_site");
    }
    expect((await adminCall("GET", `/sites/${theirs.id}`)).body.revision).toBe(1);

    // Its own site: settings and purges yes; hosts, deletion, new sites, tokens and global stats no.
    expect((await as("PUT", `/sites/${mine.id}`, { ...mine, cache: { edgeTtl: 60 } })).status).toBe(200);
    expect((await as("POST", `/sites/${mine.id}/purge`, { tags: ["t1"] })).status).toBe(202);
    for (const [method, path, body] of [
      ["PUT", `/sites/${mine.id}`, { ...mine, hosts: [...mine.hosts, `${unique("grab")}.test`] }],
      ["DELETE", `/sites/${mine.id}`],
      [
        "POST",
        "/sites",
        { hosts: [`${unique("new")}.test`], origin: { kind: "http", url: origin.url, allowPrivate: true } },
      ],
      ["POST", "/tokens", { name: "escalate", sites: [theirs.id] }],
      ["GET", "/tokens"],
      ["GET", "/stats"],
    ] as const) {
      const refused = await as(method, path, body);
      expect(refused.status, `${method} ${path}`).toBe(403);
      expect(codeOf(refused.body)).toBe("admin_only");
    }
    expect((await adminCall("GET", `/sites/${mine.id}`)).body.site).toMatchObject({ hosts: mine.hosts });

    // The right id with a wrong secret is no token.
    const forged = `${token.secret.slice(0, 21)}${"A".repeat(43)}`;
    expect((await adminCall("GET", `/sites/${mine.id}`, { token: forged })).status).toBe(401);

    // Revoked: refused from the next request on.
    expect((await adminCall("DELETE", `/tokens/${token.id}`)).body).toEqual({ revoked: token.id });
    const after = await as("GET", `/sites/${mine.id}`);
    expect(after.status).toBe(401);
    expect((await adminCall("DELETE", `/tokens/${token.id}`)).status).toBe(404);
  });

  it("refuses a token request without a name or sites", async () => {
    const answer = await adminCall("POST", "/tokens", { body: { sites: [], extra: 1 } });
    expect(answer.status).toBe(400);
    expect(codeOf(answer.body)).toBe("invalid_config");
    const paths = ((answer.body.error as { issues: { path: string }[] }).issues ?? []).map((i) => i.path);
    expect(paths).toEqual(["name", "sites", "extra"]);
  });
});

describe("audit log", () => {
  it("records each of 20 concurrent edits, with who, what and when", async () => {
    const site = await createSite();
    const started = Date.now();
    const edits = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        adminCall("PUT", `/sites/${site.id}`, { body: { ...site, cache: { edgeTtl: 100 + i } } }),
      ),
    );
    expect(edits.map((e) => e.status)).toEqual(Array(20).fill(200));
    const { records } = await auditOf(`site=${site.id}&limit=100`);
    const updates = records.filter((r) => r.action === "site.update");
    expect(updates).toHaveLength(20);
    expect(new Set(updates.map((r) => r.summary.revision))).toEqual(
      new Set(Array.from({ length: 20 }, (_, i) => i + 2)),
    );
    for (const record of updates) {
      expect(record.actor).toEqual({ kind: "admin" });
      expect(record.site).toBe(site.id);
      expect(record.hosts).toEqual(site.hosts);
      expect(Date.parse(record.at)).toBeGreaterThanOrEqual(started - 1000);
    }
    // Most edits change the TTL; the one that repeats the current settings changes nothing.
    expect(updates.filter((r) => (r.summary.changed as string[]).includes("cache")).length).toBeGreaterThanOrEqual(19);
    expect(records.filter((r) => r.action === "site.create")).toHaveLength(1);
  });

  it("records purges, deletes and token changes, names a scoped token, and shows a scoped token its sites only", async () => {
    const [mine, theirs] = [await createSite(), await createSite()];
    const token = await createToken([mine.id], "deploy bot");
    expect(
      (
        await adminCall("POST", `/sites/${mine.id}/purge`, {
          token: token.secret,
          body: { urls: [`http://${mine.hosts[0]}/a.css`] },
        })
      ).status,
    ).toBe(202);
    expect((await adminCall("POST", `/sites/${theirs.id}/purge`, { body: { all: true } })).status).toBe(202);
    expect((await adminCall("DELETE", `/sites/${theirs.id}`)).status).toBe(200);

    const purged = (await auditOf(`site=${mine.id}`)).records[0];
    expect(purged).toMatchObject({
      action: "site.purge",
      actor: { kind: "token", id: token.id, name: "deploy bot" },
      site: mine.id,
      summary: { urls: [`http://${mine.hosts[0]}/a.css`], urlCount: 1, all: false },
    });
    expect((await auditOf(`site=${theirs.id}`)).records.map((r) => r.action)).toEqual([
      "site.delete",
      "site.purge",
      "site.create",
    ]);
    const global = await auditOf("limit=500");
    const made = global.records.find((r) => r.action === "token.create" && r.summary.token === token.id);
    expect(made).toMatchObject({
      actor: { kind: "admin" },
      site: null,
      summary: { name: "deploy bot", sites: [mine.id] },
    });
    expect(JSON.stringify(made)).not.toContain(token.secret.slice(22));

    const scoped = await auditOf("limit=500", token.secret);
    expect(scoped.records.length).toBeGreaterThan(0);
    expect(scoped.records.every((r) => r.site === mine.id)).toBe(true);
    const refused = await adminCall("GET", `/audit?site=${theirs.id}`, { token: token.secret });
    expect(refused.status).toBe(403);
    expect(codeOf(refused.body)).toBe("forbidden_site");

    await adminCall("DELETE", `/tokens/${token.id}`);
    const revoked = (await auditOf("limit=5")).records.find((r) => r.action === "token.revoke");
    expect(revoked).toMatchObject({ summary: { token: token.id } });
  });

  it("pages newest first with limit and before, and refuses a bad query", async () => {
    const site = await createSite();
    for (const tag of ["a", "b", "c", "d"])
      await adminCall("POST", `/sites/${site.id}/purge`, { body: { tags: [tag] } });
    const first = await auditOf(`site=${site.id}&limit=2`);
    expect(first.records.map((r) => r.summary.tags)).toEqual([["d"], ["c"]]);
    const second = await auditOf(`site=${site.id}&limit=2&before=${first.next}`);
    expect(second.records.map((r) => r.summary.tags)).toEqual([["b"], ["a"]]);
    const third = await auditOf(`site=${site.id}&limit=2&before=${second.next}`);
    expect(third.records.map((r) => r.action)).toEqual(["site.create"]);
    expect(third.next).toBeNull();
    expect((await auditOf(`site=${site.id}&before=2000-01-01T00:00:00Z`)).records).toEqual([]);
    for (const query of ["limit=0", "limit=501", "before=yesterday", "site=a/b"]) {
      const bad = await adminCall("GET", `/audit?${query}`);
      expect(bad.status, query).toBe(400);
      expect(codeOf(bad.body)).toBe("invalid_query");
    }
  });

  it("hands over, from the owner's alarm, a record whose first hand-over failed, and keeps it once", async () => {
    const site = await createSite();
    const owner = env.SITE_OWNER.get(env.SITE_OWNER.idFromName(site.id));
    // As if the registry had been unreachable when the change was made: the record is still in the outbox,
    // with the alarm set to retry; and as if the first hand-over had in fact landed (seq 1, the create).
    const entry = {
      at: Date.now(),
      actor: { kind: "admin" },
      action: "site.purge",
      site: site.id,
      hosts: [],
      summary: { retried: true },
    };
    await runInDurableObject(owner, async (_instance, state) => {
      state.storage.sql.exec(
        "INSERT INTO audit_outbox (seq, entry) VALUES (1, ?)",
        JSON.stringify({ ...entry, summary: { again: true } }),
      );
      state.storage.sql.exec("INSERT INTO audit_outbox (entry) VALUES (?)", JSON.stringify(entry));
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(owner)).toBe(true);
    const { records } = await auditOf(`site=${site.id}`);
    expect(records.map((r) => r.action)).toEqual(["site.purge", "site.create"]);
    expect(records[0]?.summary).toEqual({ retried: true });
    const left = await runInDurableObject(owner, async (_instance, state) =>
      state.storage.sql.exec("SELECT count(*) AS n FROM audit_outbox").one(),
    );
    expect(left.n).toBe(0);
  });

  it("keeps at most 10,000 records, and a record handed over twice once", async () => {
    // A registry of its own, so the shared one's log is left alone.
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName(unique("audit-retention"))) as unknown as HostRegistryApi;
    const entry = (n: number): AuditHandOver => ({
      seq: n,
      entry: { at: Date.now(), actor: { kind: "admin" }, action: "site.purge", site: "s1", hosts: [], summary: { n } },
    });
    for (let batch = 0; batch < 11; batch++) {
      await registry.appendAudit(
        "owner:s1",
        Array.from({ length: 1000 }, (_, i) => entry(batch * 1000 + i + 1)),
      );
    }
    await registry.appendAudit("owner:s1", [entry(11_000)]);
    const newest = await registry.audit({ site: null, limit: 1, beforeId: null, beforeAt: null }, null);
    expect(newest.records[0]?.summary.n).toBe(11_000);
    expect(newest.records[0]?.id).toBe(11_000);
    const oldest = await registry.audit({ site: null, limit: 500, beforeId: 1_002, beforeAt: null }, null);
    expect(oldest.records.map((r) => r.summary.n)).toEqual([1_001]);
    expect(oldest.next).toBeNull();
  });
});
