import { TiercelError } from "../core/errors";
import { endToEndHeaders } from "../core/http/headers";
import type { Origin, OriginRequest } from "../core/origin";

/**
 * A backend at a base URL. The client's path and query are appended to the base URL's path; redirects
 * are passed through, never followed.
 */
export interface HttpOriginOptions {
  /** Base URL of the backend (already validated by the site schema). */
  url: string;
  /** Deadline for the response headers, in milliseconds. */
  headersTimeoutMs: number;
  fetch?: typeof fetch;
}

/**
 * Request headers never forwarded: the runtime sets Host and Content-Length itself, and the `cf-*` fields
 * describe the client's connection to Cloudflare, not a request to the backend.
 */
const NOT_FORWARDED = [
  "host",
  "content-length",
  "cf-connecting-ip",
  "cf-ipcountry",
  "cf-ray",
  "cf-visitor",
  "cf-worker",
];

export function httpOrigin(options: HttpOriginOptions): Origin {
  const base = new URL(options.url);
  const basePath = base.pathname.replace(/\/+$/, "");
  const doFetch = options.fetch ?? fetch;

  return {
    async fetch(request: OriginRequest): Promise<Response> {
      const target = new URL(base);
      target.pathname = basePath + request.url.pathname;
      target.search = request.url.search;
      const headers = endToEndHeaders(request.headers, NOT_FORWARDED);
      const hasBody = request.method !== "GET" && request.method !== "HEAD";

      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), options.headersTimeoutMs);
      try {
        return await doFetch(target, {
          method: request.method,
          headers,
          body: hasBody ? request.body : null,
          redirect: "manual",
          signal: controller.signal,
        });
      } catch (cause) {
        if (controller.signal.aborted) {
          throw new TiercelError(
            "origin_timeout",
            504,
            `The origin did not answer within ${options.headersTimeoutMs} ms`,
            { cause },
          );
        }
        throw new TiercelError("origin_unreachable", 502, "The origin could not be reached", { cause });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
