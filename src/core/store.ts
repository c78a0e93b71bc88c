import { setBounded } from "./bounded";
import type { Shared } from "./collapse";
import { withDeadline } from "./deadline";
import { retentionOf, type StoredEntry, type VariantIndex } from "./entry";
import { describe, type Exchange } from "./exchange";
import { isolateBudget, STORE_LOOK_AHEAD_BYTES } from "./memory-budget";
import { REVALIDATION_KEEP } from "./policy";
import { type FanOutOptions, fanOut, fillTap, verifyLength } from "./stream-fanout";
import { BodyTooLargeError, cancelIfStalled, readAll, readAtMost, sha256Digest, teeStream } from "./streams";
import type { Place, Tier } from "./tier";

/** What to store, and where. */
export interface StoreTarget {
  /** The key the entry lives under: the variant's key when the response varies. */
  key: string;
  /** The record; `length` and `digest` are filled in here for buffered bodies. */
  entry: StoredEntry;
  /** The body length the response declared, if it declared one that can be checked. */
  declaredLength: number | undefined;
  /** The entry's length and digest are known (a refill) and the bytes must match them. */
  verify: boolean;
  tiers: Tier[];
  /** For a response that varies: the index to write at the base key. */
  index?: VariantIndex;
  /** The selecting values of the request that produced it, for collapsed waiters. */
  values: string;
}

/**
 * Splits a body between the client and the tiers. The client's stream starts at once; the store runs in
 * the background and settles with what waiters of a collapsed request can use.
 *
 * - Small bodies (declared up to `maxBufferBytes`) are teed and buffered once: their length is checked
 *   against the declared one, their digest computed, and every tier gets one put.
 * - Larger bodies with a declared length are fanned out to the client and every tier at the pace of the
 *   slowest reader, so memory stays flat; each tier's copy is length-checked on the way, so a body that
 *   broke off or ended short fails that put and nothing is stored. A tier that stops reading is cut loose.
 * - Bodies with no declared length (a decoded body, or one sent chunked without a length) are fanned out to
 *   the client and the store. Up to `maxBufferBytes` they are buffered as above; past that, the store turns
 *   into a streamed one of unknown length: each tier counts the bytes as it writes them and writes the
 *   record last with the counted length, refusing a body past the object limit. A body that breaks off
 *   fails every put, so nothing reachable is ever incomplete.
 * - Anything else (declared larger than the object limit) passes through unstored.
 */
