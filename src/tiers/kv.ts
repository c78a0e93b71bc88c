import { isStoredEntry, type StoredEntry } from "../core/entry";
import { sliceStream } from "../core/http/range";
import { isolateBudget } from "../core/memory-budget";
import { BodyTooLargeError, concat, readAll, splitPrefix, streamOf } from "../core/streams";
import { type ByteRange, type CachedObject, resolveRange, type Tier, type UnknownLength } from "../core/tier";
import { DamagedEntryError } from "../core/verified-body";

/**
 * Tier 2: Workers KV, global and persistent.
 *
 * Layout under `<prefix><key>`:
 * - The record rides in KV metadata (`{e: record}`) when it fits KV's 1024-byte limit; when it does not
 *   (many or long headers), it is written in front of the value as a frame and the metadata says how long
 *   the frame is (`{f: bytes}`). Headers are never dropped to make things fit.
 * - A body up to `chunkSize` (8 MiB) is the rest of the value. A larger one (KV values hold at most 25 MiB) is
 *   split into chunks under `<prefix><key>/<nonce>/<i>`, written first; the record, written last with
 *   `c: {n, id}` in its metadata, is what makes the entry visible, so a body that broke off midway leaves
 *   only unreachable chunks that expire with their TTL.
 * - A ranged get reads only what holds the range: the one value as far as the range's end, or only the
 *   chunks the range falls in (the record says the chunk size, `c.s`).
 * - A body of unknown length is read `chunkSize` bytes at a time and counted (refused past its bound): one
 *   that ends within the first chunk is stored inline; a longer one goes to chunks as it arrives, and the
 *   record, written last, carries the counted length and number of chunks.
 */
export const KV_METADATA_LIMIT = 1024;
const KV_VALUE_LIMIT = 25 * 1024 * 1024;
/** KV's smallest expirationTtl. */
const KV_MIN_TTL = 60;
/**
 * The longest expirationTtl Tiercel asks for: a year. KV refuses a TTL past a signed 32-bit integer (a
 * lifetime of max-age=2147483648, RFC 9111 §1.2.2's cap, is past it), and a tier may drop an entry sooner
 * than its retention anyway; a longer-lived entry is simply fetched again after a year.
 */
export const KV_MAX_TTL = 31_536_000;

/** `s`: the chunk size they were written with (every chunk but the last); absent in older records. */
type Chunks = { n: number; id: string; s?: number };
type KvMetadata = ({ e: StoredEntry } | { f: number }) & { c?: Chunks };

export interface KvTierOptions {
  /** Key prefix, so several tiers (or tests) can share a namespace. */
  prefix?: string;
  /** Bodies longer than this are chunked (at most KV's 25 MiB value limit). */
  chunkSize?: number;
  /**
   * KV takes one write per second per key: a record written again sooner than this (a put or a refresh) by
   * this isolate waits for its slot; one more than two gaps away is refused (the store skips the tier), and so is
   * a variant index that comes too soon. 0: no guard.
   */
  minWriteGapMs?: number;
  now?: () => number;
}

