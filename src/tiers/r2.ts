import { isStoredEntry, type StoredEntry } from "../core/entry";
import { isolateBudget } from "../core/memory-budget";
import { BodyTooLargeError, concat, splitPrefix } from "../core/streams";
import { type ByteRange, type CachedObject, resolveRange, type Tier, type UnknownLength } from "../core/tier";

/**
 * Tier 2 for large objects: an R2 bucket. One object per entry, under `<prefix><key>`:
 *
 * - The record rides in the object's custom metadata (`e`) when it fits R2's 2048-byte limit; when it does
 *   not, it is written in front of the body as a frame and the metadata says how long the frame is (`f`).
 * - R2 keeps objects until they are deleted: the entry's expiry (epoch ms) is in the metadata too (`x`), a
 *   get past it is a miss, and the bucket's lifecycle rule removes old objects (docs/deployment.md).
 * - Every write is one atomic object write (a put, or a multipart upload that becomes visible only when it
 *   completes), so a body that broke off never leaves anything reachable.
 * - A streamed body is read a part at a time (`partSize`, 8 MiB: the one buffer a put holds): one that ends
 *   within the first part is one put; a longer one is a multipart upload (one write per part). For a body of
 *   unknown length the record says -1 and the length is the object's size less the frame.
 * - A ranged get asks R2 for just those bytes (`get(key, {range})`): a tail of a 500 MiB object reads the tail.
 */
export const R2_METADATA_LIMIT = 2048;
/** R2's smallest part (all parts but the last are this size or more, and all the same size). */
const R2_MIN_PART = 5 * 1024 * 1024;

export interface R2TierOptions {
  prefix?: string;
  /** Bytes buffered per part of a multipart upload of a body of unknown length (at least 5 MiB). */
  partSize?: number;
  now?: () => number;
  /**
   * Whether the tier keeps its own expiry (default true). The global tier (tiers/global.ts) turns it off: its
   * KV record, refreshed by a 304 without rewriting the body, says how long the entry lives.
   */
  expire?: boolean;
}

type R2Meta = { e?: string; f?: string; x?: string };

