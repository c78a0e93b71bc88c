import type { CachePolicy } from "../sites/schema";
import type { CacheStatus } from "./cache-status";
import { entryAge, entryHeaders, type StoredEntry } from "./entry";
import { TiercelError } from "./errors";
import { isNotModified, notModifiedHeaders } from "./http/conditional";
import { contentRange, evaluateRange, sliceStream } from "./http/range";
import { consumedTargetedFields } from "./http/targeted";
import type { ServerTiming } from "./server-timing";
import { collectAtMost, forClient, streamOfChunks } from "./streams";
import { takeWhole, wasChecked } from "./verified-body";

/** Statuses whose responses never have a body (RFC 9110 §6.4.1). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export interface AnswerContext {
  method: string;
  requestHeaders: Headers;
  now: number;
  status: CacheStatus;
  timing: ServerTiming;
  policy: CachePolicy;
  /** The answer is read by JavaScript in this isolate (the shield's fan-out): its body is not sized for a socket. */
  readHere?: boolean;
}

/**
 * Builds the client's response from a stored entry: 304 for a matching conditional, 206 or 416 for a
 * range, no body for HEAD, and always `Age`, `Cache-Status` and `Server-Timing`. A whole answer from a small
 * body checked whole (`verifiedWhole`) is sent from its bytes once they have checked out, with no stream in
 * between (the common edge hit); every other answer streams.
 */
export function answerFromEntry(
  entry: StoredEntry,
  body: ReadableStream<Uint8Array>,
  ctx: AnswerContext,
  /** Set when `body` holds only these bytes of the stored body (a ranged read; see `rangeOf`). */
  bodyRange?: { start: number; end: number },
): Response | Promise<Response> {
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
    // A copy checked whole before, sent whole, goes to the runtime as the tier handed it (it knows its length);
    // so does a body read in this isolate (its reader checks the length); any other is held to the length the
    // answer declares.
    const sent =
      responseBody &&
      ((wasChecked(responseBody) && responseBody === body) || ctx.readHere
        ? responseBody
        : forClient(responseBody, length === null ? undefined : Number(length)));
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
    // RFC 9530 §2: Content-Digest is of the message content, here the part; Repr-Digest still holds.
    headers.delete("content-digest");
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
  const whole = ctx.method === "HEAD" ? undefined : takeWhole(body);
  if (whole) return fromBytes(entry.status, headers, whole, ctx);
  return finish(entry.status, headers, ctx.method === "HEAD" ? null : body);
}

/**
 * An answer whose body length is unknown when its head would leave (an origin body sent without
 * `Content-Length`, or one Tiercel decoded) is read whole first, up to `limit` bytes, and sent with its
 * length (issue 11 §3): workerd ends a chunked answer with a clean last chunk even when its body errors, so
 * only a declared length lets a client tell a body that broke off from a whole one. A body that breaks off
 * while it is read rejects (the caller answers with an error, or stale); past `limit` the answer is sent
 * chunked as before, replaying what was read. Answers meant to arrive piece by piece are never held back
 * (`isStreamedOnPurpose`). `limit` 0 turns this off.
 */
export async function withKnownLength(response: Response, limit: number): Promise<Response> {
  if (limit <= 0 || !response.body || response.headers.has("content-length")) return response;
  if (isStreamedOnPurpose(response.headers)) return response;
  let read: Awaited<ReturnType<typeof collectAtMost>>;
  try {
    read = await collectAtMost(response.body, limit);
  } catch (error) {
    // The origin's own failure (a stall past its limit, a reset) keeps its code; anything else is a body cut short.
    if (error instanceof TiercelError && error.status >= 500) throw error;
    throw new TiercelError(
      "origin_bad_response",
      502,
      "The origin's body broke off before its end, or could not be decoded",
      {
        cause: error,
      },
    );
  }
  const headers = new Headers(response.headers);
  // A body still in a content coding is sent as the origin coded it, never encoded twice (content-coding.ts).
  const init = { status: response.status, statusText: response.statusText, headers };
  const sent = headers.has("content-encoding") ? { ...init, encodeBody: "manual" as const } : init;
  if ("over" in read) return new Response(read.over, sent);
  headers.set("content-length", String(read.total));
  return new Response(forClient(streamOfChunks(read.chunks), read.total), sent);
}

/**
 * An answer the origin means to arrive as it is written: an event stream (`text/event-stream`), or one that
 * says `X-Accel-Buffering: no` (the field streaming backends send so that proxies such as nginx pass each
 * piece on at once). Held back until complete, such an answer would reach the client late or never.
 */
function isStreamedOnPurpose(headers: Headers): boolean {
  if (/^\s*text\/event-stream/i.test(headers.get("content-type") ?? "")) return true;
  return headers.get("x-accel-buffering")?.trim().toLowerCase() === "no";
}

/**
 * The answer from a whole checked body: its bytes once they check out, or, for a damaged body, the same answer
 * with a body that errors (never a clean end: the client sees the answer cut off, as with a stream).
 */
async function fromBytes(
  status: number,
  headers: Headers,
  read: () => Promise<Uint8Array>,
  ctx: AnswerContext,
): Promise<Response> {
  headers.set("cache-status", ctx.status.toString());
  headers.set("server-timing", ctx.timing.toString());
  try {
    return new Response(await read(), { status, headers });
  } catch (error) {
    const failed = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.error(error);
      },
    });
    const length = headers.get("content-length");
    return new Response(forClient(failed, length === null ? undefined : Number(length)), { status, headers });
  }
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
