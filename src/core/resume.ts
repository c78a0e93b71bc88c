import type { StoredEntry } from "./entry";
import type { Exchange } from "./exchange";
import { readChecked } from "./lookup";
import { DetachedError, skipBytes } from "./shield-broadcast";
import type { CachedObject, Tier } from "./tier";

/**
 * A reader of a shield fill that fell behind what the fill still holds (src/core/shield-broadcast.ts), or
 * that joined once its bytes were gone, goes on from the stored copy of this very fill (src/core/shield.ts).
 */

/** The first range a resumed reader reads from the stored copy, and the most it reads at once after that. */
const RESUME_FIRST_BYTES = 1024 * 1024;
const RESUME_MAX_BYTES = 8 * 1024 * 1024;

/**
 * The body of `entry` (the record the fill wrote: same request and response times) under `key` from byte
 * `offset`, from the first of `tiers` that holds that very copy, read range by range as the reader takes
 * it (see `rangesFrom`); null when none holds it. Call it once the store is done.
 */
export async function fromStoredCopy(
  tiers: readonly Tier[],
  key: string,
  entry: Pick<StoredEntry, "responseTime" | "requestTime">,
  context: Pick<Exchange["deps"], "waitUntil" | "log" | "tierTimeoutMs">,
  offset: number,
): Promise<ReadableStream<Uint8Array> | null> {
  const same = (found: CachedObject) =>
    found.entry.responseTime === entry.responseTime && found.entry.requestTime === entry.requestTime;
  for (const tier of tiers) {
    const read = async (at: number, length: number) => {
      const found = await readChecked(tier, key, context, { offset: at, length }).catch(() => null);
      if (!found) return null;
      if (same(found)) return found;
      await found.body.cancel().catch(() => {});
      return null;
    };
    const first = await read(offset, RESUME_FIRST_BYTES);
    if (!first) continue;
    if (first.range && first.entry.length >= 0) return rangesFrom(first.body, first.range, first.entry.length, read);
    // A tier that read the whole body rather than the range: the bytes before `offset` are skipped.
    if (!first.range) return skipBytes(first.body, offset);
    await first.body.cancel().catch(() => {});
    const whole = await readChecked(tier, key, context).catch(() => null);
    if (whole && same(whole)) return skipBytes(whole.body, offset);
    await whole?.body.cancel().catch(() => {});
  }
  return null;
}

/**
 * A stored body from `range.start` to its end, `first` being the stored copy's bytes of `range`, read one
 * range after another as the reader takes them, each twice the last up to RESUME_MAX_BYTES: a reader that
 * goes away after a little has read a little, and no tier is asked for a whole large object at once (one
 * get per range: about a dozen for the rest of a 100 MiB body). A copy that is gone or replaced meanwhile
 * errors the stream (the reader's body is cut short, as by a failed fill).
 */
function rangesFrom(
  first: ReadableStream<Uint8Array>,
  range: { start: number; end: number },
  length: number,
  read: (offset: number, length: number) => Promise<CachedObject | null>,
): ReadableStream<Uint8Array> {
  let reader = first.getReader();
  let next = range.end + 1;
  let size = range.end - range.start + 1;
  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const { done, value } = await reader.read();
          if (!done) {
            controller.enqueue(value);
            return;
          }
          if (next >= length) {
            controller.close();
            return;
          }
          size = Math.min(size * 2, RESUME_MAX_BYTES);
          const found = await read(next, size);
          // The reader went away while the range was asked for: it is not read.
          if (cancelled) {
            await found?.body.cancel().catch(() => {});
            return;
          }
          if (found?.range?.start !== next) {
            await found?.body.cancel().catch(() => {});
            controller.error(new DetachedError(`the stored copy could not be read from byte ${next}`));
            return;
          }
          reader = found.body.getReader();
          next = found.range.end + 1;
        }
      },
      cancel(reason) {
        cancelled = true;
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
