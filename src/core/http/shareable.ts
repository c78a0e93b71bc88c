import type { CacheControl } from "./cache-control";

/**
 * Rules on top of RFC 9111 §3 for answers that must not be shared even though the RFC would let a shared
 * cache store them: each guards against one client's answer reaching another client, or a stored answer
 * that sends every client round in a loop. Pure: every input is a parsed value. A cache may always decline
 * to store (RFC 9111 §3: "a cache MUST NOT store ... unless"; nothing obliges it to), so these are
 * stricter than the RFC, never looser.
 */
export type NotShareableReason = "cookie" | "redirect-loop" | "clear-site-data" | "cors-origin";

/** How a site treats requests that carry cookies (`cache.cookies`). */
export type CookieMode = "pass" | "ignore";

export interface ShareableInput {
  /** The request headers as sent to the origin (after the site's ignored cookies were removed). */
  requestHeaders: Headers;
  /** The URL the client asked for. */
  url: URL;
  /** Every host of the site: they all share the site's keys. */
  siteHosts: readonly string[];
  status: number;
  responseHeaders: Headers;
  responseCc: CacheControl;
  /** Selecting fields (lower case), after `withCorsOrigin`. */
  vary: readonly string[];
  cookies: CookieMode;
}

export function whyNotShareable(input: ShareableInput): NotShareableReason | null {
  const { responseCc, responseHeaders } = input;
  // Like Authorization (RFC 9111 §3.5), a Cookie usually means the answer is that client's own: it is
  // shared only when the origin says so (public, s-maxage) or keys it (Vary: Cookie). The site may turn
  // this off (`cache.cookies: "ignore"`) or list cookies that never count (`cache.ignoreCookies`).
  if (
    input.cookies === "pass" &&
    (input.requestHeaders.get("cookie") ?? "").trim() !== "" &&
    !responseCc.public &&
    responseCc.sMaxAge === undefined &&
    !input.vary.includes("cookie")
  ) {
    return "cookie";
  }
  // A redirect to the URL it is stored under loops every client it is served to: the key has no scheme
  // and no host (only the site), so `301 Location: https://same/url` to an http request would be served
  // to the https clients it sends there.
  if (redirectsToItself(input.status, responseHeaders.get("location"), input.url, input.siteHosts)) {
    return "redirect-loop";
  }
  // Clear-Site-Data (W3C) tells one browser to drop its cookies or storage, as on a logout: replayed
  // from storage it would log out everyone.
  if (responseHeaders.has("clear-site-data")) return "clear-site-data";
  // Fetch standard, CORS protocol: an Access-Control-Allow-Origin naming an origin answers that origin only;
  // stored without Origin among its selecting fields it would be served to every other one.
  if (specificAllowOrigin(responseHeaders) && !input.vary.includes("origin")) return "cors-origin";
  return null;
}

/**
 * Whether a response is a redirect whose Location, resolved against the request URL, is that URL itself
 * on any scheme and port, on the request's host or another host of the site: the same key.
 */
export function redirectsToItself(
  status: number,
  location: string | null,
  url: URL,
  siteHosts: readonly string[],
): boolean {
  if (status < 300 || status > 399 || !location) return false;
  // RFC 9110 §10.2.2: Location is a URI reference, relative ones resolved against the target URI.
  const target = URL.canParse(location, url.href) ? new URL(location, url) : undefined;
  if (!target || (target.protocol !== "http:" && target.protocol !== "https:")) return false;
  if (target.pathname !== url.pathname || target.search !== url.search) return false;
  const host = bareHost(target.hostname);
  return host === bareHost(url.hostname) || siteHosts.some((siteHost) => bareHost(siteHost) === host);
}

/**
 * The selecting fields of a response, with `origin` added when it allows one origin by name (CORS):
 * treated as if it carried `Vary: Origin`, which origins that reflect the request's Origin often forget.
 */
export function withCorsOrigin(vary: string[], responseHeaders: Headers): string[] {
  if (!specificAllowOrigin(responseHeaders) || vary.includes("origin")) return vary;
  return [...vary, "origin"].sort();
}

/**
 * Why a stored answer must not be served for a request, though it was found under its key: entries
 * written before the rules above existed. A redirect to the URL itself loops; an answer allowing one
 * origin by name, stored without Origin as a selecting field, is for that origin only.
 */
export function whyNotServable(
  stored: { status: number; location: string | null; allowOrigin: string | null; vary: readonly string[] },
  request: { url: URL; siteHosts: readonly string[]; origin: string | null },
): NotShareableReason | null {
  if (redirectsToItself(stored.status, stored.location, request.url, request.siteHosts)) return "redirect-loop";
  const allowOrigin = stored.allowOrigin?.trim();
  if (allowOrigin && allowOrigin !== "*" && !stored.vary.includes("origin") && allowOrigin !== request.origin) {
    return "cors-origin";
  }
  return null;
}

/** An Access-Control-Allow-Origin other than `*`: it names the one origin it answers (or `null`). */
export function specificAllowOrigin(responseHeaders: Headers): boolean {
  const value = responseHeaders.get("access-control-allow-origin");
  return value !== null && value.trim() !== "*";
}

function bareHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}
