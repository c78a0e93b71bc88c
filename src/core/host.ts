import { TiercelError } from "./errors";

/**
 * Normalizes a request's Host into the form used both to look up the site and, through the site id, the
 * cache key: lower case, without port, without the trailing dot of a fully qualified name. IPv6 literals
 * keep their brackets. Anything that is not a syntactically valid host (RFC 3986 §3.2.2, with DNS label
 * limits of RFC 1035 §2.3.4) is refused with 400 `bad_host`.
 *
 * Why drop the port: a site is a name, and Cloudflare only serves on its standard ports; locally the
 * Worker listens on 8787 and `localhost:8787` must find the `localhost` site.
 */
export function normalizeHost(raw: string | null | undefined): string {
  // Every request of a site sends one of a few spellings of its host: each is checked once per isolate.
  const known = raw ? normalized.get(raw) : undefined;
  if (known !== undefined) return known;
  const name = checkHost(raw);
  if (normalized.size >= MAX_REMEMBERED_HOSTS) normalized.clear();
  normalized.set(raw as string, name);
  return name;
}

/** Host values already checked, and what they normalize to (only valid ones; bounded). */
const normalized = new Map<string, string>();
const MAX_REMEMBERED_HOSTS = 1024;

function checkHost(raw: string | null | undefined): string {
  if (!raw) throw badHost("The request has no Host");
  if (raw.length > 260) throw badHost("The Host is too long");
  // Visible ASCII only, checked before lower-casing (which maps some non-ASCII letters to ASCII ones).
  if (!/^[\x21-\x7e]+$/.test(raw.trim()))
    throw badHost(`The Host ${JSON.stringify(raw)} has characters a host cannot have`);
  const host = raw.trim().toLowerCase();

  let name: string;
  let port: string | undefined;
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close < 0) throw badHost(`The Host ${JSON.stringify(raw)} is not a valid IPv6 literal`);
    name = host.slice(0, close + 1);
    const rest = host.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw badHost(`The Host ${JSON.stringify(raw)} is malformed`);
      port = rest.slice(1);
    }
    if (!IPV6_LITERAL.test(name) || !URL.canParse(`http://${name}/`)) {
      throw badHost(`The Host ${JSON.stringify(raw)} is not a valid IPv6 literal`);
    }
    // The URL parser's compressed form, so one address has one spelling.
    name = new URL(`http://${name}/`).hostname;
  } else {
    const colon = host.indexOf(":");
    name = colon < 0 ? host : host.slice(0, colon);
    port = colon < 0 ? undefined : host.slice(colon + 1);
    if (name.endsWith(".")) name = name.slice(0, -1);
    if (!isDnsName(name)) throw badHost(`The Host ${JSON.stringify(raw)} is not a valid host name`);
  }
  if (port !== undefined && !isPort(port)) throw badHost(`The Host ${JSON.stringify(raw)} has an invalid port`);
  return name;
}

const IPV6_LITERAL = /^\[[0-9a-f:.]{2,45}\]$/;
// Letters, digits, hyphens and (for real-world service names) underscores; no label starts or ends with a
// hyphen; 1–63 characters a label (RFC 1035 §2.3.4), 253 in all.
const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => LABEL.test(label));
}

function isPort(port: string): boolean {
  return /^[0-9]{1,5}$/.test(port) && Number(port) <= 65535;
}

function badHost(message: string): TiercelError {
  return new TiercelError("bad_host", 400, message);
}