export function storeBody(
  ex: Exchange,
  target: StoreTarget,
  body: ReadableStream<Uint8Array>,
): {
  client: ReadableStream<Uint8Array>;
  outcome: Promise<Shared>;
  settled: Promise<Shared>;
  storing: boolean;
  /** Why nothing is stored, when `storing` is false: "memory" or "too-large". */
  skipped?: "memory" | "too-large";
} {
  const { deps } = ex;
  const declared = target.declaredLength;
  // The site may store less than the Worker-wide limit.
  const maxObject = Math.min(deps.maxObjectBytes, ex.site.limits.maxObjectBytes ?? Number.POSITIVE_INFINITY);
  const tooLarge = declared !== undefined && declared > maxObject;
  if (declared === undefined && !target.verify && target.tiers.length > 0 && maxObject > deps.maxBufferBytes) {
    // The client's pace is the store's (as for any streamed store), so memory stays flat past the buffer.
    const [client, copy] = fanOut(body, 2, storeFollowers(ex, target, ["every tier"])) as [
      ReadableStream<Uint8Array>,
      ReadableStream<Uint8Array>,
    ];
    let overBuffer!: (shared: Shared) => void;
    const streaming = new Promise<Shared>((resolve) => {
      overBuffer = resolve;
    });
    const outcome = storeUnknownLength(ex, target, copy, maxObject, () => overBuffer({ kind: "none" }));
    // Collapsed waiters get a buffered entry, or are told to go to the origin once the body outgrows the buffer.
    return { client, outcome, settled: Promise.race([outcome, streaming]), storing: true };
  }
  if (!tooLarge && (declared === undefined || declared <= deps.maxBufferBytes)) {
    // The buffer comes out of the isolate's budget; past it the body streams through unstored.
    const grant = isolateBudget.take(declared ?? deps.maxBufferBytes);
    if (!grant) {
      deps.log("store.skipped", { key: target.key, reason: "memory", held: isolateBudget.held });
      const none = Promise.resolve<Shared>({ kind: "none" });
      return { client: body, outcome: none, settled: none, storing: false, skipped: "memory" };
    }
    const [client, copy] = teeStream(body);
    const outcome = storeBuffered(ex, target, copy, Math.min(deps.maxBufferBytes, maxObject)).finally(grant.release);
    return {
      client,
      outcome,
      settled: outcome,
      storing: true,
    };
  }
  if (tooLarge || declared === undefined || target.tiers.length === 0) {
    deps.log("store.skipped", { key: target.key, reason: "too-large", length: declared });
    const none = Promise.resolve<Shared>({ kind: "none" });
    return { client: body, outcome: none, settled: none, storing: false };
  }
  if (invalidatedAfter(deps, [target.key, ex.baseKey], target.entry.requestTime)) {
    const none = Promise.resolve<Shared>({ kind: "none" });
    return { client: body, outcome: none, settled: none, storing: false };
  }
  // The client sets the pace; each tier follows with a bounded look-ahead and gives up past it. One more
  // follower, the tap, lets later requests for the same object in this isolate join this fill (collapse.ts).
  const names = [...target.tiers.map((tier) => tier.name), "joiners"];
  const [client, ...copies] = fanOut(body, 1 + names.length, storeFollowers(ex, target, names));
  const tap = fillTap(copies[target.tiers.length] as ReadableStream<Uint8Array>, isolateBudget);
  const entry = { ...target.entry, length: declared };
  const retention = retentionOf(entry, deps.now());
  const puts = target.tiers.map(async (tier, i) => {
    const copy = copies[i] as ReadableStream<Uint8Array>;
    const checked = cancelIfStalled(copy, deps.tierTimeoutMs * 5).pipeThrough(verifyLength(declared));
    await putCounted(ex, tier, target.key, entry, checked, retention, undefined, placeFor(ex, declared));
    if (target.index)
      await putCounted(
        ex,
        tier,
        ex.baseKey,
        indexEntry(entry, target.index),
        new Uint8Array(0),
        indexRetention(retention),
      );
  });
  const results = Promise.allSettled(puts).then((results) => {
    results.forEach((result, i) => {
      if (result.status === "rejected") {
        deps.log("tier.skipped", {
          tier: target.tiers[i]?.name,
          op: "put",
          key: target.key,
          error: describe(result.reason),
        });
      }
    });
    return results.some((result) => result.status === "fulfilled");
  });
  // Collapsed waiters join the fill as it streams: their range from the tap, or the tiers once it is stored.
  const streaming: Shared = { kind: "streaming", entry, values: target.values, tap, stored: results };
  return {
    client: client as ReadableStream<Uint8Array>,
    outcome: results.then((): Shared => ({ kind: "none" })),
    settled: Promise.resolve(streaming),
    storing: true,
  };
}

/**
 * Fan-out options for a body split between the client (branch 0) and the store branches after it (`names`,
 * for the logs): the stores follow the client with a look-ahead out of the isolate budget, and one that falls
 * further behind gives up (logged `store.skipped`, reason `fell-behind`); its put then fails and stores nothing.
 */
function storeFollowers(ex: Exchange, target: Pick<StoreTarget, "key">, names: string[]): FanOutOptions {
  const { deps } = ex;
  // A key whose stores fell behind lately is stored this time at the stores' pace (the client waits for
  // them, as a store is never skipped twice in a row): otherwise an object larger than the look-ahead, asked
  // by clients faster than the tiers, would never be stored. The tap (a joiner's view) always follows.
  // In the shield the stores follow the shield's readers as they follow a client, and set the pace once no
  // reader paces its fan-out (`storesPace`): a store dropped because the readers went away would leave
  // readers detached later waiting for a copy that never comes.
  const paced = fellBehindLately(target.key, deps.now());
  return {
    followers: names.map((_, i) => i + 1).filter((i) => !paced || names[i - 1] === "joiners"),
    lookAheadBytes: deps.storeLookAheadBytes ?? STORE_LOOK_AHEAD_BYTES,
    budget: isolateBudget,
    ...(ex.storesPace ? { followersPace: ex.storesPace } : {}),
    onFellBehind: (index, queued) => {
      const tier = names[index - 1];
      if (tier !== "joiners") rememberFellBehind(target.key, deps.now());
      deps.log("store.skipped", { key: target.key, reason: "fell-behind", tier, queued, held: isolateBudget.held });
    },
  };
}

