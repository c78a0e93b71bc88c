import { TiercelError } from "../core/errors";

/**
 * Where a host points, as far as can be told without resolving it. A site config (untrusted, from KV) names
 * the origin Tiercel fetches from; everything but `public` is somewhere a Worker must not be talked into
 * reaching on a tenant's behalf.
 *
 * - `loopback`: 127.0.0.0/8, ::1, `localhost` and `*.localhost` (RFC 6761 §6.3).
 * - `private`: 10/8, 172.16/12, 192.168/16 (RFC 1918); carrier-grade NAT 100.64/10 (RFC 6598), which is
 *   an operator's internal network; unique local fc00::/7 (RFC 4193); deprecated site-local fec0::/10
 *   (RFC 3879); local-use NAT64 64:ff9b:1::/48 (RFC 8215); and names that only mean something on a private
 *   network (see `classifyName`).
 * - `link-local`: 169.254/16 (RFC 3927), fe80::/10 (RFC 4291 §2.5.6), and any IPv6 address with a zone id.
 * - `unspecified`: 0.0.0.0/8 (RFC 1122 §3.2.1.3: "this network"; many stacks send 0.0.0.0 to loopback) and ::.
 * - `metadata`: cloud instance-metadata endpoints, which hand out the instance's credentials. Never allowed.
 * - `reserved`: everything the IANA special-purpose registries set aside that is not one of the above:
 *   documentation, benchmarking, multicast, broadcast, the deprecated 6to4 relay anycast, IETF protocol
 *   assignments, Teredo, and IPv6 outside 2000::/3 (the only block allocated for global unicast); also the
 *   special-use names `.test`, `.example`, `.invalid`, `.onion`, `.arpa` (RFC 6761, RFC 7686).
 */
export type AddressClass = "public" | "loopback" | "private" | "link-local" | "unspecified" | "metadata" | "reserved";

/** What a site allows its origin to point at. */
export interface AddressPolicy {
  /**
   * Lets loopback, private, link-local, unspecified and reserved destinations through (a self-hosted
   * Tiercel next to its backends, or local development). Metadata endpoints stay refused regardless.
   */
  allowPrivate: boolean;
}

/**
 * Classifies a host: a URL hostname as the WHATWG URL parser gives it, or a bare IPv6 address (with or
 * without brackets, optionally with a zone id). The host is first put through the URL parser itself, so
 * every spelling it accepts lands on the same answer: `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`,
 * full-width digits and percent-encoded names all become `127.0.0.1` or their canonical name. IPv6 is
 * parsed here, and an IPv4 address embedded in IPv6 (mapped, compatible, translated, NAT64, 6to4) is
 * classified as that IPv4 address.
 *
 * A name that is not an IP literal is judged by its name alone. A public name can still resolve to a
 * private address (DNS rebinding, or a record that simply says 127.0.0.1, like `127.0.0.1.nip.io`); a
 * Worker has no DNS API to check that with, so such names come out `public` here and the egress posture
 * (what the Workers runtime itself refuses to connect to) is the only defence against them.
 *
 * Something that is not a host at all (a malformed IPv6 literal, a string with `/`, `@` or spaces) is
 * reported as `reserved`: there is nothing there to connect to, and it is refused by default.
 */
export function classifyHost(hostname: string): AddressClass {
  const host = hostname.toLowerCase();
  if (host.includes(":")) return classifyIpv6Literal(host);

  if (NOT_IN_A_HOST.test(host)) return "reserved";
  let canonical: string;
  try {
    canonical = new URL(`http://${host}/`).hostname;
  } catch {
    return "reserved";
  }
  // The IPv4 parser turns every numeric spelling into a dotted quad; a literal can come out bracketed only
  // if the input had a colon, which was handled above.
  const ipv4 = parseDottedQuad(canonical);
  if (ipv4 !== undefined) return classifyIpv4(ipv4);
  return classifyName(canonical.replace(/\.+$/, ""));
}

/**
 * Parses and checks the base URL of an HTTP origin: http or https, no credentials in the URL, a host, and
 * a destination the site may reach. Returns the parsed URL (host in canonical form); anything else is
 * refused with 403 `origin_forbidden`. The raw value is never echoed, since it may carry a password.
 */
