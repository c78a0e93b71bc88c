import { parseEntityTag, strongMatch, type Validators } from "./conditional";
import { parseHttpDate } from "./dates";

/**
 * Byte ranges (RFC 9110 §14): deciding what a Range request selects from a stored representation, the
 * Content-Range that describes it, and a stream of just those bytes. The cache holds whole objects and
 * answers ranges from them (see storable.ts), so the representation's length is always known.
 */

export type RangeDecision =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number }
  | { kind: "unsatisfiable" };

/**
 * The stored validators If-Range is checked against. `date` is the stored Date field: when given, a
 * Last-Modified less than a second older than it is weak (§8.8.2.2) and never satisfies If-Range.
 */
export interface RangeValidators extends Validators {
  date?: string;
}

/**
 * A longer Range field is many ranges or junk; a single range needs well under a hundred characters
 * even with twenty-digit positions. Such a field is ignored without being parsed.
 */
const MAX_RANGE_FIELD_LENGTH = 1024;

const DIGITS = /^[0-9]+$/;

type RangeSpec = { first: number; last?: number } | { suffix: number };

/**
 * What a GET with this request's Range and If-Range selects from a representation of `length` bytes
 * (§14.2, §13.1.5, §13.2.2 step 5). The caller evaluates If-None-Match / If-Modified-Since first
 * (§13.2.2 steps 3–4) and calls this for GET only (§14.2: range handling is defined for GET alone).
 *
 * - "full" (answer 200): no Range; a unit other than `bytes`; an invalid ranges-specifier; an If-Range
 *   that does not match; or more than one range. That last one is Tiercel's bound on many and overlapping
 *   ranges: rather than build multipart/byteranges or police overlap, it takes §14.2's "a server MAY
 *   ignore the Range header field" for any multi-range request.
 * - "unsatisfiable" (answer 416 with `contentRange`): the single range selects no byte (§14.1.1), which
 *   includes every range of a zero-length representation.
 * - "partial" (answer 206): `start` and `end` inclusive, `end` clamped to the last byte (§14.1.2).
 *
 * Positions too large for a safe integer are treated as infinitely far: past the end of any
 * representation, which is what they mean for any length this code can be given.
 */
export function evaluateRange(requestHeaders: Headers, length: number, stored: RangeValidators): RangeDecision {
  const range = requestHeaders.get("range");
  if (range === null || !Number.isSafeInteger(length) || length < 0) return { kind: "full" };
  const spec = parseRange(range);
  // §14.2: "a server MAY ignore or reject a Range header field that contains an invalid ranges-specifier".
  if (spec === undefined) return { kind: "full" };
  const ifRange = requestHeaders.get("if-range");
  // §13.2.2 step 5: when If-Range does not match, "ignore the Range header field and respond 200".
  if (ifRange !== null && !ifRangeMatches(ifRange, stored)) return { kind: "full" };
  return select(spec, length);
}

/**
 * The single byte range a request asks for, as a tier can be asked for it before the representation's length
 * is known (core/tier.ts); undefined when there is none, when it is not one valid `bytes` range, or when an
 * If-Range makes it depend on the stored validators.
 */
export function requestedByteRange(
  requestHeaders: Headers,
): { offset: number; length?: number } | { suffix: number } | undefined {
  const range = requestHeaders.get("range");
  if (range === null || requestHeaders.has("if-range")) return undefined;
  const spec = parseRange(range);
  if (spec === undefined) return undefined;
  if ("suffix" in spec)
    return Number.isSafeInteger(spec.suffix) && spec.suffix > 0 ? { suffix: spec.suffix } : undefined;
  if (!Number.isSafeInteger(spec.first)) return undefined;
  if (spec.last === undefined || !Number.isSafeInteger(spec.last)) return { offset: spec.first };
  return { offset: spec.first, length: spec.last - spec.first + 1 };
}

/** Content-Range for a 206 or 416 (§14.4): `bytes first-last/length` or `bytes *\/length`. */
export function contentRange(
  decision: Extract<RangeDecision, { kind: "partial" | "unsatisfiable" }>,
  length: number,
): string {
  // §14.4: unsatisfied-range = "*/" complete-length.
  if (decision.kind === "unsatisfiable") return `bytes */${length}`;
  return `bytes ${decision.start}-${decision.end}/${length}`;
}

/**
 * Bytes `start` to `end` (inclusive) of `stream`. Reads lazily, one source chunk at a time: chunks before
 * `start` are dropped as they arrive, and the source is cancelled as soon as `end` has been delivered, so
 * the rest of a large object is never read. A source that ends before `end` errors the slice rather than
 * let a short body pass for the promised range.
 *
 * With `readToEnd`, the source is read to its end (the bytes after `end` dropped) before the piece holding
 * `end` is delivered and the slice closes, so a source that checks itself as it ends (a stored body checked
 * against its record's length and digest) can still error the slice: the client never gets the whole range
 * from a body that turned out damaged.
 */
