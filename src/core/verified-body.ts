import { byobReaderOf, largeChunkReader, sha256Field, sizedStream } from "./streams";

/**
 * Checking a body read back from a tier against its record as it streams, so a damaged entry (bytes lost,
 * added or changed in storage) is never served as a clean, complete answer. Web Streams only, plus the
 * runtime's streaming SHA-256 (see `verifiedBody`).
 */

/** How a stored body failed its record. */
export type Damage = "short" | "long" | "digest" | "missing-part" | "bad-record";

/**
 * A stored body that does not match its record. Tiers raise it too, for damage only they can see (a KV
 * chunk that is gone), so that the reader drops the entry the same way.
 */
export class DamagedEntryError extends Error {
  override readonly name = "DamagedEntryError";

  constructor(
    readonly damage: Damage,
    message: string,
  ) {
    super(message);
  }
}

/** What the record says the body is. */
export interface ExpectedBody {
  /** Bytes, exactly. */
  length: number;
  /** `sha-256=:<base64>:`, or "" (or another algorithm) when there is none to check. */
  digest: string;
}

/** RFC 9530 §2 field syntax for a SHA-256 digest, the only algorithm Tiercel records. */
const SHA_256 = /^sha-256=:[A-Za-z0-9+/]{43}=:$/;

/**
 * The checks a stored body's bytes go through as they pass (`verifiedBody`, `verifiedPumped`): counted against
 * the record's length, and hashed when the record has a SHA-256 digest (the runtime's streaming
 * `crypto.DigestStream`). Each method says what damage it found, if any; the caller reports it.
 */
function bodyCheck(expected: ExpectedBody) {
  const { length } = expected;
  const hasher = SHA_256.test(expected.digest) ? new crypto.DigestStream("SHA-256") : undefined;
  // The digest promise rejects when the hash is abandoned (damage, a source error, a cancel): not a failure.
  hasher?.digest.catch(() => {});
  const hash = hasher?.getWriter();
  let received = 0;
  return {
    /** Counts and hashes `chunk`; past the record's length, "long" damage (and the chunk is not hashed). */
    async take(chunk: Uint8Array): Promise<DamagedEntryError | undefined> {
      received += chunk.byteLength;
      if (received > length) {
        return new DamagedEntryError("long", `stored body is longer than its record's ${length} bytes`);
      }
      if (hash) await hash.write(chunk);
      return undefined;
    },
    /** The chunks taken so far are the whole body (the last of them is to be held back until `end`). */
    get whole(): boolean {
      return received === length;
    },
    /** At the source's end: "short" or "digest" damage, if any. */
    async end(): Promise<DamagedEntryError | undefined> {
      if (received < length) {
        return new DamagedEntryError("short", `stored body ended after ${received} of ${length} bytes`);
      }
      if (hash && hasher) {
        await hash.close();
        const actual = sha256Field(await hasher.digest);
        if (actual !== expected.digest) {
          return new DamagedEntryError("digest", `stored body hashes to ${actual}, its record says ${expected.digest}`);
        }
      }
      return undefined;
    },
    /** Gives the hash up (damage, a source error, a cancel). */
    abort(reason: unknown): void {
      hash?.abort(reason).catch(() => {});
    },
  };
}

/**
 * Passes `source` through unchanged while checking it against `expected`: more bytes than `length` error
 * the stream on the chunk that overruns (which is not passed on), fewer error it at the end, and when a
 * SHA-256 digest is recorded the bytes must hash to it. The chunk that completes `length` is held back
 * until the source has ended and every check has passed: a consumer that counts bytes (a client that was
 * told `Content-Length`) therefore never receives a whole-looking body that was not, it sees an error.
 *
 * On damage the stream errors with a `DamagedEntryError` and `onDamaged` is called once, with that error; once
 * every check has passed (before the last chunk is handed on), `onChecked` is called once. A
 * source that itself errors with a `DamagedEntryError` counts as damage too. Any other source error is passed
 * on as it is (a tier read that failed midway says nothing about the stored bytes), and cancelling cancels the
 * source; neither calls `onDamaged`.
 *
 * The digest costs one SHA-256 pass over the body, computed as it streams with `crypto.DigestStream` (the
 * Workers runtime's incremental hash, an extension of Web Crypto): no copy of the body is kept, only the
 * held-back chunk. Digests are recorded for buffered bodies only (up to the 4 MiB buffer), so that is the
 * most one hit ever hashes.
 */
