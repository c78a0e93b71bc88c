import { describe, expect, it } from "vitest";
import { adminRouteOf } from "../../src/admin/api";
import { parseAuditQuery, siteWriteEntry } from "../../src/sites/audit";
import { siteSchema } from "../../src/sites/schema";
import {
  checkScopedEdit,
  matchesHash,
  newScopedToken,
  parseTokenRequest,
  scopedTokenId,
  sha256Hex,
} from "../../src/sites/tokens";

const site = siteSchema.parse({
  id: "site-0001",
  hosts: ["a.example.com"],
  origin: { kind: "http", url: "https://origin.example.com" },
});
const token = { kind: "token" as const, id: "0123456789abcdef", name: "ci" };

describe("adminRouteOf", () => {
  it("answers the prefix on every host without ADMIN_HOST, resize URLs excepted", () => {
    expect(adminRouteOf("a.example.com", "/_tiercel/api/v1/sites", false, undefined)).toBe("admin");
    expect(adminRouteOf("a.example.com", "/_tiercel/image/width=1/x.jpg", true, undefined)).toBe("site");
    expect(adminRouteOf("a.example.com", "/page", false, undefined)).toBe("site");
  });

  it("with ADMIN_HOST: admin there only, matched as request hosts are (case, port, trailing dot)", () => {
    const adminHost = "Admin.Example.com";
    expect(adminRouteOf("ADMIN.example.com.:443", "/_tiercel/api/v1/sites", false, adminHost)).toBe("admin");
    expect(adminRouteOf("admin.example.com", "/", false, adminHost)).toBe("not_admin_path");
    expect(adminRouteOf("a.example.com", "/_tiercel/api/v1/sites", false, adminHost)).toBe("admin_host_only");
    expect(adminRouteOf("a.example.com", "/_tiercel/image/width=1/x.jpg", true, adminHost)).toBe("site");
    expect(adminRouteOf("bad host", "/_tiercel/api/v1/sites", false, adminHost)).toBe("admin_host_only");
    expect(adminRouteOf("a.example.com", "/_tiercel/x", false, "https://admin.example.com/")).toBe(
      "admin_host_invalid",
    );
  });
});

describe("scoped tokens", () => {
  it("makes distinct tokens of the documented format, matched only by their own hash", async () => {
    const a = newScopedToken();
    const b = newScopedToken();
    expect(a.secret).not.toBe(b.secret);
    expect(scopedTokenId(a.secret)).toBe(a.id);
    expect(scopedTokenId(`${a.secret}x`)).toBeNull();
    const hash = await sha256Hex(a.secret);
    expect(await matchesHash(a.secret, hash)).toBe(true);
    expect(await matchesHash(b.secret, hash)).toBe(false);
    expect(await matchesHash(a.secret, "not-hex")).toBe(false);
  });

  it("parses a create request, deduplicating and sorting the sites", () => {
    expect(parseTokenRequest({ name: " ci ", sites: ["b", "a", "b"] })).toEqual({ name: "ci", sites: ["a", "b"] });
    expect(() => parseTokenRequest({ name: "ci", sites: Array(101).fill("a") })).toThrow(/sites/);
    expect(() => parseTokenRequest({ name: "", sites: ["a"] })).toThrow(/name/);
  });

  it("lets a scoped token edit settings, never create a site or change its hosts", () => {
    const current = { kind: "site" as const, site, revision: 1 };
    expect(() => checkScopedEdit(token, current, { ...site, cache: { ...site.cache, edgeTtl: 5 } })).not.toThrow();
    expect(() => checkScopedEdit(token, current, { ...site, hosts: ["a.example.com", "b.example.com"] })).toThrow(
      /hosts/,
    );
    expect(() => checkScopedEdit(token, null, site)).toThrow(/create/);
    expect(() => checkScopedEdit({ kind: "admin" }, null, site)).not.toThrow();
  });
});

describe("audit records", () => {
  it("names the changed settings and the hosts that came and went", () => {
    const after = { ...site, hosts: ["b.example.com"], cache: { ...site.cache, edgeTtl: 5 } };
    const entry = siteWriteEntry(token, site, after, 2, 1000);
    expect(entry).toMatchObject({
      action: "site.update",
      actor: token,
      summary: { revision: 2, changed: ["cache"], hostsAdded: ["b.example.com"], hostsRemoved: ["a.example.com"] },
    });
    expect(siteWriteEntry({ kind: "admin" }, null, site, 1, 1000).action).toBe("site.create");
  });

  it("parses a query, and refuses what it cannot page by", () => {
    expect(parseAuditQuery(new URLSearchParams("site=s1&limit=10&before=42"))).toEqual({
      site: "s1",
      limit: 10,
      beforeId: 42,
      beforeAt: null,
    });
    expect(parseAuditQuery(new URLSearchParams("before=2026-01-01T00:00:00Z")).beforeAt).toBe(
      Date.parse("2026-01-01T00:00:00Z"),
    );
    expect(() => parseAuditQuery(new URLSearchParams("limit=1.5"))).toThrow(/limit/);
  });
});