export function checkOriginUrl(raw: string, options: AddressPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw forbidden("The origin URL is not a valid absolute URL", cause);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw forbidden(`The origin URL must use http: or https:, not ${url.protocol}`);
  }
  // Credentials in a config-stored URL leak into logs and error messages; origins that need them get a
  // dedicated auth setting.
  if (url.username !== "" || url.password !== "") {
    throw forbidden("The origin URL must not contain a user name or password");
  }
  if (url.hostname === "") throw forbidden("The origin URL has no host");
  refuseUnlessAllowed("origin host", url.hostname, options);
  return url;
}

/**
 * Parses and checks an address to connect to instead of resolving the origin's name: `ip:port`,
 * `[ipv6]:port` or `hostname:port`, the port 1–65535 and required. IPv6 must be bracketed, since
 * `::1:80` is itself a valid address. Returns the host in the URL parser's canonical form (IPv4 as a dotted
 * quad, IPv6 bracketed and compressed, names lower case) and the port; anything malformed or not allowed
 * is refused with 403 `origin_forbidden`.
 */
export function checkConnectTarget(raw: string, options: AddressPolicy): { host: string; port: number } {
  if (raw.length > MAX_CONNECT_TARGET_LENGTH) throw forbidden("The connect target is too long");
  const shown = JSON.stringify(raw);

  let host: string;
  let port: string;
  if (raw.startsWith("[")) {
    const close = raw.indexOf("]");
    if (close < 0) throw forbidden(`The connect target ${shown} has an unterminated IPv6 literal`);
    host = raw.slice(0, close + 1);
    const rest = raw.slice(close + 1);
    if (!rest.startsWith(":")) throw forbidden(`The connect target ${shown} needs a port, as [ipv6]:port`);
    port = rest.slice(1);
  } else {
    const colon = raw.indexOf(":");
    if (colon < 0) throw forbidden(`The connect target ${shown} needs a port, as host:port`);
    if (raw.indexOf(":", colon + 1) >= 0) {
      throw forbidden(`The connect target ${shown} is ambiguous; write an IPv6 address as [ipv6]:port`);
    }
    host = raw.slice(0, colon);
    port = raw.slice(colon + 1);
  }

  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw forbidden(`The connect target ${shown} needs a port from 1 to 65535`);
  }
  if (host === "" || NOT_IN_A_HOST.test(host)) throw forbidden(`The connect target ${shown} has an invalid host`);
  let canonical: string;
  try {
    canonical = new URL(`http://${host}/`).hostname;
  } catch (cause) {
    throw forbidden(`The connect target ${shown} has an invalid host`, cause);
  }
  refuseUnlessAllowed("connect target", canonical, options);
  return { host: canonical, port: Number(port) };
}

/** Room for a 253-character name, or a bracketed IPv6 address, and a port. */
const MAX_CONNECT_TARGET_LENGTH = 300;

/**
 * Characters that would make the URL parser read part of the string as something other than the host
 * (path, query, fragment, user info), and white space, which it would silently strip.
 */
