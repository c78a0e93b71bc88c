import { TiercelError } from "../core/errors";
import { decodeContent } from "../core/http/content-coding";
import { largeChunkReader } from "../core/streams";

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

/** Errors the body if the origin sends nothing for `ms` (a stalled origin must not hold a client forever). */
function withIdleLimit(response: Response, ms: number): Response {
  if (!response.body) return response;
  // Read in large chunks (streams.ts): every step after the origin runs once per chunk, not per few KiB.
  const reader = largeChunkReader(response.body);
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
          const { done, value } = await Promise.race([reader.read(), idle]);
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