export function r2Tier(bucket: R2Bucket, options: R2TierOptions = {}): Tier {
  const prefix = options.prefix ?? "c/";
  const partSize = Math.max(R2_MIN_PART, options.partSize ?? 8 * 1024 * 1024);
  const now = options.now ?? Date.now;
  const expire = options.expire ?? true;

  /** The metadata and frame for `entry`, expiring after `retention` seconds. */
  const layout = (entry: StoredEntry, retention: number) => {
    const x = expire ? { x: String(Math.ceil(now() + Math.max(1, retention) * 1000)) } : {};
    const json = JSON.stringify(entry);
    const inline: R2Meta = { e: json, ...x };
    if (metadataSize(inline) <= R2_METADATA_LIMIT) return { meta: inline, frame: new Uint8Array(0) };
    const frame = new TextEncoder().encode(json);
    return { meta: { f: String(frame.byteLength), ...x } as R2Meta, frame };
  };

  return {
    name: "r2",
    global: true,

    async get(key: string, range?: ByteRange): Promise<CachedObject | null> {
      const name = prefix + key;
      // Optimistic: most records ride in metadata (no frame), so the range is asked for as it is.
      let object = range ? await bucket.get(name, { range: r2Range(range, 0) }).catch(() => undefined) : undefined;
      if (object === undefined) object = await bucket.get(name);
      if (object === null) return null;
      const meta = (object.customMetadata ?? {}) as R2Meta;
      const expires = Number(meta.x);
      if (expire && Number.isFinite(expires) && expires <= now()) {
        await release(object.body, object.range ? rangeSize(object.range) : object.size);
        return null;
      }
      const frameLength = meta.e === undefined ? Number(meta.f) : 0;
      if (!Number.isSafeInteger(frameLength) || frameLength < 0) {
        await release(object.body, object.range ? rangeSize(object.range) : object.size);
        return null;
      }
      let entry: StoredEntry | null = null;
      let body = object.body;
      const ranged = object.range !== undefined && range !== undefined;
      if (meta.e !== undefined) {
        entry = parseEntry(meta.e);
      } else if (!ranged) {
        const split = await splitPrefix(body, frameLength);
        body = split.rest;
        entry = parseEntry(new TextDecoder().decode(split.prefix));
      } else {
        // A framed record read with a range: the frame is read on its own, then the range past it.
        await release(body, rangeSize(object.range));
        const head = await bucket.get(name, { range: { offset: 0, length: frameLength } });
        entry = head ? parseEntry(await head.text()) : null;
      }
      if (!entry) {
        await release(body, ranged ? rangeSize(object.range) : object.size);
        return null;
      }
      // A body of unknown length (a multipart upload) is as long as the object, less the frame.
      const length = entry.length >= 0 ? entry.length : object.size - frameLength;
      if (entry.length < 0) entry = { ...entry, length };
      if (!range) return { entry, body };
      const wanted = resolveRange(range, length);
      if (!ranged && !wanted) return { entry, body };
      // Asked as it was (no frame) from an object of the recorded size: R2 read exactly the bytes wanted.
      if (ranged && frameLength === 0 && wanted && object.size === length) return { entry, body, range: wanted };
      await release(body, ranged ? rangeSize(object.range) : object.size);
      if (!wanted || object.size - frameLength !== length) {
        // The range selects nothing, or the object is not the size its record says (the reader's check of the
        // whole body reports that): the whole body, as for no range.
        const whole = await bucket.get(name);
        if (!whole) return null;
        return { entry, body: frameLength > 0 ? (await splitPrefix(whole.body, frameLength)).rest : whole.body };
      }
      const exact = await bucket.get(name, {
        range: { offset: frameLength + wanted.start, length: wanted.end - wanted.start + 1 },
      });
      if (!exact) return null;
      return { entry, body: exact.body, range: wanted };
    },

    async put(
      key: string,
      given: StoredEntry,
      body: Uint8Array | ReadableStream<Uint8Array>,
      retention: number,
      unknown?: UnknownLength,
    ) {
      const name = prefix + key;
      if (body instanceof Uint8Array) {
        const { meta, frame } = layout(given, retention);
        await bucket.put(name, concat([frame, body]).slice(), { customMetadata: meta });
        return;
      }
      // A stream is read a part at a time: one that ends within the first part is one put, a longer one a
      // multipart upload. R2 is never handed a stream that could break off (workerd reports that as an
      // uncaught error whatever the caller does); a body that breaks off aborts the upload instead.
      const declared = unknown ? undefined : given.length;
      // The part buffer comes out of the isolate's budget; past it this put is skipped (the client is not).
      const grant = isolateBudget.take(Math.min(partSize, declared ?? unknown?.maxBytes ?? partSize));
      if (!grant) {
        await body.cancel("no memory for a part").catch(() => {});
        throw new Error("the isolate's memory budget has no room for an R2 part; not storing");
      }
      const parts = partsOf(body, unknown ? unknown.maxBytes : given.length);
      try {
        const first = await parts.take(partSize);
        if (await parts.atEnd()) {
          if (declared !== undefined && first.byteLength !== declared) {
            throw new Error(`body has ${first.byteLength} bytes, its record says ${declared}`);
          }
          const { meta, frame } = layout({ ...given, length: first.byteLength }, retention);
          await bucket.put(name, owned(concat([frame, first])), { customMetadata: meta });
          return;
        }
        await multipart(
          bucket,
          name,
          layout({ ...given, length: declared ?? -1 }, retention),
          first,
          parts,
          partSize,
          declared,
        );
      } catch (error) {
        await parts.cancel(error);
        throw error;
      } finally {
        grant.release();
      }
    },

    async delete(key: string): Promise<void> {
      await bucket.delete(prefix + key);
    },
  };
}

/** `bytes` as a buffer of its own (a view of a larger one is copied; a whole one is handed over as it is). */
function owned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

