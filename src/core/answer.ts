import type { CachePolicy } from "../sites/schema";
import type { CacheStatus } from "./cache-status";
import { entryAge, entryHeaders, type StoredEntry } from "./entry";
import { isNotModified, notModifiedHeaders } from "./http/conditional";
import { contentRange, evaluateRange, sliceStream } from "./http/range";
import { consumedTargetedFields } from "./http/targeted";
import type { ServerTiming } from "./server-timing";
import { forClient } from "./streams";

/** Statuses whose responses never have a body (RFC 9110 §6.4.1). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export interface AnswerContext {
  method: string;
  requestHeaders: Headers;
  now: number;
  status: CacheStatus;
  timing: ServerTiming;
  policy: CachePolicy;
}

/**
 * Builds the client's response from a stored entry: 304 for a matching conditional, 206 or 416 for a
 * range, no body for HEAD, and always `Age`, `Cache-Status` and `Server-Timing`.
 */
export function answerFromEntry(
  entry: StoredEntry,
  body: ReadableStream<Uint8Array>,
  ctx: AnswerContext,
  /** Set when `body` holds only these bytes of the stored body (a ranged read; see `rangeOf`). */
  bodyRange?: { start: number; end: number },
): Response {
  const headers = entryHeaders(entry);
  // Fields aimed at Tiercel alone stay with it (RFC 9213); CDN-Cache-Control is passed on.
  for (const name of consumedTargetedFields(ctx.policy.targetedFields)) headers.delete(name);
  // Content-Range is Tiercel's to set, from the request's Range: one stored by older code is never passed on.
  headers.delete("content-range");
  // RFC 9111 §5.1: a response served from a cache carries Age.
  headers.set("age", String(entryAge(entry, ctx.now)));
  if (ctx.policy.browserTtl !== undefined) headers.set("cache-control", `public, max-age=${ctx.policy.browserTtl}`);
  const finish = (status: number, responseHeaders: Headers, responseBody: ReadableStream<Uint8Array> | null) => {
    responseHeaders.set("cache-status", ctx.status.toString());
    responseHeaders.set("server-timing", ctx.timing.toString());
    if (responseBody === null) body.cancel().catch(() => {});
    const length = responseHeaders.get("content-length");
    const sent = responseBody && forClient(responseBody, length === null ? undefined : Number(length));
    return new Response(sent, { status, headers: responseHeaders });
  };

  const validators = { etag: entry.etag, lastModified: entry.lastModified };
  // RFC 9110 §13.2.2: conditionals are evaluated for GET and HEAD on a 2xx response.
  if (entry.status >= 200 && entry.status < 300 && isNotModified(ctx.requestHeaders, validators)) {
    return finish(304, notModifiedHeaders(headers), null);
  }

  if (NULL_BODY_STATUSES.has(entry.status)) return finish(entry.status, headers, null);

  // Ranges are answered from whole 200s whose stored bytes are what the client receives (no content coding).
  // (A miss of unknown length is answered whole: its length is known only once it has streamed.)
  const knownLength = entry.length >= 0;
  const rangeable = isRangeable(entry, headers);
  if (rangeable) headers.set("accept-ranges", "bytes");
  const decision = rangeable ? evaluateRange(ctx.requestHeaders, entry.length, validators) : { kind: "full" as const };
  if (
    bodyRange &&
    (decision.kind !== "partial" || decision.start !== bodyRange.start || decision.end !== bodyRange.end)
  ) {
    // Callers read a range only when `rangeOf` says this answer is that range; anything else is a bug.
    body.cancel().catch(() => {});
    throw new Error("a ranged body reached an answer that is not that range");
  }
  if (decision.kind === "unsatisfiable") {
    // RFC 9110 §15.5.17: 416 with the current length in Content-Range.
    const refusal = new Headers({ "content-range": contentRange(decision, entry.length) });
    return finish(416, refusal, null);
  }
  if (decision.kind === "partial") {
    headers.set("content-range", contentRange(decision, entry.length));
    headers.set("content-length", String(decision.end - decision.start + 1));
    // A recorded digest can only be checked over the whole body: it is read to its end before the range's
    // last byte goes out (at most the 4 MiB a digested body can have). Larger bodies carry no digest and are
    // read only as far as the range; a body that ends before it errors the answer.
    const readToEnd = entry.digest !== "";
    const slice =
      ctx.method === "HEAD" ? null : bodyRange ? body : sliceStream(body, decision.start, decision.end, { readToEnd });
    return finish(206, headers, slice);
  }

  if (knownLength && !headers.has("content-encoding")) headers.set("content-length", String(entry.length));
  return finish(entry.status, headers, ctx.method === "HEAD" ? null : body);
}

function isRangeable(entry: StoredEntry, headers: Headers): boolean {
  return entry.status === 200 && entry.length >= 0 && !headers.has("content-encoding");
}

/**
 * The bytes a GET for `entry` is answered with when they are a range (206), else undefined: what a tier can
 * be asked for alone (a ranged read), when the answer is not a 304 or a whole body after all.
 */
export function rangeOf(entry: StoredEntry, requestHeaders: Headers): { start: number; end: number } | undefined {
  const validators = { etag: entry.etag, lastModified: entry.lastModified };
  if (entry.status >= 200 && entry.status < 300 && isNotModified(requestHeaders, validators)) return undefined;
  if (!isRangeable(entry, entryHeaders(entry))) return undefined;
  const decision = evaluateRange(requestHeaders, entry.length, validators);
  return decision.kind === "partial" ? { start: decision.start, end: decision.end } : undefined;
}
