import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { type AddressClass, checkConnectTarget, checkOriginUrl, classifyHost } from "../../src/origins/address";

const STRICT = { allowPrivate: false };
const LENIENT = { allowPrivate: true };

/** The error `run` throws; fails the test when it returns instead. */
function refusal(run: () => unknown): TiercelError {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    if (!(error instanceof TiercelError)) throw error;
    return error;
  }
  throw new Error(`expected a refusal, got ${String(result)}`);
}

describe("classifyHost", () => {
  describe("IPv4 (IANA special-purpose registry, RFC 6890)", () => {
    it.each<[string, AddressClass]>([
      ["0.0.0.0", "unspecified"],
      ["0.1.2.3", "unspecified"],
      ["127.0.0.1", "loopback"],
      ["127.255.255.254", "loopback"],
      ["9.255.255.255", "public"],
      ["10.0.0.0", "private"],
      ["10.1.2.3", "private"],
      ["10.255.255.255", "private"],
      ["11.0.0.0", "public"],
      ["172.15.255.255", "public"],
      ["172.16.0.0", "private"],
      ["172.31.255.255", "private"],
      ["172.32.0.1", "public"],
      ["192.167.255.255", "public"],
      ["192.168.1.1", "private"],
      ["192.169.0.0", "public"],
      ["100.63.255.255", "public"],
      ["100.64.0.1", "private"],
      ["100.127.255.255", "private"],
      ["100.128.0.0", "public"],
      ["169.254.0.1", "link-local"],
      ["169.254.169.253", "link-local"],
      ["169.254.169.254", "metadata"],
      ["169.254.170.2", "metadata"],
      ["169.254.170.23", "metadata"],
      ["100.100.100.200", "metadata"],
      ["168.63.129.16", "metadata"],
      ["192.0.0.192", "metadata"],
      ["192.0.0.1", "reserved"],
      ["192.0.2.1", "reserved"],
      ["192.88.99.1", "reserved"],
      ["198.18.0.1", "reserved"],
      ["198.19.255.255", "reserved"],
      ["198.20.0.0", "public"],
      ["198.51.100.7", "reserved"],
      ["203.0.113.9", "reserved"],
      ["224.0.0.1", "reserved"],
      ["239.255.255.250", "reserved"],
      ["240.0.0.1", "reserved"],
      ["255.255.255.255", "reserved"],
      ["1.1.1.1", "public"],
      ["8.8.8.8", "public"],
      ["93.184.216.34", "public"],
      ["223.255.255.255", "public"],
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("IPv4 in every spelling the URL parser accepts", () => {
    it.each<[string, AddressClass]>([
      ["2130706433", "loopback"], // decimal
      ["0x7f000001", "loopback"], // hex
      ["0X7F000001", "loopback"],
      ["0177.0.0.1", "loopback"], // octal
      ["017700000001", "loopback"],
      ["127.1", "loopback"], // short
      ["0x7f.1", "loopback"],
      ["127.0.1", "loopback"],
      ["127.0.0.1.", "loopback"], // trailing dot
      ["１２７.０.０.１", "loopback"], // full-width digits, mapped by IDNA
      ["127%2e0.0.1", "loopback"], // percent-encoded dot
      ["2852039166", "metadata"], // 169.254.169.254
      ["0xa9fea9fe", "metadata"],
      ["0251.0376.0251.0376", "metadata"],
      ["169.254.43518", "metadata"],
      ["0", "unspecified"],
      ["0x0", "unspecified"],
      ["167772161", "private"], // 10.0.0.1
      ["0xc0a80001", "private"], // 192.168.0.1
      ["134744072", "public"], // 8.8.8.8
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("IPv6 (IANA special-purpose registry, RFC 6890)", () => {
    it.each<[string, AddressClass]>([
      ["[::1]", "loopback"],
      ["::1", "loopback"],
      ["[0:0:0:0:0:0:0:1]", "loopback"],
      ["[0000:0000:0000:0000:0000:0000:0000:0001]", "loopback"],
      ["[::]", "unspecified"],
      ["::", "unspecified"],
      ["[0::0]", "unspecified"],
      ["[fc00::1]", "private"],
      ["[fd12:3456:789a::1]", "private"],
      ["[fec0::1]", "private"],
      ["[fe80::1]", "link-local"],
      ["[febf:ffff::1]", "link-local"],
      ["[ff02::1]", "reserved"],
      ["[ff05::1:3]", "reserved"],
      ["[fd00:ec2::254]", "metadata"],
      ["[fd00:ec2:0:0:0:0:0:254]", "metadata"],
      ["[fd00:ec2::23]", "metadata"],
      ["[fd00:ec2::253]", "private"],
      ["[2001:db8::1]", "reserved"],
      ["[3fff::1]", "reserved"],
      ["[2001:2::1]", "reserved"],
      ["[100::1]", "reserved"],
      ["[5f00::1]", "reserved"],
      ["[4000::1]", "reserved"],
      ["[::2]", "unspecified"], // IPv4-compatible 0.0.0.2
      ["[2606:4700:4700::1111]", "public"],
      ["[2001:4860:4860::8888]", "public"],
      ["2606:4700:4700::1111", "public"],
      ["FE80::1", "link-local"],
      ["[FD00:EC2::254]", "metadata"],
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("IPv4 embedded in IPv6 is classified as the IPv4 address", () => {
    it.each<[string, AddressClass]>([
      ["[::ffff:7f00:1]", "loopback"], // IPv4-mapped, RFC 4291 §2.5.5.2
      ["[::ffff:127.0.0.1]", "loopback"],
      ["[0:0:0:0:0:ffff:7f00:1]", "loopback"],
      ["[0:0:0:0:0:ffff:127.0.0.1]", "loopback"],
      ["::ffff:127.0.0.1", "loopback"],
      ["[::ffff:a9fe:a9fe]", "metadata"],
      ["[::ffff:169.254.169.254]", "metadata"],
      ["[::ffff:a00:1]", "private"],
      ["[::ffff:0:0]", "unspecified"],
      ["[::ffff:808:808]", "public"],
      ["[::127.0.0.1]", "loopback"], // IPv4-compatible, RFC 4291 §2.5.5.1
      ["[::7f00:1]", "loopback"],
      ["[::a9fe:a9fe]", "metadata"],
      ["[::ffff:0:7f00:1]", "loopback"], // IPv4-translated, RFC 2765
      ["[64:ff9b::7f00:1]", "loopback"], // NAT64, RFC 6052
      ["[64:ff9b::169.254.169.254]", "metadata"],
      ["[64:ff9b::808:808]", "public"],
      ["[64:ff9b:1::a00:1]", "private"], // local-use NAT64, RFC 8215
      ["[2002:7f00:1::]", "loopback"], // 6to4, RFC 3056
      ["[2002:a9fe:a9fe::1]", "metadata"],
      ["[2002:c0a8:101::1]", "private"],
      ["[2002:c000:201::1]", "reserved"],
      ["[2002:808:808::1]", "public"],
      ["[2001:0:4136:e378:8000:63bf:5601:5601]", "metadata"], // Teredo, client ~0x56015601 = 169.254.169.254
      ["[2001:0:a9fe:a9fe::1]", "metadata"], // Teredo, server 169.254.169.254
      ["[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "reserved"], // Teredo, RFC 4380
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("IPv6 zone ids scope the address to this machine", () => {
    it.each<[string, AddressClass]>([
      ["fe80::1%eth0", "link-local"],
      ["[fe80::1%25eth0]", "link-local"],
      ["2606:4700::1%eth0", "link-local"],
      ["::1%lo", "loopback"],
      ["fd00:ec2::254%eth0", "metadata"],
      ["fe80::1%", "reserved"],
      ["fe80::1%eth0/1", "reserved"],
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("names", () => {
    it.each<[string, AddressClass]>([
      ["localhost", "loopback"],
      ["localhost.", "loopback"],
      ["LOCALHOST", "loopback"],
      ["foo.localhost", "loopback"],
      ["a.b.localhost.", "loopback"],
      ["localhost.localdomain", "loopback"],
      ["ip6-localhost", "loopback"],
      ["%6c%6f%63%61%6c%68%6f%73%74", "loopback"], // percent-encoded
      ["ｌｏｃａｌｈｏｓｔ", "loopback"], // full-width, mapped by IDNA
      ["metadata", "metadata"],
      ["metadata.google.internal", "metadata"],
      ["metadata.google.internal.", "metadata"],
      ["computemetadata.metadata.google.internal", "metadata"],
      ["instance-data", "metadata"],
      ["instance-data.ec2.internal", "metadata"],
      ["ip-10-0-0-1.ec2.internal", "private"],
      ["api.internal", "private"],
      ["printer.local", "private"],
      ["router.home.arpa", "private"],
      ["nas.lan", "private"],
      ["db", "private"], // single label: only the local resolver's search list gives it meaning
      ["notlocalhost", "private"],
      ["foo.test", "reserved"],
      ["example.invalid", "reserved"],
      ["www.example", "reserved"],
      ["duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", "reserved"],
      ["1.0.0.127.in-addr.arpa", "reserved"],
      ["example.com", "public"],
      ["example.com.", "public"],
      ["localhost.example.com", "public"],
      ["internal.example.com", "public"],
      ["mylocalhost.com", "public"],
      ["127.0.0.1.nip.io", "public"], // DNS rebinding cannot be seen from a Worker; see the egress posture
      ["xn--bcher-kva.example.com", "public"],
    ])("%s is %s", (host, expected) => {
      expect(classifyHost(host)).toBe(expected);
    });
  });

  describe("things that are not hosts", () => {
    it.each([
      "",
      "[::1",
      "::1]",
      "1::2::3",
      ":::",
      "12345::",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7::8",
      "::ffff:127.1",
      "::ffff:127.000.0.1",
      "::127.0.0.1:1",
      "g::1",
      "1.2.3.4.5",
      "256.0.0.1",
      "a b",
      "example.com/evil",
      "user@127.0.0.1",
      "example.com#x",
    ])("%j is reserved", (host) => {
      expect(classifyHost(host)).toBe("reserved");
    });
  });
});

describe("checkOriginUrl", () => {
  describe("refuses non-public destinations in every spelling", () => {
    it.each<[string, string, AddressClass]>([
      ["http://127.0.0.1/", "127.0.0.1", "loopback"],
      ["http://2130706433/", "127.0.0.1", "loopback"],
      ["http://0x7f000001/", "127.0.0.1", "loopback"],
      ["http://0177.0.0.1/", "127.0.0.1", "loopback"],
      ["http://127.1/", "127.0.0.1", "loopback"],
      ["http://[::1]/", "[::1]", "loopback"],
      ["http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]", "loopback"],
      ["http://[::ffff:7f00:1]/", "[::ffff:7f00:1]", "loopback"],
      ["http://[0:0:0:0:0:ffff:7f00:1]/", "[::ffff:7f00:1]", "loopback"],
      ["http://localhost/", "localhost", "loopback"],
      ["http://localhost./", "localhost.", "loopback"],
      ["http://foo.localhost/", "foo.localhost", "loopback"],
      ["http://LocalHost:8787/", "localhost", "loopback"],
      ["http://0.0.0.0/", "0.0.0.0", "unspecified"],
      ["http://0/", "0.0.0.0", "unspecified"],
      ["http://[::]/", "[::]", "unspecified"],
      ["http://10.1.2.3/", "10.1.2.3", "private"],
      ["http://172.31.255.255/", "172.31.255.255", "private"],
      ["http://192.168.0.1:8080/", "192.168.0.1", "private"],
      ["http://100.64.0.1/", "100.64.0.1", "private"],
      ["http://[fd12::1]/", "[fd12::1]", "private"],
      ["http://printer.local/", "printer.local", "private"],
      ["http://169.254.1.1/", "169.254.1.1", "link-local"],
      ["http://[fe80::1]/", "[fe80::1]", "link-local"],
      ["http://192.0.2.1/", "192.0.2.1", "reserved"],
      ["http://224.0.0.1/", "224.0.0.1", "reserved"],
      ["http://255.255.255.255/", "255.255.255.255", "reserved"],
      ["http://[2001:db8::1]/", "[2001:db8::1]", "reserved"],
      ["http://[ff02::1]/", "[ff02::1]", "reserved"],
      ["http://169.254.169.254/latest/meta-data", "169.254.169.254", "metadata"],
      ["http://[::ffff:a9fe:a9fe]/", "[::ffff:a9fe:a9fe]", "metadata"],
      ["http://[fd00:ec2::254]/", "[fd00:ec2::254]", "metadata"],
      ["http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal", "metadata"],
    ])("%s (%s) is %s", (raw, host, kind) => {
      const error = refusal(() => checkOriginUrl(raw, STRICT));
      expect(error.code).toBe("origin_forbidden");
      expect(error.status).toBe(403);
      expect(error.message).toContain(`origin host ${host} is `);
      expect(error.message).toContain(kind === "unspecified" ? "the unspecified address" : kind);
    });
  });

  it.each([
    ["https://example.com/", "example.com"],
    ["https://Example.COM./assets/", "example.com."],
    ["http://172.32.0.1/", "172.32.0.1"],
    ["http://8.8.8.8:8080/path?q=1", "8.8.8.8"],
    ["http://134744072/", "8.8.8.8"],
    ["https://[2606:4700:4700::1111]/", "[2606:4700:4700::1111]"],
    ["https://[::ffff:8.8.8.8]/", "[::ffff:808:808]"],
    ["https://bücher.example.com/", "xn--bcher-kva.example.com"],
  ])("accepts the public origin %s as %s", (raw, host) => {
    const url = checkOriginUrl(raw, STRICT);
    expect(url).toBeInstanceOf(URL);
    expect(url.hostname).toBe(host);
  });

  it("keeps the path, query and port of an accepted origin", () => {
    const url = checkOriginUrl("https://example.com:8443/base/?v=1", STRICT);
    expect(url.href).toBe("https://example.com:8443/base/?v=1");
  });

  it.each([
    "http://user:pw@example.com/",
    "http://user@example.com/",
    "http://:pw@example.com/",
    "https://user:pw@127.0.0.1/",
  ])("refuses credentials in %s without echoing them", (raw) => {
    const error = refusal(() => checkOriginUrl(raw, LENIENT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.status).toBe(403);
    expect(error.message).toContain("user name or password");
    expect(error.message).not.toContain("pw");
  });

  it.each([
    ["ftp://example.com/", "ftp:"],
    ["file:///etc/passwd", "file:"],
    ["file://localhost/etc/passwd", "file:"],
    ["gopher://example.com/", "gopher:"],
    ["ws://example.com/", "ws:"],
    ["javascript:alert(1)", "javascript:"],
    ["data:text/plain,hi", "data:"],
  ])("refuses the scheme of %s", (raw, protocol) => {
    const error = refusal(() => checkOriginUrl(raw, LENIENT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.message).toContain(`not ${protocol}`);
  });

  it.each([
    "",
    "example.com",
    "/relative",
    "http://",
    "http://[::1/",
    "http://exa mple.com/",
    "http://[fe80::1%25eth0]/",
  ])("refuses %j, which is not a valid absolute URL", (raw) => {
    const error = refusal(() => checkOriginUrl(raw, LENIENT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.status).toBe(403);
    expect(error.message).toContain("not a valid absolute URL");
  });

  describe("with allowPrivate", () => {
    it.each([
      ["http://127.0.0.1:8787/", "127.0.0.1"],
      ["http://2130706433/", "127.0.0.1"],
      ["http://[::1]/", "[::1]"],
      ["http://localhost:8787/", "localhost"],
      ["http://10.1.2.3/", "10.1.2.3"],
      ["http://100.64.0.1/", "100.64.0.1"],
      ["http://169.254.1.1/", "169.254.1.1"],
      ["http://[fe80::1]/", "[fe80::1]"],
      ["http://0.0.0.0/", "0.0.0.0"],
      ["http://192.0.2.1/", "192.0.2.1"],
      ["http://api.internal/", "api.internal"],
      ["https://example.com/", "example.com"],
    ])("accepts %s", (raw, host) => {
      expect(checkOriginUrl(raw, LENIENT).hostname).toBe(host);
    });

    it.each([
      "http://169.254.169.254/latest/meta-data",
      "http://2852039166/",
      "http://0xa9fea9fe/",
      "http://169.254.170.2/v2/credentials",
      "http://[::ffff:a9fe:a9fe]/",
      "http://[::ffff:169.254.169.254]/",
      "http://[64:ff9b::a9fe:a9fe]/",
      "http://[2002:a9fe:a9fe::]/",
      "http://[fd00:ec2::254]/",
      "http://metadata.google.internal/",
      "http://metadata/",
      "http://instance-data/latest/",
      "http://100.100.100.200/",
    ])("still refuses the metadata endpoint %s", (raw) => {
      const error = refusal(() => checkOriginUrl(raw, LENIENT));
      expect(error.code).toBe("origin_forbidden");
      expect(error.status).toBe(403);
      expect(error.message).toContain("cloud metadata endpoint, which is never allowed");
    });
  });
});

describe("checkConnectTarget", () => {
  it.each([
    ["93.184.216.34:443", "93.184.216.34", 443],
    ["1.1.1.1:1", "1.1.1.1", 1],
    ["1.1.1.1:65535", "1.1.1.1", 65535],
    ["1.1.1.1:080", "1.1.1.1", 80],
    ["16843009:80", "1.1.1.1", 80],
    ["[2606:4700:4700::1111]:443", "[2606:4700:4700::1111]", 443],
    ["[2606:4700:4700:0:0:0:0:1111]:80", "[2606:4700:4700::1111]", 80],
    ["Origin.Example.COM:8443", "origin.example.com", 8443],
  ])("accepts %s as %s port %i", (raw, host, port) => {
    expect(checkConnectTarget(raw, STRICT)).toEqual({ host, port });
  });

  it.each([
    ["127.0.0.1:80", "loopback"],
    ["2130706433:80", "loopback"],
    ["0x7f.1:8080", "loopback"],
    ["[::1]:80", "loopback"],
    ["[::ffff:127.0.0.1]:80", "loopback"],
    ["localhost:8080", "loopback"],
    ["10.0.0.1:443", "private"],
    ["[fd12::1]:443", "private"],
    ["169.254.1.1:80", "link-local"],
    ["0.0.0.0:80", "unspecified"],
    ["198.18.0.1:80", "reserved"],
  ])("refuses %s, a %s destination, unless private origins are allowed", (raw, kind) => {
    const error = refusal(() => checkConnectTarget(raw, STRICT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.status).toBe(403);
    expect(error.message).toContain("connect target");
    expect(error.message).toContain(kind === "unspecified" ? "the unspecified address" : kind);
    expect(() => checkConnectTarget(raw, LENIENT)).not.toThrow();
  });

  it("canonicalizes the host it lets through", () => {
    expect(checkConnectTarget("0x7f000001:80", LENIENT)).toEqual({ host: "127.0.0.1", port: 80 });
    expect(checkConnectTarget("[::ffff:127.0.0.1]:8080", LENIENT)).toEqual({ host: "[::ffff:7f00:1]", port: 8080 });
  });

  it.each([
    "169.254.169.254:80",
    "2852039166:80",
    "[::ffff:a9fe:a9fe]:80",
    "[fd00:ec2::254]:80",
    "metadata.google.internal:80",
    "169.254.170.2:80",
  ])("refuses the metadata endpoint %s even when private origins are allowed", (raw) => {
    const error = refusal(() => checkConnectTarget(raw, LENIENT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.message).toContain("never allowed");
  });

  it.each([
    ["", "needs a port"],
    ["1.1.1.1", "needs a port"],
    ["1.1.1.1:", "port from 1 to 65535"],
    ["1.1.1.1:0", "port from 1 to 65535"],
    ["1.1.1.1:65536", "port from 1 to 65535"],
    ["1.1.1.1:+80", "port from 1 to 65535"],
    ["1.1.1.1:80 ", "port from 1 to 65535"],
    ["1.1.1.1:123456", "port from 1 to 65535"],
    [":80", "invalid host"],
    ["::1:80", "ambiguous"],
    ["2606:4700::1111:443", "ambiguous"],
    ["[::1]", "needs a port"],
    ["[::1]80", "needs a port"],
    ["[::1:80", "unterminated"],
    ["user@1.1.1.1:80", "invalid host"],
    ["1.1.1.1/x:80", "invalid host"],
    [" 1.1.1.1:80", "invalid host"],
    ["exa mple.com:80", "invalid host"],
    ["[fe80::1%25eth0]:80", "invalid host"],
    ["[not-ipv6]:80", "invalid host"],
    ["1.2.3.4.5:80", "invalid host"],
    [`${"a".repeat(300)}:80`, "too long"],
  ])("refuses the malformed target %j", (raw, reason) => {
    const error = refusal(() => checkConnectTarget(raw, LENIENT));
    expect(error.code).toBe("origin_forbidden");
    expect(error.status).toBe(403);
    expect(error.message).toContain(reason);
  });
});