/** Writes the frame and then the first part and the rest as parts of one multipart upload, which appears whole. */
async function multipart(
  bucket: R2Bucket,
  name: string,
  { meta, frame }: { meta: R2Meta; frame: Uint8Array },
  first: Uint8Array,
  parts: ReturnType<typeof partsOf>,
  partSize: number,
  declared: number | undefined,
): Promise<void> {
  const upload = await bucket.createMultipartUpload(name, { customMetadata: meta });
  try {
    // Every part but the last is `partSize` bytes: the first carries the frame and that much less body.
    const head = concat([frame, first.subarray(0, partSize - frame.byteLength)]);
    parts.unshift(first.subarray(partSize - frame.byteLength));
    const uploaded: R2UploadedPart[] = [await upload.uploadPart(1, owned(head))];
    let total = first.byteLength;
    for (let number = 2; ; number++) {
      const part = await parts.take(partSize);
      if (part.byteLength === 0) break;
      total += part.byteLength;
      uploaded.push(await upload.uploadPart(number, owned(part)));
      if (part.byteLength < partSize) break;
    }
    if (!(await parts.atEnd()) || (declared !== undefined && total !== declared)) {
      throw new Error(`body has ${total} bytes or more, its record says ${declared ?? "unknown"}`);
    }
    await upload.complete(uploaded);
  } catch (error) {
    await upload.abort().catch(() => {});
    throw error;
  }
}

/** A body read in parts of a chosen size, refused (BodyTooLargeError) once it runs past `max` bytes. */
function partsOf(source: ReadableStream<Uint8Array>, max: number) {
  const reader = source.getReader();
  const carried: Uint8Array[] = [];
  let ended = false;
  let total = 0;
  const next = async (): Promise<Uint8Array | undefined> => {
    const carry = carried.shift();
    if (carry) return carry;
    if (ended) return undefined;
    const { done, value } = await reader.read();
    if (done) {
      ended = true;
      return undefined;
    }
    total += value.byteLength;
    if (total > max) throw new BodyTooLargeError(`body exceeds ${max} bytes`);
    return value;
  };
  return {
    async take(size: number): Promise<Uint8Array> {
      const pieces: Uint8Array[] = [];
      let filled = 0;
      while (filled < size) {
        let chunk = await next();
        if (!chunk) break;
        const room = size - filled;
        if (chunk.byteLength > room) {
          carried.unshift(chunk.subarray(room));
          chunk = chunk.subarray(0, room);
        }
        if (chunk.byteLength === 0) continue;
        pieces.push(chunk);
        filled += chunk.byteLength;
      }
      // One piece is a chunk shared with the other readers (or a view of one): copied, so the part is its own.
      return pieces.length === 1 ? (pieces[0] as Uint8Array).slice() : concat(pieces, filled);
    },
    async atEnd(): Promise<boolean> {
      if (carried.length > 0) return false;
      const chunk = await next();
      if (chunk) carried.unshift(chunk);
      return chunk === undefined;
    },
    unshift(chunk: Uint8Array) {
      if (chunk.byteLength > 0) carried.unshift(chunk);
    },
    cancel: (error: unknown) => reader.cancel(error).catch(() => {}),
  };
}

function r2Range(range: ByteRange, frameLength: number): R2Range {
  if ("suffix" in range) return { suffix: range.suffix };
  return range.length === undefined
    ? { offset: frameLength + range.offset }
    : { offset: frameLength + range.offset, length: range.length };
}

/**
 * Lets go of a body not used: a small one is read to its end, a large one cancelled (workerd logs a
 * cancelled R2 read as an exception, "pump canceled", though nothing failed).
 */
async function release(body: ReadableStream<Uint8Array>, size: number | undefined): Promise<void> {
  if (size !== undefined && size <= 256 * 1024) {
    await body.pipeTo(new WritableStream()).catch(() => {});
    return;
  }
  await body.cancel().catch(() => {});
}

/** The most bytes a ranged read returned (a suffix or a length), if R2 says. */
function rangeSize(range: R2Range | undefined): number | undefined {
  if (!range) return undefined;
  if ("suffix" in range && range.suffix !== undefined) return range.suffix;
  if ("length" in range && range.length !== undefined) return range.length;
  return undefined;
}

function parseEntry(json: string): StoredEntry | null {
  try {
    const parsed: unknown = JSON.parse(json);
    return isStoredEntry(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function metadataSize(meta: R2Meta): number {
  const encoder = new TextEncoder();
  let size = 0;
  for (const [name, value] of Object.entries(meta)) {
    size += encoder.encode(name).byteLength + encoder.encode(String(value)).byteLength;
  }
  return size;
}
