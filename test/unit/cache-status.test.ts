import { describe, expect, it } from "vitest";
import { CacheStatus } from "../../src/core/cache-status";

describe("CacheStatus", () => {
  it("is empty when no cache handled the request", () => {
    expect(new CacheStatus().toString()).toBe("");
  });

  it("prints a hit with its remaining freshness (RFC 9211 §2.1, §2.5)", () => {
    const status = new CacheStatus();
    status.add({ cache: "Tiercel-Edge", hit: true, ttl: 42 });
    expect(status.toString()).toBe("Tiercel-Edge; hit; ttl=42");
  });

  it("prints ttl as whole seconds, rounded down (RFC 9211 §2.5: an sf-integer)", () => {
    const status = new CacheStatus();
    status.add({ cache: "Tiercel-Edge", hit: true, ttl: 42.9 });
    expect(status.toString()).toBe("Tiercel-Edge; hit; ttl=42");
  });

  it("prints a zero ttl rather than leaving it out (RFC 9211 §2.5)", () => {
    const status = new CacheStatus();
    status.add({ cache: "Tiercel-Edge", hit: true, ttl: 0 });
    expect(status.toString()).toBe("Tiercel-Edge; hit; ttl=0");
  });

  it("lists the cache farthest from the client first (RFC 9211 §2)", () => {
    const status = new CacheStatus();
    // The pipeline walks outward: the edge (nearest the client) is added first.
    status.add({ cache: "Tiercel-Edge", fwd: "miss" });
    status.add({ cache: "Tiercel-KV", hit: true, ttl: 100 });
    expect(status.toString()).toBe("Tiercel-KV; hit; ttl=100, Tiercel-Edge; fwd=miss");
  });

  it("prints the parameters in a fixed order: hit, fwd, fwd-status, stored, ttl, collapsed, detail (RFC 9211 §2)", () => {
    const status = new CacheStatus();
    status.add({
      cache: "C",
      detail: "x",
      collapsed: true,
      ttl: 5,
      stored: true,
      fwdStatus: 200,
      fwd: "stale",
      hit: true,
    });
    expect(status.toString()).toBe("C; hit; fwd=stale; fwd-status=200; stored; ttl=5; collapsed; detail=x");
  });

  it("leaves out false flags (RFC 9211 §2)", () => {
    const status = new CacheStatus();
    status.add({ cache: "C", hit: false, stored: false, collapsed: false, fwd: "uri-miss" });
    expect(status.toString()).toBe("C; fwd=uri-miss");
  });

  it("returns the member it adds, so the caller can fill it in later", () => {
    const status = new CacheStatus();
    const member = status.add({ cache: "Tiercel-Edge" });
    member.fwd = "miss";
    expect(status.toString()).toBe("Tiercel-Edge; fwd=miss");
  });

  describe("forwarded", () => {
    it("marks only the members that forwarded with the status and stored (RFC 9211 §2.3, §2.4)", () => {
      const status = new CacheStatus();
      status.add({ cache: "Tiercel-Edge", fwd: "miss" });
      status.add({ cache: "Tiercel-KV", fwd: "stale" });
      status.add({ cache: "Tiercel-Memory", hit: true });
      status.forwarded(200, "stored");
      expect(status.toString()).toBe(
        "Tiercel-Memory; hit, Tiercel-KV; fwd=stale; fwd-status=200; stored, Tiercel-Edge; fwd=miss; fwd-status=200; stored",
      );
    });

    it("never claims stored for a store still under way: detail=storing (RFC 9211 §2.4, §2.8)", () => {
      const status = new CacheStatus();
      status.add({ cache: "Tiercel-Edge", fwd: "miss" });
      status.add({ cache: "Tiercel-KV", fwd: "miss", detail: "tier-timeout" });
      status.forwarded(200, "storing");
      expect(status.toString()).toBe(
        "Tiercel-KV; fwd=miss; fwd-status=200; detail=tier-timeout, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing",
      );
      const optimized = new CacheStatus();
      optimized.add({ cache: "Tiercel-Edge", fwd: "miss" });
      optimized.forwarded(200, "storing", "optimize-failed");
      expect(optimized.toString()).toBe("Tiercel-Edge; fwd=miss; fwd-status=200; detail=optimize-failed");
    });

    it("gives each forwarding member the detail unless it already has one (RFC 9211 §2.8)", () => {
      const status = new CacheStatus();
      status.add({ cache: "Tiercel-Edge", fwd: "miss" });
      status.add({ cache: "Tiercel-KV", fwd: "miss", detail: "tier-timeout" });
      status.forwarded(200, "none", "no-store");
      expect(status.toString()).toBe(
        "Tiercel-KV; fwd=miss; fwd-status=200; detail=tier-timeout, Tiercel-Edge; fwd=miss; fwd-status=200; detail=no-store",
      );
    });

    it("does not print stored when the response will not be stored (RFC 9211 §2.4)", () => {
      const status = new CacheStatus();
      status.add({ cache: "Tiercel-Edge", fwd: "bypass" });
      status.forwarded(503, "none");
      expect(status.toString()).toBe("Tiercel-Edge; fwd=bypass; fwd-status=503");
    });
  });

  describe("detail (RFC 9211 §2.8)", () => {
    function withDetail(detail: string): string {
      const status = new CacheStatus();
      status.add({ cache: "C", detail });
      return status.toString();
    }

    it.each(["tier-timeout", "no-store", "a:b/c", "*star", "x_y.z~1"])(
      "prints %s bare, as a token (RFC 8941 §3.3.4)",
      (detail) => {
        expect(withDetail(detail)).toBe(`C; detail=${detail}`);
      },
    );

    it("quotes a detail that is not a token (RFC 8941 §3.3.3)", () => {
      expect(withDetail("two words")).toBe('C; detail="two words"');
      expect(withDetail("1st")).toBe('C; detail="1st"');
      expect(withDetail("a,b")).toBe('C; detail="a,b"');
      expect(withDetail("a;b=c")).toBe('C; detail="a;b=c"');
    });

    it("escapes quotes and backslashes inside a quoted detail (RFC 8941 §3.3.3)", () => {
      expect(withDetail('say "hi"')).toBe('C; detail="say \\"hi\\""');
      expect(withDetail("back\\slash")).toBe('C; detail="back\\\\slash"');
    });
  });
});

