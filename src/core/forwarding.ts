import { isFormatField } from "../optimize/negotiate";

/**
 * Which request headers reach the origin on a request answered through the cache (GET and HEAD, not a
 * bypass). Whatever the origin sees can change its answer, and that answer is then served to every client
 * of the key: a header the key does not hold, reflected by an origin that does not name it in Vary,
 * poisons the URL for everyone. So only these pass:
 *
 * - the site's allow-list (`cache.requestHeaders`, default `accept`, `accept-language`, `origin`);
 * - the selecting fields of the response already known for the URL (its Vary, learned from the stored
 *   variant index or entry): they are keyed, so they are safe;
 * - credentials (`authorization`, `cookie`): the origin needs them, and answers to requests carrying them
 *   are shared only when the origin says so (RFC 9111 §3.5; `http/shareable.ts` for cookies);
 * - `accept-encoding`, which the content-coding rules handle.
 *
 * Not the client's address: `cf-connecting-ip`, from which the http origin sets X-Forwarded-For on bypassed
 * requests and other methods, is a per-client value no key holds, so an origin that reflected it (a page
 * saying "your address is …") would show one client's address to everyone.
 *
 * Tiercel's own fields (conditionals, X-Forwarded-Proto, CDN-Loop, Host) are added after this.
 */
export const DEFAULT_REQUEST_HEADERS = ["accept", "accept-language", "origin"];

const ALWAYS = ["authorization", "cookie", "accept-encoding"];

/** The User-Agent the origin sees when the client's is not passed (so it is never empty). */
export const STAND_IN_USER_AGENT = "Tiercel";

export interface ForwardedHeaders {
  /**
   * The client's values of the fields passed on: what the origin's answer can depend on, and so what a
   * variant stored from it is keyed by (a selecting field that was not passed counts as absent).
   */
  keying: Headers;
  /** What is sent: `keying`, with a stand-in User-Agent when the client's is not passed. */
  upstream: Headers;
}

export function forwardedHeaders(
  request: Headers,
  allowList: readonly string[],
  selecting: readonly string[],
): ForwardedHeaders {
  const allowed = new Set([...ALWAYS, ...allowList, ...selecting.filter((field) => !isFormatField(field))]);
  const keying = new Headers();
  for (const [name, value] of request) if (allowed.has(name)) keying.set(name, value);
  // Image formats are negotiated by Tiercel itself from the client's Accept, passed or not.
  const accept = request.get("accept");
  if (selecting.some(isFormatField) && accept !== null) keying.set("accept", accept);
  const upstream = new Headers(keying);
  if (!allowed.has("accept")) upstream.delete("accept");
  if (!upstream.has("user-agent")) upstream.set("user-agent", STAND_IN_USER_AGENT);
  return { keying, upstream };
}

/**
 * The request without the cookies the site ignores (`cache.ignoreCookies`, as Varnish setups strip
 * analytics cookies): the origin never sees them on a cacheable request, so they cannot make its answer
 * private, and a request left without cookies is an ordinary one. Returns the request itself when nothing
 * changes.
 */
export function withoutIgnoredCookies(request: Request, ignored: readonly string[]): Request {
  const cookie = request.headers.get("cookie");
  if (ignored.length === 0 || cookie === null) return request;
  // RFC 6265 §5.4: pairs separated by "; ", each name=value (a pair without "=" is a value with an empty name).
  const kept = cookie
    .split(";")
    .map((pair) => pair.trim())
    .filter((pair) => pair !== "" && !ignored.includes(cookieName(pair)));
  const headers = new Headers(request.headers);
  if (kept.length > 0) headers.set("cookie", kept.join("; "));
  else headers.delete("cookie");
  return new Request(request, { headers });
}

export function cookieName(pair: string): string {
  const equals = pair.indexOf("=");
  return equals < 0 ? "" : pair.slice(0, equals).trim();
}