export function kvTier(kv: KVNamespace, options: KvTierOptions = {}): Tier {
  const prefix = options.prefix ?? "c:";
  const chunkSize = Math.min(options.chunkSize ?? 8 * 1024 * 1024, KV_VALUE_LIMIT - 64 * 1024);
  const chunkKey = (key: string, chunks: Chunks, i: number) => `${prefix}${key}/${chunks.id}/${i}`;
  const gap = options.minWriteGapMs ?? 0;
  const now = options.now ?? Date.now;
  const lastWrite = new Map<string, number>();
  /**
   * Claims a slot to write a record key: at once, or `gap` ms after the last write of it by this isolate
   * (waiting for it); refused when that slot is more than two gaps away (writes are queueing up).
   */
  const claimWrite = async (name: string, wait = true) => {
    if (gap <= 0) return;
    const at = now();
    const last = lastWrite.get(name);
    const slot = last === undefined ? at : Math.max(at, last + gap);
    if (slot - at > (wait ? 2 * gap : 0)) throw new KvWriteRateError(`${name} has writes queued for ${slot - at} ms`);
    lastWrite.delete(name);
    lastWrite.set(name, slot);
    // Oldest first out: only the last gap matters.
    for (const [old, when] of lastWrite) {
      if (lastWrite.size <= 10_000 && at - when < gap) break;
      lastWrite.delete(old);
    }
    if (slot > at) await new Promise((resolve) => setTimeout(resolve, slot - at));
  };
  return {
    name: "kv",
    global: true,

    async get(key: string, range?: ByteRange): Promise<CachedObject | null> {
      const { value, metadata } = await kv.getWithMetadata<KvMetadata>(prefix + key, "stream");
      if (value === null) return null;
      let entry: StoredEntry | null = null;
      let rest = value;
      if (metadata && "e" in metadata && isStoredEntry(metadata.e)) {
        entry = metadata.e;
      } else if (metadata && "f" in metadata && Number.isInteger(metadata.f) && metadata.f > 0) {
        const split = await splitPrefix(value, metadata.f);
        rest = split.rest;
        const parsed: unknown = JSON.parse(new TextDecoder().decode(split.prefix));
        if (isStoredEntry(parsed)) entry = parsed;
      }
      if (!entry) {
        await rest.cancel();
        return null;
      }
      const chunks = metadata?.c;
      const wanted = range && resolveRange(range, entry.length);
      if (!chunks) {
        // One value: read only as far as the range's end.
        if (!wanted) return { entry, body: rest };
        return { entry, body: sliceStream(rest, wanted.start, wanted.end), range: wanted };
      }
      await rest.cancel();
      if (!Number.isInteger(chunks.n) || chunks.n < 1 || typeof chunks.id !== "string") return null;
      const keyOf = (i: number) => chunkKey(key, chunks, i);
      const size = chunks.s;
      if (!wanted || !Number.isSafeInteger(size) || size === undefined || size < 1) {
        return { entry, body: chunkedBody(kv, keyOf, chunks.n) };
      }
      // Only the chunks that hold the range are read: a tail of a large object is its last chunk or two.
      const first = Math.floor(wanted.start / size);
      const last = Math.min(chunks.n - 1, Math.floor(wanted.end / size));
      const from = chunkedBody(kv, keyOf, last + 1, first);
      const offset = first * size;
      return { entry, body: sliceStream(from, wanted.start - offset, wanted.end - offset), range: wanted };
    },

    async put(
      key: string,
      given: StoredEntry,
      body: Uint8Array | ReadableStream<Uint8Array>,
      retention: number,
      unknown?: UnknownLength,
    ) {
      const expirationTtl = expirationTtlOf(retention);
      // A variant index is rewritten by every new variant's fill: one that comes too soon is skipped (the next
      // fill writes it again), not queued.
      await claimWrite(prefix + key, given.variants === undefined);
      let chunks: Chunks | undefined;
      let entry = given;
      // Every KV value is written from a buffer of at most `chunkSize` bytes: a put from a stream that
      // breaks off must never leave a partial value behind, and memory stays bounded by the chunk size.
      let inlineBody: Uint8Array = body instanceof Uint8Array ? body : new Uint8Array(0);
      // A streamed body is assembled a chunk at a time: that buffer comes out of the isolate's budget, and
      // with no room this put is skipped (the client is not).
      const assembling = !(body instanceof Uint8Array) && entry.at === undefined;
      const grant = assembling
        ? isolateBudget.take(Math.min(chunkSize, unknown ? unknown.maxBytes : Math.max(0, entry.length)))
        : undefined;
      if (assembling && !grant) {
        await body.cancel("no memory for a chunk").catch(() => {});
        throw new Error("the isolate's memory budget has no room for a KV chunk; not storing");
      }
      try {
        inlineBody = await assemble(inlineBody);
        await writeRecord(kv, prefix + key, entry, inlineBody, chunks, expirationTtl);
      } finally {
        grant?.release();
      }

      async function assemble(inlineBody: Uint8Array): Promise<Uint8Array> {
        if (entry.at !== undefined) {
          // A record whose body is elsewhere (tiers/global.ts): the value is empty, whatever the length says.
          inlineBody = new Uint8Array(0);
        } else if (unknown && !(body instanceof Uint8Array)) {
          const id = crypto.randomUUID();
          const keyOf = (i: number) => chunkKey(key, { n: 0, id }, i);
          const written = await writeCounted(
            kv,
            body,
            { size: chunkSize, max: unknown.maxBytes },
            keyOf,
            expirationTtl,
          );
          entry = { ...given, length: written.total };
          if ("inline" in written) inlineBody = written.inline;
          else chunks = { n: written.n, id, s: chunkSize };
        } else if (!(body instanceof Uint8Array) && entry.length <= chunkSize) {
          inlineBody = await readAll(body, chunkSize);
          if (inlineBody.byteLength !== entry.length) {
            throw new Error(`body has ${inlineBody.byteLength} bytes, its record says ${entry.length}`);
          }
        } else if (entry.length > chunkSize) {
          chunks = { n: Math.ceil(entry.length / chunkSize), id: crypto.randomUUID(), s: chunkSize };
          const source = body instanceof Uint8Array ? streamOf(body) : body;
          const keyOf = (i: number) => chunkKey(key, chunks as Chunks, i);
          await writeChunks(kv, source, { size: chunkSize, total: entry.length }, keyOf, expirationTtl);
          inlineBody = new Uint8Array(0);
        }
        return inlineBody;
      }
    },

    async refresh(key: string, given: StoredEntry, retention: number): Promise<boolean> {
      const { value, metadata } = await kv.getWithMetadata<KvMetadata>(prefix + key, "arrayBuffer");
      if (value === null || !metadata) return false;
      let stored: StoredEntry | null = null;
      let body = new Uint8Array(value);
      if ("e" in metadata && isStoredEntry(metadata.e)) stored = metadata.e;
      else if ("f" in metadata && Number.isInteger(metadata.f) && metadata.f > 0 && metadata.f <= body.byteLength) {
        const parsed: unknown = JSON.parse(new TextDecoder().decode(body.subarray(0, metadata.f)));
        if (isStoredEntry(parsed)) stored = parsed;
        body = body.subarray(metadata.f);
      }
      if (!stored || !sameBody(stored, given)) return false;
      await claimWrite(prefix + key);
      // The record is rewritten with the value it describes; chunks (and a body in R2) are left as they are.
      const entry: StoredEntry = stored.at ? { ...given, at: stored.at } : given;
      await writeRecord(kv, prefix + key, entry, body, metadata.c, expirationTtlOf(retention));
      return true;
    },

    async delete(key: string): Promise<void> {
      // Chunks of a deleted entry are unreachable without their record and expire with their TTL.
      await kv.delete(prefix + key);
    },
  };
}

