import { isStoredEntry, type StoredEntry } from "../core/entry";
import { countUpTo } from "../core/stream-fanout";
import { type ByteRange, type CachedObject, resolveRange, type Tier, type UnknownLength } from "../core/tier";

/**
 * Tier 1: the data center's Cache API. Entries live under synthetic URLs made from Tiercel's key (never
 * the client's URL), as envelope responses whose `Cache-Control` tells the Cache API how long to keep them.
 *
 * - A buffered body rides in the envelope itself; the record travels base64-encoded in one header.
 * - A streamed (large) body is put under its own URL first, read back and counted, and only then is the
 *   envelope written, pointing at it.
 * - A ranged get asks the Cache API for just those bytes (a `Range` request to `match`, answered 206 by the
 *   Cache API and by workerd's local one) of the envelope's body or of the body it points at. The Cache API can keep part of a body whose stream broke off (seen
 *   in workerd), and its put does not always say so; the count is what makes a partial body unreachable.
 *   A body of unknown length is counted on its way in (and refused past its bound) and must have ended
 *   cleanly; the envelope, written last, records the counted length.
 * - Every copy has an id, new on every put (`x-tiercel-copy`, or the streamed body's id), handed back as
 *   `copy`: a Cache API entry never changes once written, so a reader that checked a copy whole once need
 *   not hash it again (docs/architecture.md, "The stored entry").
 */
export interface EdgeTierOptions {
  /** Host of the synthetic key URLs; only its uniqueness matters. */
  keyHost?: string;
}

const ENTRY_HEADER = "x-tiercel-entry";
const BODY_HEADER = "x-tiercel-body";
/** A buffered copy's id, new on every put (a streamed copy's id is its body's). */
const COPY_HEADER = "x-tiercel-copy";

/** `cache` may be a promise (as from `caches.open`): if it rejects, every operation throws and is skipped. */
export function edgeTier(cache: Cache | Promise<Cache>, options: EdgeTierOptions = {}): Tier {
  const keyHost = options.keyHost ?? "cache.tiercel.internal";
  const urlFor = (key: string) => `https://${keyHost}/v1/${key}`;
  const bodyUrlFor = (key: string, id: string) => `https://${keyHost}/v1/${key}/body/${id}`;

  return {
    name: "edge",

    async get(key: string, range?: ByteRange): Promise<CachedObject | null> {
      const store = await cache;
      const field = range && rangeField(range);
      // A buffered body rides in the envelope: the range is asked of the envelope itself.
      let response = await store.match(ranged(urlFor(key), field));
      if (response && response.status === 416) {
        await response.body?.cancel();
        response = await store.match(urlFor(key));
      }
      if (!response) return null;
      const entry = decodeEntry(response.headers.get(ENTRY_HEADER));
      const bodyId = response.headers.get(BODY_HEADER);
      if (!entry || !response.body) {
        await response.body?.cancel();
        return null;
      }
      if (!bodyId) {
        const found = await withRange(entry, response, range, () => store.match(urlFor(key)));
        const copy = response.headers.get(COPY_HEADER);
        if (found && copy) found.copy = copy;
        return found;
      }
      await response.body.cancel();
      const bodyUrl = bodyUrlFor(key, bodyId);
      const body = await store.match(ranged(bodyUrl, field));
      if (!body?.body) return null;
      // Checked against the record (length, digest) by the reader, as every tier's body is.
      const found = await withRange(entry, body, range, () => store.match(bodyUrl));
      if (found) found.copy = bodyId;
      return found;
    },

    async put(
      key: string,
      given: StoredEntry,
      body: Uint8Array | ReadableStream<Uint8Array>,
      retention: number,
      unknown?: UnknownLength,
    ) {
      const store = await cache;
      const maxAge = `public, max-age=${Math.max(1, Math.ceil(retention))}`;
      if (body instanceof Uint8Array) {
        const headers = {
          "cache-control": maxAge,
          [ENTRY_HEADER]: encodeEntry(given),
          [COPY_HEADER]: crypto.randomUUID(),
        };
        await store.put(urlFor(key), new Response(body, { headers }));
        return;
      }
      const id = crypto.randomUUID();
      const bodyUrl = bodyUrlFor(key, id);
      // The Cache API is fed a copy that always ends cleanly (counted, and bounded by the declared length or,
      // for a body of unknown length, by the put's bound): handed a body that breaks off, workerd's own upload
      // reports the error as an uncaught rejection, whatever the caller does with the put. The break is
      // Tiercel's to report: what the edge kept is deleted and the put rejects with the body's error.
      const count = countUpTo(body, unknown ? unknown.maxBytes : given.length);
      // A known length goes with the copy (Content-Length), so the Cache API takes it in large writes rather
      // than as a chunked upload (locally a 30 MiB body went in 7,845 writes of 4 KiB without it, and its miss
      // took 3 to 4 times as long). A copy that ends short of it then fails the put (the runtime's own length
      // check), which is reported below as the body's error. An empty body goes without: it gains nothing,
      // and the local Cache API never settles a put of an empty body that declares its length.
      const sized: Record<string, string> = { "cache-control": maxAge };
      if (!unknown && given.length > 0) sized["content-length"] = String(given.length);
      try {
        await store.put(bodyUrl, new Response(count.stream, { headers: sized }));
      } catch (error) {
        await store.delete(bodyUrl);
        throw count.broke() ?? error;
      }
      const failure = count.failure();
      if (failure !== undefined) {
        await store.delete(bodyUrl);
        throw failure;
      }
      const entry = unknown ? { ...given, length: count.bytes() } : given;
      const length = await storedLength(store, bodyUrl);
      if (length !== entry.length) {
        await store.delete(bodyUrl);
        throw new Error(`the edge kept ${length} of ${entry.length} bytes; not storing`);
      }
      const headers = { "cache-control": maxAge, [ENTRY_HEADER]: encodeEntry(entry), [BODY_HEADER]: id };
      await store.put(urlFor(key), new Response(null, { headers }));
    },

    async delete(key: string): Promise<void> {
      // A streamed body left behind is unreachable without its envelope and expires with it.
      await (await cache).delete(urlFor(key));
    },
  };
}