export function verifiedBody(
  source: ReadableStream<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): ReadableStream<Uint8Array> {
  const { length } = expected;
  // Large chunks (streams.ts): a large hit's checks run once per chunk read, not once per few KiB.
  const reader = largeChunkReader(source);
  const check = bodyCheck(expected);
  let held: Uint8Array | undefined;
  let reported = false;

  const damaged = (error: DamagedEntryError): DamagedEntryError => {
    if (!reported) {
      reported = true;
      onDamaged(error);
    }
    check.abort(error);
    return error;
  };

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!Number.isSafeInteger(length) || length < 0) {
        const error = damaged(new DamagedEntryError("bad-record", `the record's length ${length} is not a length`));
        await reader.cancel(error).catch(() => {});
        throw error;
      }
      // Each pull enqueues a chunk, closes or throws (which errors the stream): never returns with nothing.
      for (;;) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          if (error instanceof DamagedEntryError) damaged(error);
          else check.abort(error);
          throw error;
        }
        if (result.done) {
          const damage = await check.end();
          if (damage) throw damaged(damage);
          onChecked?.();
          if (held) controller.enqueue(held);
          controller.close();
          return;
        }
        const chunk = result.value;
        if (chunk.byteLength === 0) continue;
        // Hashed before it is handed on: a consumer may transfer the buffer once it has it.
        const overrun = await check.take(chunk);
        if (overrun) {
          const error = damaged(overrun);
          await reader.cancel(error).catch(() => {});
          throw error;
        }
        if (check.whole) {
          held = chunk;
          continue;
        }
        controller.enqueue(chunk);
        return;
      }
    },
    cancel(reason) {
      check.abort(reason);
      return reader.cancel(reason);
    },
  });
}

/**
 * Bodies with a recorded SHA-256 digest up to this size are checked whole (`verifiedWhole`) rather than as they
 * stream. Digests are recorded only for buffered bodies (the 4 MiB buffer), so this covers most of them.
 */
export const WHOLE_CHECK_MAX_BYTES = 1024 * 1024;

/**
 * The checked body for an entry read from a tier: `verifiedWhole` for a digested body up to
 * `WHOLE_CHECK_MAX_BYTES` (the common small hit: one hash over one buffer, one chunk handed on), else
 * `verifiedBody` (streamed, so a large body's first bytes do not wait for its last).
 */
export function checkedBody(
  source: ReadableStream<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): ReadableStream<Uint8Array> {
  const whole =
    SHA_256.test(expected.digest) &&
    Number.isSafeInteger(expected.length) &&
    expected.length >= 0 &&
    expected.length <= WHOLE_CHECK_MAX_BYTES;
  return whole
    ? verifiedWhole(source, expected, onDamaged, onChecked)
    : verifiedBody(source, expected, onDamaged, onChecked);
}

/**
 * The same checks as `verifiedBody` (length, and the SHA-256 digest when one is recorded), with the same errors
 * and the same `onDamaged` call, but made on the whole body before any of it is passed on: the first read
 * reads the source to its end (erroring, and cancelling the source, on the first chunk past `length`), hashes it
 * in one call, and only then hands the body on as one chunk. Nothing is read until the stream is, so an answer
 * that never reads the body (HEAD, 304) never reads the entry. Costs one copy of a body of at most
 * `expected.length` bytes; meant for small bodies (`checkedBody` picks it).
 */
export function verifiedWhole(
  source: ReadableStream<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): ReadableStream<Uint8Array> {
  const { length } = expected;
  let started = false;
  let reported = false;
  const damaged = (error: DamagedEntryError): DamagedEntryError => {
    if (!reported) {
      reported = true;
      onDamaged(error);
    }
    return error;
  };

  /** Reads and checks the whole body once: the bytes, or the damage (reported) or the source's error. */
  const readWhole = async (): Promise<Uint8Array> => {
    if (started) throw new Error("verifiedWhole: the body was already read");
    started = true;
    wholeReads.delete(stream);
    if (!Number.isSafeInteger(length) || length < 0) {
      const error = damaged(new DamagedEntryError("bad-record", `the record's length ${length} is not a length`));
      await source.cancel(error).catch(() => {});
      throw error;
    }
    // One native read of the whole body (a body of at most `length` bytes, or a damaged one: whatever the tier
    // holds under one small entry), instead of a JavaScript read per chunk.
    let body: Uint8Array;
    try {
      body = new Uint8Array(await new Response(source).arrayBuffer());
    } catch (error) {
      if (error instanceof DamagedEntryError) damaged(error);
      throw error;
    }
    const received = body.byteLength;
    if (received > length) {
      throw damaged(new DamagedEntryError("long", `stored body is longer than its record's ${length} bytes`));
    }
    if (received < length) {
      throw damaged(new DamagedEntryError("short", `stored body ended after ${received} of ${length} bytes`));
    }
    if (SHA_256.test(expected.digest)) {
      const actual = sha256Field(await crypto.subtle.digest("SHA-256", body));
      if (actual !== expected.digest) {
        throw damaged(
          new DamagedEntryError("digest", `stored body hashes to ${actual}, its record says ${expected.digest}`),
        );
      }
    }
    onChecked?.();
    return body;
  };

  const stream: ReadableStream<Uint8Array> = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const body = await readWhole();
        if (body.byteLength > 0) controller.enqueue(body);
        controller.close();
      },
      cancel(reason) {
        // Once the read has started it finishes on its own (it is bounded by the entry); before, the source
        // is cancelled (an answer that never reads its body).
        if (!started) return source.cancel(reason);
      },
    },
    // No read ahead: the source is read when the answer's body is, never for an answer without one.
    { highWaterMark: 0 },
  );
  wholeReads.set(stream, readWhole);
  return stream;
}