/** A refused write: writes of the key are queued more than two gaps ahead (KV's limit is one write per second per key). */
export class KvWriteRateError extends Error {
  override readonly name = "KvWriteRateError";
}

function expirationTtlOf(retention: number): number {
  return Math.min(KV_MAX_TTL, Math.max(KV_MIN_TTL, Math.ceil(retention)));
}

/** Whether a refreshed record describes the same stored body as the one there (a 304 keeps the body). */
function sameBody(stored: StoredEntry, given: StoredEntry): boolean {
  return (
    stored.length === given.length &&
    stored.digest === given.digest &&
    stored.etag === given.etag &&
    stored.lastModified === given.lastModified &&
    stored.variants === undefined
  );
}

/** The record (in metadata, or framed in front of the value when it does not fit) and the inline body. */
async function writeRecord(
  kv: KVNamespace,
  name: string,
  entry: StoredEntry,
  inlineBody: Uint8Array,
  chunks: Chunks | undefined,
  expirationTtl: number,
): Promise<void> {
  const inline: KvMetadata = chunks ? { e: entry, c: chunks } : { e: entry };
  if (byteLength(JSON.stringify(inline)) <= KV_METADATA_LIMIT) {
    await kv.put(name, inlineBody, { metadata: inline, expirationTtl });
    return;
  }
  const frame = new TextEncoder().encode(JSON.stringify(entry));
  const framed: KvMetadata = chunks ? { f: frame.byteLength, c: chunks } : { f: frame.byteLength };
  await kv.put(name, concat([frame, inlineBody]), { metadata: framed, expirationTtl });
}