/** Keys whose stores fell behind their client in this isolate, and when (the last 10,000, an hour at most). */
const fellBehind = new Map<string, number>();
const FELL_BEHIND_FOR_MS = 3_600_000;

function rememberFellBehind(key: string, now: number): void {
  setBounded(fellBehind, key, now, 10_000);
}

/** True once per key that fell behind within the hour: the next fill of it is paced by its stores. */
function fellBehindLately(key: string, now: number): boolean {
  const at = fellBehind.get(key);
  if (at === undefined) return false;
  fellBehind.delete(key);
  return now - at < FELL_BEHIND_FOR_MS;
}

/**
 * A body without a declared length: buffered if it ends within `maxBufferBytes`, else streamed to every tier
 * with its length counted there (up to `maxObject`). Collapsed waiters get the entry only when it was buffered.
 */
async function storeUnknownLength(
  ex: Exchange,
  target: StoreTarget,
  body: ReadableStream<Uint8Array>,
  maxObject: number,
  streaming: () => void,
): Promise<Shared> {
  const { deps } = ex;
  // The buffer comes out of the isolate's budget; with no room the body streams to the client unstored.
  const grant = isolateBudget.take(deps.maxBufferBytes);
  if (!grant) {
    deps.log("store.skipped", { key: target.key, reason: "memory", held: isolateBudget.held });
    await body.cancel("no memory to buffer").catch(() => {});
    streaming();
    return { kind: "none" };
  }
  let read: Awaited<ReturnType<typeof readAtMost>>;
  try {
    read = await readAtMost(body, deps.maxBufferBytes);
  } catch (error) {
    grant.release();
    deps.log("store.skipped", { key: target.key, reason: "body-error", error: describe(error) });
    return { kind: "none" };
  }
  if ("whole" in read) return storeBytes(ex, target, read.whole).finally(grant.release);
  // Past the buffer: what was read is replayed into the streamed store; the tiers' own buffers are theirs.
  grant.release();
  streaming();
  const entry = target.entry;
  const retention = retentionOf(entry, deps.now());
  if (retention <= 0 || invalidatedAfter(deps, [target.key, ex.baseKey], entry.requestTime)) {
    await read.over.cancel("not storing").catch(() => {});
    return { kind: "none" };
  }
  const copies = fanOut(read.over, target.tiers.length);
  const puts = target.tiers.map(async (tier, i) => {
    const copy = cancelIfStalled(copies[i] as ReadableStream<Uint8Array>, deps.tierTimeoutMs * 5);
    await putCounted(ex, tier, target.key, entry, copy, retention, { maxBytes: maxObject }, "large");
    if (target.index)
      await putCounted(
        ex,
        tier,
        ex.baseKey,
        indexEntry(entry, target.index),
        new Uint8Array(0),
        indexRetention(retention),
      );
  });
  const results = await Promise.allSettled(puts);
  results.forEach((result, i) => {
    if (result.status === "rejected") {
      const reason = result.reason instanceof BodyTooLargeError ? "too-large" : undefined;
      deps.log("tier.skipped", {
        tier: target.tiers[i]?.name,
        op: "put",
        key: target.key,
        reason,
        error: describe(result.reason),
      });
    }
  });
  return { kind: "none" };
}