/** The whole-body reads of `verifiedWhole` streams not read yet (see `takeWhole`). */
const wholeReads = new WeakMap<ReadableStream<Uint8Array>, () => Promise<Uint8Array>>();

/**
 * For a stream made by `verifiedWhole` and not read yet: the read that gives its whole checked body as one
 * buffer (rejecting as the stream would error, damage reported the same way), so an answer can be sent from
 * the bytes themselves, with no stream in between. Taking it means the stream itself is never read.
 * Undefined for any other stream.
 */
export function takeWhole(stream: ReadableStream<Uint8Array>): (() => Promise<Uint8Array>) | undefined {
  const read = wholeReads.get(stream);
  if (!read || stream.locked) return undefined;
  wholeReads.delete(stream);
  return read;
}

/** Bodies a reader hands on unchecked because they were checked before (see `readChecked` in lookup.ts). */
const checkedBefore = new WeakSet<ReadableStream<Uint8Array>>();

/** Marks `stream` as the body of a stored copy already checked whole: see `wasChecked`. */
export function checkedAlready(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  checkedBefore.add(stream);
  return stream;
}

/**
 * Whether `stream` is the unread body of a copy checked whole before (an edge copy, which never changes once
 * written): its bytes are the ones that checked out, so an answer may hand it to the runtime as it is.
 */
export function wasChecked(stream: ReadableStream<Uint8Array>): boolean {
  return checkedBefore.has(stream) && !stream.locked;
}

/**
 * Bodies over this many bytes read back from a tier are checked by `verifiedPumped` (lookup.ts), so that a
 * large hit's bytes stay in buffers the runtime owns instead of becoming a new JavaScript buffer per read.
 */
export const PUMPED_MIN_BYTES = 1024 * 1024;

/** The size of each of the two buffers `verifiedPumped` reads into, over and over. */
export const PUMP_BUFFER_BYTES = 256 * 1024;

/** The runtime's `FixedLengthStream` (workerd), or undefined elsewhere. */
function fixedLengthStream(): (new (length: number) => TransformStream<Uint8Array, Uint8Array>) | undefined {
  return (globalThis as { FixedLengthStream?: new (length: number) => TransformStream<Uint8Array, Uint8Array> })
    .FixedLengthStream;
}

/**
 * The checks of `verifiedBody` (length, the SHA-256 digest when one is recorded, the chunk that completes
 * `length` held back until the source has ended and every check has passed), made while the body is pumped
 * into the runtime's `FixedLengthStream(expected.length)`, whose readable side is returned: a runtime stream
 * that declares its length, so a client's answer needs no copy of it (`forClient` passes it on as it is).
 *
 * A runtime body (a byte stream) is read with a BYOB reader into two buffers of `PUMP_BUFFER_BYTES`, used in
 * turn and over again, so the body's bytes never become garbage in the isolate (every read of a default reader
 * is a new buffer, which the allocator keeps after it is collected); any other source is read chunk by chunk.
 * The runtime reads a written chunk from the buffer itself, so a buffer is read into again only once its write
 * has resolved (the runtime has taken its bytes).
 *
 * On damage (or a record whose length is not one) `onDamaged` is called once with the `DamagedEntryError` and
 * the returned stream errors with the runtime's error; a source's `DamagedEntryError` counts as damage too.
 * Any other source error errors the stream without calling it damage, and a consumer's cancel cancels the
 * source. `onChecked` is called once every check has passed, before the last chunk is handed on. Outside the
 * Workers runtime (no `FixedLengthStream`) this is `verifiedBody`.
 */
