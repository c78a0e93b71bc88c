import { forClient, splitPrefix } from "../streams";
import { dropDigests } from "./headers";

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
  // RFC 9110 §8.4.1.2: "deflate" is the zlib format (RFC 1950), DecompressionStream's "deflate"; a raw
  // deflate body sent under that name is recognised by its first bytes (`inflate`).
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
  if (format !== undefined) {
    headers.delete("content-length");
    // The digests were of the coded bytes (RFC 9530): the decoded ones are other bytes.
    dropDigests(headers);
  }
  const body =
    format === "deflate" && response.body
      ? inflate(response.body)
      : format !== undefined && response.body
        ? response.body.pipeThrough(new DecompressionStream(format))
        : response.body;
  return new Response(body, { status: response.status, statusText: response.statusText, headers });
}

/**
 * A `deflate` body decoded whichever way it was sent: RFC 9110 §8.4.1.2 says the zlib format (RFC 1950), but
 * some servers send raw deflate (RFC 1951) under that name. As browsers do, the first two bytes decide: a
 * valid zlib header (compression method 8, window at most 32 KiB, header checksum a multiple of 31) is
 * read as "deflate", anything else as "deflate-raw" (both DecompressionStream formats in workerd). Either
 * way a body that is not valid, or breaks off, errors the stream (raw deflate has no checksum, but its last
 * block is marked: a body that ends before it errors).
 */
function inflate(coded: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let decoded: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!decoded) {
        const { prefix, rest } = await splitPrefix(coded, 2);
        const format = isZlibHeader(prefix) ? "deflate" : "deflate-raw";
        const decoder = new DecompressionStream(format);
        decoded = decoder.readable.getReader();
        void feed(decoder.writable, prefix, rest);
      }
      const { done, value } = await decoded.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return decoded ? decoded.cancel(reason) : coded.cancel(reason);
    },
  });
}

/**
 * Writes `prefix` and then `rest` into a decoder; a source that errors aborts it (so its readable errors). A
 * decoder that refuses its input (invalid, or closed before its end) errors its readable by itself; the
 * rejections here are handled, so none is left unhandled.
 */
async function feed(
  writable: WritableStream<Uint8Array>,
  prefix: Uint8Array,
  rest: ReadableStream<Uint8Array>,
): Promise<void> {
  const writer = writable.getWriter();
  writer.closed.catch(() => {});
  const reader = rest.getReader();
  try {
    await writer.write(prefix);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await writer.write(value);
    }
    await writer.close();
  } catch (error) {
    await writer.abort(error).catch(() => {});
    await reader.cancel(error).catch(() => {});
  }
}

/** RFC 1950 §2.2: CM = 8, CINFO ≤ 7, and CMF·256 + FLG a multiple of 31. */
export function isZlibHeader(bytes: Uint8Array): boolean {
  const cmf = bytes[0] ?? 0;
  const flg = bytes[1] ?? 0;
  return (cmf & 0x0f) === 8 && cmf >> 4 <= 7 && (cmf * 256 + flg) % 31 === 0;
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
