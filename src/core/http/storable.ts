import type { CacheControl } from "./cache-control";
import { hasExplicitExpiration } from "./freshness";
import type { VaryFields } from "./vary";

/**
 * Whether a shared cache may store a response (RFC 9111 §3). Pure: every input is a parsed value.
 * Returns the first reason it may not, or null when it may. A cache is always allowed not to store, so
 * where Tiercel is stricter than the RFC it says so.
 */
export type NotStorableReason =
  | "method"
  | "status"
  | "no-store"
  | "private"
  | "authorization"
  | "set-cookie"
  | "vary"
  | "no-expiration";

export interface StorableInput {
  method: string;
  requestHeaders: Headers;
  requestCc: CacheControl;
  status: number;
  responseHeaders: Headers;
  responseCc: CacheControl;
  vary: VaryFields;
}

/**
 * Statuses never stored although final: 206 is a part (the cache holds whole objects and answers ranges from
 * them, it does not combine parts, §3.4), and 304 only ever updates a stored response (§4.3.4). Every other
 * final status may be stored when it has explicit freshness (§3: "the response status code is final").
 */
const NEVER_STORED = new Set([206, 304]);
/** Heuristically cacheable (RFC 9110 §15.1): stored without explicit freshness. */
const CACHEABLE_BY_DEFAULT = new Set([200, 203, 204, 300, 301, 308, 404, 410]);

export function whyNotStorable(input: StorableInput): NotStorableReason | null {
  const { requestCc, responseCc } = input;
  // §3: "the request method is understood by the cache" — GET only; HEAD never fills the GET entry.
  if (input.method !== "GET") return "method";
  // §3: "the response status code is final" (RFC 9110 §15: 1xx is not) and understood.
  if (input.status < 200 || input.status > 599 || NEVER_STORED.has(input.status)) return "status";
  // §3: "the no-store cache directive is not present in the response"; §5.2.1.5 for the request.
  if (responseCc.noStore || requestCc.noStore) return "no-store";
  // §3: "if the cache is shared: the private response directive is either not present or allows a
  // shared cache to store a modified response". Stricter: a qualified private is not stored either.
  if (responseCc.private !== false) return "private";
  // §3.5: a shared cache must not reuse a response to an authorized request unless the response
  // carries must-revalidate, public or s-maxage.
  if (
    input.requestHeaders.has("authorization") &&
    !(responseCc.public || responseCc.mustRevalidate || responseCc.sMaxAge !== undefined)
  ) {
    return "authorization";
  }
  // §7.3 (security): a Set-Cookie in a shared cache would hand one user's cookie to everyone.
  if (input.responseHeaders.has("set-cookie")) return "set-cookie";
  // RFC 9110 §12.5.5: Vary: * can never be matched (other selecting headers are keyed as variants).
  if (input.vary === "*") return "vary";
  // §3: the response has explicit expiration, is public, or has a status cacheable by default.
  const explicit = hasExplicitExpiration(input.responseHeaders, responseCc);
  // Stricter: `public` stands in for explicit freshness only below 400, so no error is stored without it.
  const publicOk = responseCc.public && input.status < 400;
  if (!explicit && !publicOk && !CACHEABLE_BY_DEFAULT.has(input.status)) return "no-expiration";
  return null;
}
