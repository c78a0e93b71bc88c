/**
 * What every origin strips from its responses, and the loop token it adds to requests. Hop-by-hop fields
 * are removed by the pipeline for every hop; these are the origin-internal ones.
 */
export const LOOP_TOKEN = "tiercel";

/** Server identifiers, never worth sending on. */
const SERVER_IDENTIFIERS = ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"];

/** A copy of the response without server identifiers and without headers starting with any of `prefixes`. */
export function cleanResponse(response: Response, prefixes: string[]): Response {
  const headers = new Headers(response.headers);
  for (const name of [...headers.keys()]) {
    if (SERVER_IDENTIFIERS.includes(name) || prefixes.some((prefix) => name.startsWith(prefix))) headers.delete(name);
  }
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