const NOT_IN_A_HOST = /[/?#@\\\s]/;

const DESCRIPTIONS: Record<Exclude<AddressClass, "public">, string> = {
  loopback: "a loopback address",
  private: "a private address",
  "link-local": "a link-local address",
  unspecified: "the unspecified address",
  metadata: "a cloud metadata endpoint",
  reserved: "a reserved address",
};

function refuseUnlessAllowed(what: string, hostname: string, options: AddressPolicy): void {
  const kind = classifyHost(hostname);
  if (kind === "public") return;
  // Metadata endpoints answer any request from the instance with its credentials; no site has a reason to
  // proxy them, and allowing private origins must not mean handing a tenant the host's keys.
  if (kind === "metadata") {
    throw forbidden(`The ${what} ${hostname} is ${DESCRIPTIONS[kind]}, which is never allowed`);
  }
  if (options.allowPrivate) return;
  throw forbidden(`The ${what} ${hostname} is ${DESCRIPTIONS[kind]}, and the site does not allow private origins`);
}

function forbidden(message: string, cause?: unknown): TiercelError {
  return new TiercelError("origin_forbidden", 403, message, cause === undefined ? undefined : { cause });
}

// ---------------------------------------------------------------------------------------------------------
// Names

/** Names for the machine itself: RFC 6761 §6.3 and the usual /etc/hosts entries. */
const LOOPBACK_NAMES = new Set(["localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"]);

/**
 * Names of instance-metadata services: GCP's `metadata.google.internal` (and the short `metadata` its
 * resolver expands), AWS's `instance-data` (short, and in the us-east-1 default search domain). Any name
 * under these counts too.
 */
const METADATA_NAMES = ["metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"];

/**
 * Special-use domains that never name a host on the public Internet: RFC 6761 §6.2–6.4, RFC 7686 (.onion),
 * and .arpa, whose names are for reverse lookups and infrastructure rather than web hosts.
 */
const RESERVED_SUFFIXES = ["test", "example", "invalid", "onion", "arpa"];

/**
 * Domains that only resolve on a private network: `.internal` (ICANN's private-use TLD, 2024, and how
 * GCP and AWS name instances, e.g. `ip-10-0-0-1.ec2.internal`), `.local` (mDNS, RFC 6762), `.home.arpa`
 * (RFC 8375), `.localdomain`, and the names RFC 6762 Appendix G lists as in private use.
 */
const PRIVATE_SUFFIXES = [
  "internal",
  "local",
  "home.arpa",
  "localdomain",
  "intranet",
  "private",
  "corp",
  "home",
  "lan",
];

/**
 * Classifies a name (lower case, no trailing dot) that is not an IP literal. Decisions:
 * - `*.internal` other than the metadata names is `private`, not `metadata`: it is where cloud providers
 *   put their instances' own names, which a self-hosted setup with private origins may legitimately use.
 *   The metadata names themselves, and names under them, are `metadata`.
 * - A single-label name (`db`, `redis`) is `private`: it only resolves through a resolver's search list,
 *   which is the local network's.
 */
function classifyName(name: string): AddressClass {
  if (LOOPBACK_NAMES.has(name) || name.endsWith(".localhost")) return "loopback";
  if (METADATA_NAMES.some((metadata) => isUnder(name, metadata))) return "metadata";
  // Private before reserved, so that `.home.arpa` is not taken for the rest of `.arpa`.
  if (PRIVATE_SUFFIXES.some((suffix) => isUnder(name, suffix))) return "private";
  if (RESERVED_SUFFIXES.some((suffix) => isUnder(name, suffix))) return "reserved";
  if (!name.includes(".")) return "private";
  return "public";
}

function isUnder(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

// ---------------------------------------------------------------------------------------------------------
// IPv4

const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
/** Four decimal octets, no leading zeros: the only form the URL parser emits, and the only one IPv6 embeds. */
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

interface Ipv4Block {
  base: number;
  bits: number;
  kind: AddressClass;
}

/**
 * Single addresses of instance-metadata services, checked before the blocks that contain them.
 * - 169.254.169.254: AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle IMDS.
 * - 169.254.170.2: AWS ECS task metadata and credentials; 169.254.170.23: EKS Pod Identity agent.
 * - 100.100.100.200: Alibaba Cloud metadata (inside carrier-grade NAT space).
 * - 168.63.129.16: Azure WireServer (host-to-VM channel that serves certificates and extension settings).
 * - 192.0.0.192: Oracle Cloud Infrastructure Classic metadata.
 */
const IPV4_METADATA = new Set(
  ["169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "168.63.129.16", "192.0.0.192"].map(
    (address) => parseDottedQuad(address) as number,
  ),
);

/** IANA IPv4 Special-Purpose Address Registry (RFC 6890), first match wins. */
const IPV4_BLOCKS: Ipv4Block[] = [
  ipv4Block("0.0.0.0/8", "unspecified"), // RFC 1122 §3.2.1.3
  ipv4Block("127.0.0.0/8", "loopback"), // RFC 1122 §3.2.1.3
  ipv4Block("10.0.0.0/8", "private"), // RFC 1918
  ipv4Block("172.16.0.0/12", "private"), // RFC 1918
  ipv4Block("192.168.0.0/16", "private"), // RFC 1918
  ipv4Block("100.64.0.0/10", "private"), // RFC 6598, carrier-grade NAT
  ipv4Block("169.254.0.0/16", "link-local"), // RFC 3927
  ipv4Block("192.0.0.0/24", "reserved"), // RFC 6890, IETF protocol assignments
  ipv4Block("192.0.2.0/24", "reserved"), // RFC 5737, TEST-NET-1
  ipv4Block("192.88.99.0/24", "reserved"), // RFC 7526, deprecated 6to4 relay anycast
  ipv4Block("198.18.0.0/15", "reserved"), // RFC 2544, benchmarking
  ipv4Block("198.51.100.0/24", "reserved"), // RFC 5737, TEST-NET-2
  ipv4Block("203.0.113.0/24", "reserved"), // RFC 5737, TEST-NET-3
  ipv4Block("224.0.0.0/4", "reserved"), // RFC 5771, multicast
  ipv4Block("240.0.0.0/4", "reserved"), // RFC 1112 §4, reserved; includes 255.255.255.255 broadcast (RFC 919)
];

function classifyIpv4(address: number): AddressClass {
  if (IPV4_METADATA.has(address)) return "metadata";
  for (const block of IPV4_BLOCKS) {
    if (ipv4Prefix(address, block.bits) === block.base) return block.kind;
  }
  return "public";
}

function ipv4Block(cidr: string, kind: AddressClass): Ipv4Block {
  const [address, bits] = cidr.split("/");
  return { base: parseDottedQuad(address ?? "") as number, bits: Number(bits), kind };
}

function ipv4Prefix(address: number, bits: number): number {
  return bits === 0 ? 0 : (address & (0xffffffff << (32 - bits))) >>> 0;
}

/** A strict dotted quad as an unsigned 32-bit number, or undefined. */
function parseDottedQuad(text: string): number | undefined {
  if (!DOTTED_QUAD.test(text)) return undefined;
  return text.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
}

// ---------------------------------------------------------------------------------------------------------
// IPv6

type Ipv6Rule = { prefix: bigint; bits: number } & (
  | { kind: AddressClass }
  /** Classified as the IPv4 address whose lowest bit sits `embedsIpv4At` bits from the right. */
  | { embedsIpv4At: number }
);

/** IPv6 metadata addresses: AWS IMDS and the EKS Pod Identity agent over IPv6. */
const IPV6_METADATA = new Set(["fd00:ec2::254", "fd00:ec2::23"].map((address) => parseIpv6(address) as bigint));

/** IANA IPv6 Special-Purpose Address Registry (RFC 6890) and the unicast allocations, first match wins. */
const IPV6_RULES: Ipv6Rule[] = [
  ipv6Rule("::/128", { kind: "unspecified" }), // RFC 4291 §2.5.2
  ipv6Rule("::1/128", { kind: "loopback" }), // RFC 4291 §2.5.3
  ipv6Rule("::ffff:0:0/96", { embedsIpv4At: 0 }), // RFC 4291 §2.5.5.2, IPv4-mapped
  ipv6Rule("::ffff:0:0:0/96", { embedsIpv4At: 0 }), // RFC 2765 §2.1, IPv4-translated
  ipv6Rule("::/96", { embedsIpv4At: 0 }), // RFC 4291 §2.5.5.1, IPv4-compatible (deprecated)
  ipv6Rule("64:ff9b::/96", { embedsIpv4At: 0 }), // RFC 6052 §2.1, NAT64 well-known prefix
  ipv6Rule("64:ff9b:1::/48", { kind: "private" }), // RFC 8215, local-use NAT64
  ipv6Rule("2002::/16", { embedsIpv4At: 80 }), // RFC 3056 §2, 6to4
  ipv6Rule("2001::/23", { kind: "reserved" }), // RFC 2928, IETF protocol assignments (Teredo handled first)
  ipv6Rule("2001:db8::/32", { kind: "reserved" }), // RFC 3849, documentation
  ipv6Rule("3fff::/20", { kind: "reserved" }), // RFC 9637, documentation
  ipv6Rule("2000::/3", { kind: "public" }), // RFC 4291 §2.5.4, global unicast
  ipv6Rule("fc00::/7", { kind: "private" }), // RFC 4193, unique local
  ipv6Rule("fe80::/10", { kind: "link-local" }), // RFC 4291 §2.5.6
  ipv6Rule("fec0::/10", { kind: "private" }), // RFC 3879, deprecated site-local
  ipv6Rule("ff00::/8", { kind: "reserved" }), // RFC 4291 §2.7, multicast
];

const TEREDO = ipv6Rule("2001::/32", { kind: "reserved" }); // RFC 4380 §4
const LOW_32 = 0xffffffffn;

/** A bare or bracketed IPv6 literal, optionally with a zone id (`%eth0`, or `%25eth0` as in RFC 6874). */
function classifyIpv6Literal(literal: string): AddressClass {
  let text = literal;
  if (text.startsWith("[")) {
    if (!text.endsWith("]")) return "reserved";
    text = text.slice(1, -1);
  }
  const percent = text.indexOf("%");
  const zone = percent < 0 ? undefined : text.slice(percent + 1);
  if (zone !== undefined) {
    text = text.slice(0, percent);
    if (!/^[0-9a-z._~%-]+$/.test(zone)) return "reserved";
  }
  const address = parseIpv6(text);
  if (address === undefined) return "reserved";
  const kind = classifyIpv6(address);
  // A zone id scopes the address to one interface of this machine: whatever it is, it is not a public
  // destination. Stricter classes (metadata, loopback, …) stay as they are.
  return zone !== undefined && (kind === "public" || kind === "reserved") ? "link-local" : kind;
}

function classifyIpv6(address: bigint): AddressClass {
  if (IPV6_METADATA.has(address)) return "metadata";
  if (matches(address, TEREDO)) {
    // Teredo carries the server's IPv4 address and the client's, the latter inverted (RFC 4380 §4). It is
    // reserved either way; it is metadata if either embedded address is.
    const server = Number((address >> 64n) & LOW_32);
    const client = Number((address ^ LOW_32) & LOW_32);
    return classifyIpv4(server) === "metadata" || classifyIpv4(client) === "metadata" ? "metadata" : "reserved";
  }
  for (const rule of IPV6_RULES) {
    if (!matches(address, rule)) continue;
    if ("kind" in rule) return rule.kind;
    return classifyIpv4(Number((address >> BigInt(rule.embedsIpv4At)) & LOW_32));
  }
  // Outside 2000::/3 nothing is allocated for global unicast (IANA IPv6 Address Space registry).
  return "reserved";
}

function matches(address: bigint, rule: { prefix: bigint; bits: number }): boolean {
  const shift = BigInt(128 - rule.bits);
  return address >> shift === rule.prefix >> shift;
}

function ipv6Rule(cidr: string, rule: { kind: AddressClass } | { embedsIpv4At: number }): Ipv6Rule {
  const [address, bits] = cidr.split("/");
  return { prefix: parseIpv6(address ?? "") as bigint, bits: Number(bits), ...rule };
}

/**
 * Parses an IPv6 address in the text forms of RFC 4291 §2.2: eight groups of 1–4 hex digits, at most one
 * `::` standing for one or more zero groups, and optionally a dotted quad as the last 32 bits. Returns the
 * address as a 128-bit number, or undefined when the text is not exactly that.
 */
function parseIpv6(text: string): bigint | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const double = text.indexOf("::");
  let groups: number[] | undefined;
  if (double < 0) {
    groups = parseGroups(text, true);
    if (groups === undefined || groups.length !== 8) return undefined;
  } else {
    if (text.indexOf("::", double + 1) >= 0) return undefined;
    const head = parseGroups(text.slice(0, double), false);
    const tail = parseGroups(text.slice(double + 2), true);
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return groups.reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

/** Colon-separated hex groups; a dotted quad may end them when `mayEndInIpv4`, counting as two groups. */
function parseGroups(text: string, mayEndInIpv4: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [index, part] of parts.entries()) {
    if (/^[0-9a-f]{1,4}$/.test(part)) {
      groups.push(Number.parseInt(part, 16));
      continue;
    }
    const ipv4 = mayEndInIpv4 && index === parts.length - 1 ? parseDottedQuad(part) : undefined;
    if (ipv4 === undefined) return undefined;
    groups.push(ipv4 >>> 16, ipv4 & 0xffff);
  }
  return groups;
}