/** `Range` for a ranged match (RFC 9110 §14.1.1), or undefined for a range that cannot select a byte. */
function rangeField(range: ByteRange): string | undefined {
  if ("suffix" in range) return range.suffix > 0 ? `bytes=-${range.suffix}` : undefined;
  if (range.length === undefined) return `bytes=${range.offset}-`;
  return range.length > 0 ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined;
}

function ranged(url: string, field: string | undefined): Request | string {
  return field ? new Request(url, { headers: { range: field } }) : url;
}

/**
 * What a (possibly ranged) match found: a 206 whose Content-Range is the range the record's length
 * resolves to is that range; anything else (a 200, a range that selects nothing, or one that does not add
 * up) is read again whole.
 */
async function withRange(
  entry: StoredEntry,
  response: Response,
  range: ByteRange | undefined,
  whole: () => Promise<Response | undefined>,
): Promise<CachedObject | null> {
  const body = response.body;
  if (!body) return null;
  const wanted = range && resolveRange(range, entry.length);
  if (response.status !== 206) {
    // A range that covers the whole body (a suffix longer than it) is answered 200: it is still that range.
    const all = wanted && wanted.start === 0 && wanted.end === entry.length - 1;
    return all ? { entry, body, range: wanted } : { entry, body };
  }
  const got = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get("content-range") ?? "");
  if (
    wanted &&
    got &&
    Number(got[1]) === wanted.start &&
    Number(got[2]) === wanted.end &&
    Number(got[3]) === entry.length
  ) {
    return { entry, body, range: wanted };
  }
  await body.cancel();
  const again = await whole();
  return again?.body ? { entry, body: again.body } : null;
}

/**
 * How many bytes the Cache API kept under `url`: asked for its last byte, the 206's `Content-Range` says the
 * whole length without the body being read back (a 64 MiB body is not read again to be counted); a cache
 * that answers whole is counted.
 */
async function storedLength(store: Cache, url: string): Promise<number> {
  const last = await store.match(new Request(url, { headers: { range: "bytes=-1" } }));
  if (!last?.body) return -1;
  const total = /^bytes \d+-\d+\/(\d+)$/.exec(last.headers.get("content-range") ?? "")?.[1];
  if (last.status === 206 && total !== undefined) {
    await last.body.cancel();
    return Number(total);
  }
  return countBytes(last.body);
}

async function countBytes(stream: ReadableStream<Uint8Array>): Promise<number> {
  let total = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return total;
    total += value.byteLength;
  }
}

function encodeEntry(entry: StoredEntry): string {
  const json = JSON.stringify(entry);
  // An ASCII record is its own UTF-8 (btoa takes it as it is); anything else is encoded first.
  if (isAscii(json)) return btoa(json);
  const bytes = new TextEncoder().encode(json);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Records decoded lately, by their header value: an edge hit of a hot object parses its record once per
 * isolate, not on every hit (it was the largest share of a hit's own JavaScript, 8–10%). The value is the
 * whole record, so a changed record is a new key; a stale one is simply never asked for again. Entries are
 * frozen, since every hit of the copy shares one. Bounded: at most `MAX_DECODED` records of up to
 * `MAX_DECODED_CHARS` characters each (about 1 MiB of header text), emptied when full.
 */
const decoded = new Map<string, StoredEntry>();
const MAX_DECODED = 256;
const MAX_DECODED_CHARS = 4096;

function decodeEntry(value: string | null): StoredEntry | null {
  if (!value) return null;
  const known = decoded.get(value);
  if (known !== undefined) return known;
  const entry = parseEntry(value);
  if (entry && value.length <= MAX_DECODED_CHARS) {
    if (decoded.size >= MAX_DECODED) decoded.clear();
    decoded.set(value, frozen(entry));
  }
  return entry;
}

/** `entry` and every array and object in it, frozen (the record is plain JSON: no cycles). */
function frozen<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) frozen(inner);
    Object.freeze(value);
  }
  return value;
}

function parseEntry(value: string): StoredEntry | null {
  try {
    const binary = atob(value);
    // On every edge hit: no UTF-8 decoding at all for a record that is ASCII (the common case: a binary string
    // of ASCII bytes is already the text), else a plain loop (no iterator, no callback per byte).
    let text = binary;
    if (!isAscii(binary)) {
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      text = new TextDecoder().decode(bytes);
    }
    const parsed: unknown = JSON.parse(text);
    return isStoredEntry(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}
