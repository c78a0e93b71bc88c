/**
 * What every origin strips from its responses, and the loop token it adds to requests. Hop-by-hop fields
 * are removed by the pipeline for every hop; these are the origin-internal ones.
 */
export const LOOP_TOKEN = "tiercel";

/** Server identifiers, never worth sending on. */
const SERVER_IDENTIFIERS = ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"];

/**
 * Fields that describe the origin's connection rather than the resource, wrong for any client of Tiercel:
 * Alt-Svc (RFC 7838) advertises the origin's own alternative endpoints, which a client would then try on
 * Tiercel's host.
 */
const CONNECTION_FIELDS = ["alt-svc"];

/** Statuses Content-Range belongs to (RFC 9110 §14.4): a 206's part, or a 416's current length. */
const RANGE_STATUSES = new Set([206, 416]);

/**
 * A copy of the response without server identifiers, connection fields, a Content-Range on a status it
 * does not belong to (a 200 with one would be stored and sent on every hit, and tells a client it got a
 * part), and headers starting with any of `prefixes`.
 */
export function cleanResponse(response: Response, prefixes: string[]): Response {
  const headers = new Headers(response.headers);
  for (const name of [...headers.keys()]) {
    if (SERVER_IDENTIFIERS.includes(name) || prefixes.some((prefix) => name.startsWith(prefix))) headers.delete(name);
  }
  for (const name of CONNECTION_FIELDS) headers.delete(name);
  if (!RANGE_STATUSES.has(response.status)) headers.delete("content-range");
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

/** How many times Tiercel's token appears in a CDN-Loop header (RFC 8586 §2). */
export function loopCount(cdnLoop: string | null): number {
  if (!cdnLoop) return 0;
  return cdnLoop
    .split(",")
    .map((member) => member.trim().split(/[\s;]/)[0]?.toLowerCase())
    .filter((token) => token === LOOP_TOKEN).length;
}