export function verifiedPumped(
  source: ReadableStream<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): ReadableStream<Uint8Array> {
  const { length } = expected;
  const FixedLength = fixedLengthStream();
  // A length that is not one is damage, reported and errored as verifiedBody does it.
  if (!FixedLength || !Number.isSafeInteger(length) || length < 0) {
    return verifiedBody(source, expected, onDamaged, onChecked);
  }
  const sized = new FixedLength(length);
  pump(source, sized.writable.getWriter(), expected, onDamaged, onChecked).catch(() => {});
  return sizedStream(sized.readable, length);
}

/** Reads `source` into `writer` for `verifiedPumped`; settles once the body was handed on whole, or not. */
async function pump(
  source: ReadableStream<Uint8Array>,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): Promise<void> {
  const check = bodyCheck(expected);
  const reader = pumpReader(source);
  /** The write in flight (one at a time) and the buffer it reads from. */
  let writing: { done: Promise<void>; slot: number } | undefined;
  let held: { chunk: Uint8Array; slot: number } | undefined;
  let first = true;

  /** Ends the pump with `error`: the consumer sees the runtime's error, the source is cancelled. */
  const fail = async (error: unknown, cancelSource: boolean) => {
    check.abort(error);
    writer.abort(error).catch(() => {});
    if (cancelSource) await reader.cancel(error).catch(() => {});
  };
  const damaged = (error: DamagedEntryError) => {
    onDamaged(error);
    return fail(error, true);
  };
  /** Waits for the write that reads from `slot`, if there is one, so that the buffer may be used again. */
  const release = async (slot: number) => {
    if (writing?.slot !== slot) return;
    const { done } = writing;
    writing = undefined;
    await done;
  };

  try {
    for (;;) {
      // The buffer neither the write in flight nor the held-back chunk uses (each uses one, never both).
      const slot = held ? 1 - held.slot : writing ? 1 - writing.slot : 0;
      await release(slot);
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read(slot);
      } catch (error) {
        if (error instanceof DamagedEntryError) onDamaged(error);
        return await fail(error, false);
      }
      if (result.done) {
        const damage = await check.end();
        if (damage) return await damaged(damage);
        onChecked?.();
        if (writing) await writing.done;
        if (held) await writer.write(held.chunk);
        await writer.close();
        return;
      }
      const chunk = result.value;
      if (chunk.byteLength === 0) continue;
      const overrun = await check.take(chunk);
      if (overrun) return await damaged(overrun);
      if (check.whole) {
        held = { chunk, slot };
        continue;
      }
      // One write at a time: the previous one has resolved before the next is made.
      if (writing) await writing.done;
      const done = writer.write(chunk);
      // Awaited before the buffer is used again; a rejection met meanwhile (a cancel) is handled there.
      done.catch(() => {});
      writing = { done, slot };
      // Nothing past the first chunk is read until the consumer has taken it: an answer that never reads its
      // body (HEAD, 304: it cancels it) reads no more of the entry than verifiedBody would, one chunk.
      if (first) {
        first = false;
        await release(slot);
      }
    }
  } catch (error) {
    // A write that failed: the consumer cancelled (or the runtime gave up on the stream). Not damage.
    await fail(error, true);
  }
}

/**
 * Reads for `pump`: into one of two reused buffers (by slot) through a BYOB reader where `source` is a byte
 * stream, else chunk by chunk from its default reader (each chunk is the source's own, not reused).
 */
function pumpReader(source: ReadableStream<Uint8Array>): {
  read(slot: number): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
} {
  const byob = byobReaderOf(source);
  if (!byob) {
    const reader = source.getReader();
    return { read: () => reader.read(), cancel: (reason) => reader.cancel(reason) };
  }
  const reader = byob;
  /** The two buffers; a BYOB read transfers its buffer and hands back a new one over the same memory. */
  const buffers: (ArrayBuffer | undefined)[] = [undefined, undefined];
  return {
    cancel: (reason) => reader.cancel(reason),
    async read(slot) {
      const buffer = buffers[slot] ?? new ArrayBuffer(PUMP_BUFFER_BYTES);
      buffers[slot] = undefined;
      const result = await reader.read(new Uint8Array(buffer));
      if (result.value) buffers[slot] = result.value.buffer as ArrayBuffer;
      if (result.done) return { done: true, value: undefined };
      return { done: false, value: result.value as Uint8Array };
    },
  };
}
