import { TiercelError } from "../core/errors";
import { decodeContent } from "../core/http/content-coding";

/**
 * The one way Tiercel talks to an origin: redirects never followed, a deadline for the response headers,
 * an idle limit on the body, and one retry when the connection fails for a request that can be repeated
 * (never once the origin has started answering).
 */
export interface UpstreamOptions {
  /** Deadline for the response headers, in milliseconds. */
  headersTimeoutMs: number;
  /** Longest pause between two body chunks, in milliseconds. */
  bodyIdleMs: number;
  /** How the request is sent: the global `fetch` unless an origin needs its own transport (see socket-fetch). */
  fetch?: (
    request: Request,
    init: { signal: AbortSignal; redirect: "manual"; encodeResponseBody: "manual" },
  ) => Promise<Response>;
}

/** Methods that may be repeated when sent without a body (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

export async function fetchUpstream(request: Request, options: UpstreamOptions): Promise<Response> {
  const doFetch = options.fetch ?? fetch;
  const retryable = IDEMPOTENT.has(request.method) && request.body === null;
  for (let attempt = 1; ; attempt++) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.headersTimeoutMs);
    try {
      // The body as the origin coded it, in both connect modes: workerd's fetch() would decode gzip and br
      // itself but keep the coded Content-Encoding and Content-Length, the socket client decodes nothing.
      // Tiercel then decodes what it can, one way for every origin (see core/http/content-coding.ts).
      const response = await doFetch(request, {
        signal: controller.signal,
        redirect: "manual",
        encodeResponseBody: "manual",
      });
      return decodeContent(withIdleLimit(response, options.bodyIdleMs));
    } catch (cause) {
      if (controller.signal.aborted) {
        throw new TiercelError(
          "origin_timeout",
          504,
          `The origin did not answer within ${options.headersTimeoutMs} ms`,
          {
            cause,
          },
        );
      }
      // An origin that had already started answering (part of a response head came back, then the
      // connection broke or the head was malformed) is not asked again: it did receive the request, and a
      // second copy of it would only double the load on an origin that is already failing.
      if (cause instanceof TiercelError && cause.code === "origin_bad_response") throw cause;
      if (!retryable || attempt >= 2) {
        throw new TiercelError("origin_unreachable", 502, "The origin could not be reached", { cause });
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The most bytes one read of an origin body takes. The runtime's own reads hand over a few KiB at a time;
 * a read into a buffer this large takes whatever has arrived (never waiting for more than one byte), so a
 * fast body moves in large chunks and every step after it (the client, each store) runs once per chunk
 * rather than once per few KiB.
 */
const READ_BYTES = 256 * 1024;

/** Errors the body if the origin sends nothing for `ms` (a stalled origin must not hold a client forever). */
function withIdleLimit(response: Response, ms: number): Response {
  if (!response.body) return response;
  const read = readerOf(response.body);
  const reader = read.reader;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idle = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new TiercelError("origin_timeout", 504, `The origin body stalled for ${ms} ms`)),
            ms,
          );
        });
        try {
          const { done, value } = await Promise.race([read.next(), idle]);
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (error) {
          reader.cancel(error).catch(() => {});
          controller.error(error);
        } finally {
          clearTimeout(timer);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, response);
}

/**
 * Reads a body in chunks as large as what has arrived (up to `READ_BYTES`), through a BYOB reader where the
 * body is a byte stream (the runtime's own bodies are), else chunk by chunk as it comes.
 */
function readerOf(body: ReadableStream<Uint8Array>): {
  reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;
  next(): Promise<ReadableStreamReadResult<Uint8Array>>;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    byob = undefined;
  }
  if (!byob) {
    const reader = body.getReader();
    return { reader, next: () => reader.read() };
  }
  const reader = byob;
  return {
    reader,
    next: async () => {
      for (let i = 0; i < 1000; i++) {
        const result = await reader.read(new Uint8Array(READ_BYTES));
        if (result.done || !result.value) return { done: true, value: undefined };
        const value = result.value as Uint8Array;
        // A read of nothing that is not the end is read again (a consumer waits for bytes, not for nothing).
        if (value.byteLength === 0) continue;
        // A small read is copied out, so that it does not hold the whole read buffer while it is queued.
        return { done: false, value: value.byteLength < READ_BYTES / 4 ? value.slice() : value };
      }
      throw new Error("the origin body gave empty reads only");
    },
  };
}
