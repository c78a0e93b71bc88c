import { parseHttpDate } from "./dates";
import { DIGEST_FIELDS, endToEndHeaders } from "./headers";

/**
 * Conditional requests against a stored response (RFC 9110 §13): whether a GET or HEAD may be answered
 * 304, which fields that 304 carries, and how a 304 from the origin freshens a stored response
 * (RFC 9111 §4.3.4). Pure: headers in, a decision or new headers out.
 */

/** The stored response's validators, as their field values. */
export interface Validators {
  etag?: string;
  lastModified?: string;
}

/** An entity-tag (RFC 9110 §8.8.3): the opaque-tag without its quotes, and whether it was marked weak. */
export interface EntityTag {
  weak: boolean;
  opaque: string;
}

/**
 * Whether a GET or HEAD may be answered 304 from the stored response: steps 3 and 4 of RFC 9110 §13.2.2.
 *
 * The caller owns what this cannot see: the method (GET or HEAD only), the stored status (§13.2.1:
 * preconditions are ignored unless the unconditional answer would be 2xx), and If-Match /
 * If-Unmodified-Since (steps 1 and 2, which answer 412 rather than 304). RFC 9111 §4.3.2's fallback to the
 * stored Date when there is no Last-Modified is not applied: only a real Last-Modified answers
 * If-Modified-Since.
 */
export function isNotModified(requestHeaders: Headers, stored: Validators): boolean {
  const ifNoneMatch = requestHeaders.get("if-none-match");
  // §13.2.2 step 3: If-None-Match, when present, decides on its own.
  if (ifNoneMatch !== null) {
    // §13.1.2: "*" is false "if the origin server has a current representation": the stored one is.
    if (ifNoneMatch.trim() === "*") return true;
    const current = stored.etag === undefined ? undefined : parseEntityTag(stored.etag);
    if (current === undefined) return false;
    // §13.1.2: "MUST use the weak comparison function". A list that does not parse matches nothing:
    // a wrong 304 leaves the client with stale content, a wrong 200 only costs bytes.
    return parseEntityTagList(ifNoneMatch)?.some((tag) => weakMatch(tag, current)) ?? false;
  }
  // §13.2.2 step 4 / §13.1.3: "MUST ignore If-Modified-Since if the request contains an If-None-Match"
  // (handled above) and "if the received field value is not a valid HTTP-date" (undefined here; two
  // members joined by a comma do not parse either).
  const since = parseHttpDate(requestHeaders.get("if-modified-since"));
  if (since === undefined) return false;
  const lastModified = parseHttpDate(stored.lastModified);
  // §13.1.3: false (so 304) "if the selected representation's last modification date is earlier or equal".
  return lastModified !== undefined && lastModified <= since;
}

/** Fields a 304 must carry when a 200 would have had them (RFC 9110 §15.4.5). */
const NOT_MODIFIED_FIELDS = ["cache-control", "content-location", "date", "etag", "expires", "vary"];

/**
 * The fields of a 304 built from a stored response's headers (RFC 9110 §15.4.5): Content-Location, Date,
 * ETag, Vary, Cache-Control and Expires where present, and Last-Modified only when there is no ETag (the
 * section's own example of metadata that guides cache updates). Everything else — Content-Type,
 * Content-Length, Content-Encoding and other representation metadata — is left out ("SHOULD NOT generate
 * representation metadata other than the above"). Age, Cache-Status and the like are the caller's, as for
 * any answer from storage.
 */
export function notModifiedHeaders(stored: Headers): Headers {
  const headers = new Headers();
  for (const name of NOT_MODIFIED_FIELDS) {
    const value = stored.get(name);
    if (value !== null) headers.set(name, value);
  }
  const lastModified = stored.get("last-modified");
  // §15.4.5: "Last-Modified might be useful if the response does not have an ETag field".
  if (lastModified !== null && !stored.has("etag")) headers.set("last-modified", lastModified);
  return headers;
}