/**
 * Writes a body of exactly `total` bytes as chunks of `size` bytes (the last one shorter), one KV put at a
 * time; a body that ends early or runs past `total` throws before the record that would reveal it is written.
 */
async function writeChunks(
  kv: KVNamespace,
  source: ReadableStream<Uint8Array>,
  { size, total }: { size: number; total: number },
  keyOf: (i: number) => string,
  expirationTtl: number,
): Promise<void> {
  const body = pieces(source, Number.POSITIVE_INFINITY);
  try {
    let written = 0;
    for (let i = 0; written < total; i++) {
      const want = Math.min(size, total - written);
      const part = await body.take(want);
      if (part.byteLength < want) throw new Error(`body ended after ${written + part.byteLength} of ${total} bytes`);
      await kv.put(keyOf(i), part, { expirationTtl });
      written += want;
    }
    if (!(await body.atEnd())) throw new Error(`body is longer than its declared ${total} bytes`);
  } catch (error) {
    await body.cancel(error);
    throw error;
  }
}

/**
 * Writes a body of unknown length, counting it: a body of at most `size` bytes is handed back to be stored
 * inline; a longer one is written as chunks of `size` bytes as it arrives. Throws (before any record could
 * reveal the chunks) if the body errors or runs past `max` bytes.
 */
async function writeCounted(
  kv: KVNamespace,
  source: ReadableStream<Uint8Array>,
  { size, max }: { size: number; max: number },
  keyOf: (i: number) => string,
  expirationTtl: number,
): Promise<{ total: number; inline: Uint8Array } | { total: number; n: number }> {
  const body = pieces(source, max);
  try {
    const first = await body.take(size);
    if (await body.atEnd()) return { total: first.byteLength, inline: first };
    await kv.put(keyOf(0), first, { expirationTtl });
    let n = 1;
    let stored = first.byteLength;
    for (;;) {
      const part = await body.take(size);
      if (part.byteLength === 0) break;
      await kv.put(keyOf(n++), part, { expirationTtl });
      stored += part.byteLength;
    }
    return { total: stored, n };
  } catch (error) {
    await body.cancel(error);
    throw error;
  }
}

/** A body read in pieces of a chosen size, refused (BodyTooLargeError) once it runs past `max` bytes. */
function pieces(source: ReadableStream<Uint8Array>, max: number) {
  const reader = source.getReader();
  let carry: Uint8Array | undefined;
  let ended = false;
  let total = 0;
  const next = async (): Promise<Uint8Array | undefined> => {
    if (carry) {
      const chunk = carry;
      carry = undefined;
      return chunk;
    }
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
    /** Up to `size` bytes; fewer only at the end of the body. */
    async take(size: number): Promise<Uint8Array> {
      const parts: Uint8Array[] = [];
      let filled = 0;
      while (filled < size) {
        let chunk = await next();
        if (!chunk) break;
        const room = size - filled;
        if (chunk.byteLength > room) {
          carry = chunk.subarray(room);
          chunk = chunk.subarray(0, room);
        }
        parts.push(chunk);
        filled += chunk.byteLength;
      }
      return concat(parts, filled);
    },
    /** Whether the body has ended (reads one chunk ahead to know). */
    async atEnd(): Promise<boolean> {
      if (!ended && !carry) carry = await next();
      return ended && !carry;
    },
    cancel: (error: unknown) => reader.cancel(error).catch(() => {}),
  };
}

/** A lazy stream over the chunks of one entry (from chunk `from` to `count - 1`), read one KV value at a time. */
function chunkedBody(
  kv: KVNamespace,
  keyOf: (i: number) => string,
  count: number,
  from = 0,
): ReadableStream<Uint8Array> {
  let index = from;
  let current: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (!current) {
          if (index >= count) return controller.close();
          const value = await kv.get(keyOf(index++), "stream");
          if (value === null) {
            // Damage only this tier can see: the reader drops the entry (see core/verified-body.ts).
            return controller.error(new DamagedEntryError("missing-part", `chunk ${index - 1} of ${count} is missing`));
          }
          current = value.getReader();
        }
        const { done, value } = await current.read();
        if (!done) return controller.enqueue(value);
        current = undefined;
      }
    },
    async cancel(reason) {
      await current?.cancel(reason);
    },
  });
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}