describe("Cache-Status detail strings (RFC 8941 §3.3.3)", () => {
  it("quotes a detail that is not a token with only printable ASCII and escapes", () => {
    const status = new CacheStatus();
    status.add({ cache: "C", detail: 'a\tb "q" \\ é' });
    expect(status.toString()).toBe('C; detail="a?b \\"q\\" \\\\ ?"');
  });
});

describe("CacheStatus.failed", () => {
  it("replaces what forwarding members said of the store with why the answer failed, and leaves hits alone", () => {
    const status = new CacheStatus();
    status.add({ cache: "Tiercel-Edge", fwd: "miss" });
    status.add({ cache: "Tiercel-KV", fwd: "miss" });
    status.forwarded(200, "storing");
    expect(status.toString()).toBe(
      "Tiercel-KV; fwd=miss; fwd-status=200; detail=storing, Tiercel-Edge; fwd=miss; fwd-status=200; detail=storing",
    );
    status.failed("origin_bad_response");
    expect(status.toString()).toBe(
      "Tiercel-KV; fwd=miss; fwd-status=200; detail=origin_bad_response, Tiercel-Edge; fwd=miss; fwd-status=200; detail=origin_bad_response",
    );
    const hit = new CacheStatus();
    hit.add({ cache: "Tiercel-Edge", hit: true, ttl: 5 });
    hit.failed("origin_bad_response");
    expect(hit.toString()).toBe("Tiercel-Edge; hit; ttl=5");
  });
});