/**
 * A stored response's headers freshened by a 304 (RFC 9111 §4.3.4, which defers to §3.2): each field the
 * 304 carries replaces the stored field of that name; every other stored field stays. Never taken from
 * the 304: Content-Length (§3.2, it describes the 304's own empty content) and hop-by-hop fields,
 * including those its Connection lists (§3.2 excepts fields "excepted from storage in Section 3.1").
 *
 * The result can be less storable than before (the 304 may add `private`, `no-store` or Set-Cookie), so the
 * caller checks storability on it again. A 304's Age and Date are kept on purpose: they date the
 * freshened response.
 */
export function freshenHeaders(stored: Headers, fromNotModified: Headers): Headers {
  // §3.2: "with the following exceptions: ... The Content-Length header field".
  // The integrity fields stay as stored too: they describe the stored bytes (or were removed when Tiercel
  // changed them, headers.ts), while a 304's would describe what the origin holds, which may be coded.
  const update = endToEndHeaders(fromNotModified, ["content-length", ...DIGEST_FIELDS]);
  const headers = copyHeaders(stored);
  // §3.2: "add each header field in the provided response to the stored response, replacing field values
  // that are already present".
  for (const name of new Set(update.keys())) headers.delete(name);
  for (const [name, value] of update) if (name !== "set-cookie") headers.append(name, value);
  for (const cookie of update.getSetCookie()) headers.append("set-cookie", cookie);
  return headers;
}

/** A copy that keeps each Set-Cookie apart (they cannot be joined with commas). */
function copyHeaders(source: Headers): Headers {
  const headers = new Headers();
  for (const [name, value] of source) if (name !== "set-cookie") headers.append(name, value);
  for (const cookie of source.getSetCookie()) headers.append("set-cookie", cookie);
  return headers;
}

/** One entity-tag field value (ETag, or If-Range's entity-tag form); undefined unless it parses whole. */
export function parseEntityTag(value: string): EntityTag | undefined {
  const text = value.trim();
  const read = readEntityTag(text, 0);
  return read !== undefined && read.end === text.length ? read.tag : undefined;
}

/**
 * An entity-tag list (`#entity-tag`, RFC 9110 §13.1.1): commas inside the quotes belong to the tag,
 * empty list members are allowed (§5.6.1). Undefined when any member does not parse.
 */
export function parseEntityTagList(value: string): EntityTag[] | undefined {
  const tags: EntityTag[] = [];
  let i = 0;
  for (;;) {
    while (i < value.length && (value[i] === "," || isOws(value[i]))) i++;
    if (i >= value.length) return tags;
    const read = readEntityTag(value, i);
    if (read === undefined) return undefined;
    tags.push(read.tag);
    i = read.end;
    while (i < value.length && isOws(value[i])) i++;
    if (i < value.length && value[i] !== ",") return undefined;
  }
}

/** §8.8.3.2: weak comparison — the opaque-tags match, either or both may be weak. */
export function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque;
}

/** §8.8.3.2: strong comparison — neither is weak and the opaque-tags match. */
export function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque;
}

/** Reads `entity-tag = [ weak ] opaque-tag` (§8.8.3) starting at `from`. */
function readEntityTag(value: string, from: number): { tag: EntityTag; end: number } | undefined {
  // §8.8.3: `weak = %s"W/"` is case-sensitive.
  const weak = value.startsWith("W/", from);
  const open = weak ? from + 2 : from;
  if (value[open] !== '"') return undefined;
  const close = value.indexOf('"', open + 1);
  if (close === -1) return undefined;
  const opaque = value.slice(open + 1, close);
  if (!isEtagChars(opaque)) return undefined;
  return { tag: { weak, opaque }, end: close + 1 };
}

/** §8.8.3: `etagc = %x21 / %x23-7E / obs-text` — visible characters other than DQUOTE, no spaces. */
function isEtagChars(opaque: string): boolean {
  for (let i = 0; i < opaque.length; i++) {
    const code = opaque.charCodeAt(i);
    if (code < 0x21 || code === 0x22 || code === 0x7f) return false;
  }
  return true;
}

function isOws(char: string | undefined): boolean {
  return char === " " || char === "\t";
}