async function storeBuffered(
  ex: Exchange,
  target: StoreTarget,
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Shared> {
  const { deps } = ex;
  let bytes: Uint8Array;
  try {
    bytes = await readAll(body, limit);
  } catch (error) {
    // A body that broke off is never stored; one that grew past the buffer has no length to check.
    const reason = error instanceof BodyTooLargeError ? "too-large" : "body-error";
    deps.log("store.skipped", { key: target.key, reason, error: describe(error) });
    return { kind: "none" };
  }
  return storeBytes(ex, target, bytes);
}

/** Checks a whole body against what it declared (and, on a refill, its record), then writes it to every tier. */
async function storeBytes(ex: Exchange, target: StoreTarget, bytes: Uint8Array): Promise<Shared> {
  const { deps } = ex;
  // A body that ended short of its declared length is incomplete (RFC 9112 §6.3).
  if (target.declaredLength !== undefined && bytes.byteLength !== target.declaredLength) {
    deps.log("store.skipped", {
      key: target.key,
      reason: "short-body",
      declared: target.declaredLength,
      received: bytes.byteLength,
    });
    return { kind: "none" };
  }
  const digest = await sha256Digest(bytes);
  if (target.verify && (bytes.byteLength !== target.entry.length || digest !== target.entry.digest)) {
    deps.log("store.skipped", { key: target.key, reason: "digest-mismatch" });
    return { kind: "none" };
  }
  const entry = { ...target.entry, length: bytes.byteLength, digest };
  const stored = await putBuffered(ex, target, entry, bytes);
  return stored ? { kind: "entry", entry, bytes, values: target.values } : { kind: "none" };
}

/** Writes a buffered entry (and its variant index) to every tier in parallel; true if any tier took it. */
async function putBuffered(
  ex: Exchange,
  target: Pick<StoreTarget, "key" | "tiers" | "index">,
  entry: StoredEntry,
  bytes: Uint8Array,
): Promise<boolean> {
  const { deps } = ex;
  const retention = retentionOf(entry, deps.now());
  if (retention <= 0 || invalidatedAfter(deps, [target.key, ex.baseKey], entry.requestTime)) return false;
  const results = await Promise.all(
    target.tiers.map(async (tier) => {
      try {
        const write = async () => {
          await putCounted(ex, tier, target.key, entry, bytes, retention, undefined, placeFor(ex, bytes.byteLength));
          if (target.index)
            await putCounted(
              ex,
              tier,
              ex.baseKey,
              indexEntry(entry, target.index),
              new Uint8Array(0),
              indexRetention(retention),
            );
        };
        await withDeadline(write(), deps.tierTimeoutMs, `${tier.name} put`);
        return true;
      } catch (error) {
        deps.log("tier.skipped", { tier: tier.name, op: "put", key: target.key, error: describe(error) });
        return false;
      }
    }),
  );
  return results.some(Boolean);
}

/**
 * Where a body of `length` bytes goes in a global tier split by size (core/tier.ts, tiers/global.ts): past
 * the site's `cache.largeObjectBytes` to R2, else with its record in KV.
 */
export function placeFor(ex: Pick<Exchange, "site">, length: number): Place {
  return length > ex.site.cache.largeObjectBytes ? "large" : "small";
}

/** True when one of `keys` was invalidated in this isolate at or after `requestTime`. */
function invalidatedAfter(deps: Pick<Exchange["deps"], "invalidated">, keys: string[], requestTime: number): boolean {
  return keys.some((key) => {
    const at = deps.invalidated.get(key);
    return at !== undefined && requestTime <= at;
  });
}

const MAX_INVALIDATIONS = 10_000;

/**
 * Removes a URL's entry (or variant index, which orphans its variants) from every tier, and remembers the
 * time in this isolate so that a fill already on its way cannot store the old response after it.
 */
export async function invalidate(
  ex: { deps: Pick<Exchange["deps"], "tiers" | "tierTimeoutMs" | "log" | "invalidated" | "now" | "shield"> },
  keys: string[],
): Promise<void> {
  const { deps } = ex;
  const now = deps.now();
  for (const key of keys) setBounded(deps.invalidated, key, now, MAX_INVALIDATIONS);
  // The shield of each key, so that it answers none of them from a copy stored before (shield.ts, fromCopy).
  const { shield } = deps;
  const told = shield
    ? keys.map(async (key) => {
        try {
          await withDeadline(shield.invalidated(key), deps.tierTimeoutMs, "shield invalidate");
        } catch (error) {
          deps.log("shield.skipped", { op: "invalidate", key, error: describe(error) });
        }
      })
    : [];
  await Promise.all([
    ...told,
    ...deps.tiers.flatMap((tier) =>
      keys.map(async (key) => {
        try {
          await withDeadline(tier.delete(key), deps.tierTimeoutMs, `${tier.name} delete`);
        } catch (error) {
          deps.log("tier.skipped", { tier: tier.name, op: "delete", key, error: describe(error) });
        }
      }),
    ),
  ]);
}

/** An index outlives its variants rather than the other way round (a lookup through it may then miss). */
function indexRetention(retention: number): number {
  return Math.max(retention, REVALIDATION_KEEP);
}

/** The record stored at the base key of a response that varies: no headers, no body, just the index. */
function indexEntry(entry: StoredEntry, index: VariantIndex): StoredEntry {
  return { ...entry, headers: [], length: 0, digest: "", tags: [], variants: index };
}

/** One tier write, counted in the site's stats once the tier has taken it (a KV or R2 write is billed). */
async function putCounted(ex: Exchange, tier: Tier, ...args: Parameters<Tier["put"]>): Promise<void> {
  await tier.put(...args);
  ex.deps.stats.tierWrite(ex.site.id, tier.name);
}
