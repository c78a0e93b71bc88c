/**
 * Header hygiene shared by every hop. Hop-by-hop fields (RFC 9110 §7.6.1) and the ones a `Connection`
 * header names describe one connection and are never stored or forwarded.
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Integrity fields (RFC 9530): `Content-Digest` is a digest of the message's content, `Repr-Digest` of the
 * selected representation's data (content coding included). Both stop being true when Tiercel changes the
 * bytes (decoding a content coding, minifying, converting an image), so they are removed then, never
 * passed on wrong; a range Tiercel answers keeps `Repr-Digest` (the representation is the same) but not
 * `Content-Digest` (its content is the part).
 */
export const DIGEST_FIELDS = ["content-digest", "repr-digest"] as const;

/** Removes the RFC 9530 integrity fields from headers that now describe other bytes. */
export function dropDigests(headers: Headers): void {
  for (const name of DIGEST_FIELDS) headers.delete(name);
}

/** Field names this hop must drop: the fixed hop-by-hop set plus whatever `Connection` lists. */
export function hopByHopNames(headers: Headers): Set<string> {
  const names = new Set(HOP_BY_HOP);
  // RFC 9110 §7.6.1: "a proxy ... MUST remove any header or trailer fields listed in Connection".
  for (const token of (headers.get("connection") ?? "").split(",")) {
    const name = token.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

/** A copy of `headers` without hop-by-hop fields and without any of `alsoDrop`. */
export function endToEndHeaders(headers: Headers, alsoDrop: Iterable<string> = []): Headers {
  const drop = hopByHopNames(headers);
  for (const name of alsoDrop) drop.add(name);
  const out = new Headers();
  for (const [name, value] of headers) {
    if (!drop.has(name)) out.append(name, value);
  }
  // Headers iteration joins repeated fields with ", " except Set-Cookie, which `getSetCookie` keeps apart.
  if (!drop.has("set-cookie")) {
    out.delete("set-cookie");
    for (const cookie of headers.getSetCookie()) out.append("set-cookie", cookie);
  }
  return out;
}