export function sliceStream(
  stream: ReadableStream<Uint8Array>,
  start: number,
  end: number,
  { readToEnd = false }: { readToEnd?: boolean } = {},
): ReadableStream<Uint8Array> {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end}`);
  }
  const reader = stream.getReader();
  /** Offset in the source of the next chunk's first byte. */
  let offset = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        // Each pull enqueues a non-empty piece, closes or errors: a pull that returned with nothing would stall a
        // consumer that is waiting (highWaterMark 0 asks again only on the next read).
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            controller.error(new RangeError(`source ended at byte ${offset}, before range end ${end}`));
            return;
          }
          const chunkStart = offset;
          offset += value.byteLength;
          if (value.byteLength === 0 || offset <= start) continue;
          const piece = value.subarray(
            Math.max(0, start - chunkStart),
            Math.min(value.byteLength, end + 1 - chunkStart),
          );
          if (offset > end && readToEnd) {
            // A read that fails from here on errors the slice before its last piece is out.
            for (let rest = await reader.read(); !rest.done; rest = await reader.read());
            controller.enqueue(piece);
            controller.close();
            return;
          }
          controller.enqueue(piece);
          if (offset > end) {
            controller.close();
            await reader.cancel("range end reached").catch(() => {});
          }
          return;
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    // Nothing is read ahead of the consumer.
    { highWaterMark: 0 },
  );
}

/** `ranges-specifier = range-unit "=" range-set` (§14.1.1) with exactly one range-spec; else undefined. */
function parseRange(field: string): RangeSpec | undefined {
  const value = field.trim();
  if (value.length > MAX_RANGE_FIELD_LENGTH) return undefined;
  const equals = value.indexOf("=");
  // §14.1: range units are case-insensitive; §14.2: "MUST ignore a Range header field ... with a range
  // unit it does not understand". Tiercel understands bytes only.
  if (equals === -1 || value.slice(0, equals).toLowerCase() !== "bytes") return undefined;
  // §5.6.1: `1#range-spec` allows OWS around commas and empty members; it needs one member at least.
  const specs = value
    .slice(equals + 1)
    .split(",")
    .map((spec) => spec.trim())
    .filter(Boolean);
  // Tiercel's bound (see evaluateRange): more than one range is ignored, §14.2 "MAY ignore".
  if (specs.length !== 1 || specs[0] === undefined) return undefined;
  return parseRangeSpec(specs[0]);
}

/** `int-range / suffix-range` (§14.1.1); other-range is for other units. */
function parseRangeSpec(spec: string): RangeSpec | undefined {
  const dash = spec.indexOf("-");
  if (dash === -1) return undefined;
  const first = spec.slice(0, dash);
  const last = spec.slice(dash + 1);
  // §14.1.1: suffix-range = "-" suffix-length.
  if (first === "") return DIGITS.test(last) ? { suffix: position(last) } : undefined;
  if (!DIGITS.test(first)) return undefined;
  // §14.1.1: int-range = first-pos "-" [ last-pos ].
  if (last === "") return { first: position(first) };
  if (!DIGITS.test(last)) return undefined;
  const range = { first: position(first), last: position(last) };
  // §14.1.1: "A range-spec is invalid if the last-pos value is present and less than the first-pos."
  return range.last < range.first ? undefined : range;
}

/** A digit string as a number; beyond MAX_SAFE_INTEGER it cannot be exact, so it is infinitely far. */
function position(digits: string): number {
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : Number.POSITIVE_INFINITY;
}

function select(spec: RangeSpec, length: number): RangeDecision {
  // A zero-length representation has no byte to select, whatever the range.
  if (length === 0) return { kind: "unsatisfiable" };
  if ("suffix" in spec) {
    // §14.1.1: a suffix-range "is satisfiable if it has a non-zero suffix-length".
    if (spec.suffix === 0) return { kind: "unsatisfiable" };
    // §14.1.2: a suffix longer than the representation selects all of it.
    return { kind: "partial", start: Math.max(0, length - spec.suffix), end: length - 1 };
  }
  // §14.1.1: an int-range is satisfiable if its "first-pos ... is less than the current length".
  if (spec.first >= length) return { kind: "unsatisfiable" };
  // §14.1.2: a last-pos at or past the end "is replaced with a value that is one less than the length".
  return { kind: "partial", start: spec.first, end: Math.min(spec.last ?? length - 1, length - 1) };
}

/** §13.1.5: whether If-Range's validator matches the stored response, so the Range applies. */
function ifRangeMatches(field: string, stored: RangeValidators): boolean {
  const value = field.trim();
  // §13.1.5: an entity-tag starts with DQUOTE or W/; anything else is an HTTP-date.
  if (value.startsWith('"') || value.startsWith("W/")) {
    const tag = parseEntityTag(value);
    const current = stored.etag === undefined ? undefined : parseEntityTag(stored.etag);
    // §13.1.5: true only "if the entity-tag validator provided exactly matches the ETag field value ...
    // using the strong comparison function"; a weak tag never does.
    return tag !== undefined && current !== undefined && strongMatch(tag, current);
  }
  const date = parseHttpDate(value);
  const lastModified = parseHttpDate(stored.lastModified);
  // §13.1.5: true only "if the HTTP-date validator provided exactly matches the Last-Modified field value".
  // HTTP-dates have one-second resolution, so equal instants are an exact match whatever the format.
  if (date === undefined || lastModified === undefined || date !== lastModified) return false;
  // §13.1.5: false "if the HTTP-date validator provided is not a strong validator"; §8.8.2.2: a cache
  // may treat it as strong when the entry's Date is at least one second after it.
  if (stored.date === undefined) return true;
  const dated = parseHttpDate(stored.date);
  return dated !== undefined && dated - lastModified >= 1000;
}
