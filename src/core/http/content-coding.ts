import { forClient } from "../streams";

/**
 * Content codings (RFC 9110 §8.4). The tiers hold the identity representation: Tiercel asks origins only for
 * the codings it can decode itself (`ACCEPTED_CODINGS`), decodes a coded body as it arrives, and never sends
 * a stored answer with a Content-Encoding. Web Streams only (DecompressionStream).
 */

/**
 * The Accept-Encoding every origin request carries instead of the client's (RFC 9110 §12.5.3). workerd's
 * DecompressionStream reads gzip and deflate but not br (its fetch() can decode br, the socket client
 * cannot), so br is not asked for: both connect modes then hold the same bytes.
 */
export const ACCEPTED_CODINGS = "gzip, deflate";

/** The codings `decodeContent` undoes, by the name DecompressionStream knows them by. */
const DECODERS: Record<string, "gzip" | "deflate"> = {
  gzip: "gzip",
  // RFC 9110 §8.4.1.3: a recipient should treat x-gzip as gzip.
  "x-gzip": "gzip",
  // RFC 9110 §8.4.1.2: "deflate" is the zlib format (RFC 1950), which is DecompressionStream's "deflate".
  deflate: "deflate",
};

/** The codings a Content-Encoding lists, in the order they were applied, lower-cased; `identity` dropped. */
export function contentCodings(value: string | null): string[] {
  if (value === null) return [];
  return value
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
}

/**
 * The response with its content decoded when Tiercel can decode its coding: the body piped through a
 * DecompressionStream, and Content-Encoding and Content-Length (the coded length, RFC 9110 §8.6) removed,
 * since the identity length is not known until the body has been read. A body that is not valid in its
 * coding, or that breaks off, errors the stream (gzip and zlib both end in a checksum, so a cut-short
 * coded body never decodes to a clean end). A response in a coding Tiercel cannot decode (br, compress,
 * zstd, or several codings) is returned unchanged, still labelled: the caller passes it on unstored.
 */
export function decodeContent(response: Response): Response {
  const codings = contentCodings(response.headers.get("content-encoding"));
  const format = codings.length === 1 ? DECODERS[codings[0] as string] : undefined;
  if (codings.length > 0 && format === undefined) return response;
  if (codings.length === 0 && !response.headers.has("content-encoding")) return response;
  const headers = new Headers(response.headers);
  headers.delete("content-encoding");
  if (format !== undefined) headers.delete("content-length");
  const body =
    format !== undefined && response.body ? response.body.pipeThrough(new DecompressionStream(format)) : response.body;
  return new Response(body, { status: response.status, statusText: response.statusText, headers });
}

/**
 * A response to send on as it is. One that still carries a Content-Encoding holds bytes already in that
 * coding, so the runtime must not encode them again (workerd compresses a body whose Response says
 * `Content-Encoding: gzip` unless `encodeBody` is "manual"), which would double-encode it. The body is
 * sent through `forClient`, so one that breaks off aborts the client's connection.
 */
export function passOn(body: ReadableStream<Uint8Array> | null, init: ResponseInit & { headers: Headers }): Response {
  const coded = contentCodings(init.headers.get("content-encoding")).length > 0;
  const declared = init.headers.get("content-length");
  const length = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
  const sent = body && forClient(body, length);
  return new Response(sent, coded ? { ...init, encodeBody: "manual" } : init);
}
