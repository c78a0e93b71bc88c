import { rangeOf } from "./answer";
import type { CacheStatusMember } from "./cache-status";
import { withDeadline } from "./deadline";
import type { StoredEntry } from "./entry";
import { describe, type Exchange } from "./exchange";
import { type Decision, decide } from "./http/decision";
import { requestedByteRange } from "./http/range";
import { whyNotServable } from "./http/shareable";
import { variantKey } from "./keys";
import { purgeState, softPurgedAt } from "./purge";
import type { ByteRange, CachedObject, Tier } from "./tier";
import {
  checkedAlready,
  checkedBody,
  type DamagedEntryError,
  type ExpectedBody,
  PUMPED_MIN_BYTES,
  verifiedPumped,
} from "./verified-body";

/** An entry found in a tier, with the key it lives under (the variant's key for a response that varies). */
export interface Found {
  entry: StoredEntry;
  body: ReadableStream<Uint8Array>;
  /** Index of the tier it came from in `deps.tiers`. */
  tier: number;
  key: string;
  member: CacheStatusMember;
  /** Soft-purged: to be served stale while it is revalidated (within the site's grace). */
  softPurged?: boolean;
  /** When the soft purge that made it stale happened (epoch ms). */
  softPurgedAt?: number;
  /** What the decision function made of it (http/decision.ts). */
  decision?: Decision;
  /** The variant index it was found through, in its own tier. */
  index?: StoredEntry["variants"];
  /** Set when only these bytes were read (a ranged read that is exactly what the answer sends). */
  range?: { start: number; end: number };
}

export interface Lookup {
  fresh?: Found;
  /** The first stale entry met, kept for revalidation, stale-while-revalidate and stale-if-error. */
  stale?: Found;
  /** The variant index met at the base key, if the response varies. */
  index?: StoredEntry["variants"];
  /** Some tier returned an entry (fresh, stale, purged or unservable alike). */
  seen?: boolean;
}

/** Display names of the tiers in Cache-Status. */
const CACHE_NAMES: Record<string, string> = {
  edge: "Tiercel-Edge",
  kv: "Tiercel-KV",
  r2: "Tiercel-R2",
  memory: "Tiercel-Memory",
};

export function cacheName(tier: Tier): string {
  return CACHE_NAMES[tier.name] ?? `Tiercel-${tier.name}`;
}

/**
 * Reads the tiers nearest first until one has a fresh entry for the request. A tier that throws or is slow
 * is skipped (and says so in Cache-Status). A variant index at the base key sends the lookup on to the
 * variant selected by the request's headers (RFC 9111 §4.1).
 */
export async function lookupTiers(ex: Exchange): Promise<Lookup> {
  const { deps } = ex;
  const result: Lookup = {};
  // A single range (a video player's, a download's resume) is read alone from each tier where it can be.
  const range = ex.request.method === "GET" ? requestedByteRange(ex.request.headers) : undefined;
  for (const [index, tier] of deps.tiers.entries()) {
    const member = ex.status.add({ cache: cacheName(tier) });
    deps.stats.tierRead(ex.site.id, tier.name);
    let found: (CachedObject & { key: string; index?: StoredEntry["variants"] }) | null;
    const reading = readThroughIndex(tier, ex, result, range);
    try {
      found = await ex.timing.measure(tier.name, () => withDeadline(reading, deps.tierTimeoutMs, `${tier.name} get`));
    } catch (error) {
      // A read that lands after its deadline still holds a body: release it.
      reading.then(
        (late) => late?.body.cancel().catch(() => {}),
        () => {},
      );
      member.fwd = "miss";
      member.detail = error instanceof Error && error.name === "DeadlineError" ? "tier-timeout" : "tier-error";
      deps.log("tier.skipped", { tier: tier.name, op: "get", error: describe(error) });
      continue;
    }
    if (!found) {
      member.fwd = result.index ? "vary-miss" : "miss";
      continue;
    }
    result.seen = true;
    const purgeKeys = ex.sourceKey ? [ex.baseKey, ex.sourceKey] : [ex.baseKey];
    const hold = { now: deps.now(), maxHoldMs: ex.site.cache.maxHold * 1000 };
    const purge = purgeState(found.entry, ex.purges, ex.site.purges, hold, ...purgeKeys);
    if (purge === "purged") {
      // Purged: as good as absent, not even for stale-if-error.
      await found.body.cancel();
      member.fwd = "miss";
      member.detail = "purged";
      continue;
    }
    const unservable = whyNotServable(
      {
        status: found.entry.status,
        location: storedField(found.entry, "location"),
        allowOrigin: storedField(found.entry, "access-control-allow-origin"),
        vary: found.entry.vary,
      },
      { url: ex.url, siteHosts: ex.site.hosts, origin: ex.request.headers.get("origin") },
    );
    if (unservable) {
      // Never served, not even stale: as good as absent; the fill decides afresh.
      await found.body.cancel();
      member.fwd = "miss";
      member.detail = unservable;
      continue;
    }
    const candidate: Found = { ...found, tier: index, key: found.key, member, softPurged: purge === "soft" };
    if (purge === "soft") candidate.softPurgedAt = softPurgedAt(found.entry, ex.purges, ex.site.purges);
    const decision = decide({
      request: { method: ex.request.method, makesVariant: ex.resize !== undefined },
      stored: {
        record: found.entry,
        purge,
        ...(candidate.softPurgedAt === undefined ? {} : { softPurgedAt: candidate.softPurgedAt }),
      },
      policy: ex.site.cache,
      now: deps.now(),
    });
    candidate.decision = decision;
    if (found.range) {
      // A range read alone is kept only when it is exactly what a fresh answer sends; a stale entry (to
      // revalidate or refresh) or a different answer needs the whole body, read again.
      const answered = decision.action === "serve" ? rangeOf(found.entry, ex.request.headers) : undefined;
      if (answered?.start === found.range.start && answered.end === found.range.end) {
        candidate.range = found.range;
      } else {
        await found.body.cancel().catch(() => {});
        const whole = await readChecked(tier, found.key, deps).catch(() => null);
        if (!whole) {
          member.fwd = "miss";
          continue;
        }
        candidate.body = whole.body;
        delete candidate.range;
      }
    }
    if (decision.action === "serve") {
      if (result.stale) result.stale.body.cancel().catch(() => {});
      result.fresh = candidate;
      delete result.stale;
      return result;
    }
    member.fwd = "stale";
    if (result.stale) found.body.cancel().catch(() => {});
    else result.stale = candidate;
  }
  return result;
}

async function readThroughIndex(
  tier: Tier,
  ex: Exchange,
  result: Lookup,
  range: ByteRange | undefined,
): Promise<(CachedObject & { key: string; index?: StoredEntry["variants"] }) | null> {
  const found = await readChecked(tier, ex.baseKey, ex.deps, range);
  if (!found) return null;
  const variants = found.entry.variants;
  if (!variants) return { ...found, key: ex.baseKey };
  await found.body.cancel();
  result.index ??= variants;
  const key = await variantKey(ex.baseKey, variants.fields, variants.nonce, ex.request.headers);
  const variant = await readChecked(tier, key, ex.deps, range);
  return variant && { ...variant, key, index: variants };
}

/**
 * Reads one entry from a tier with its body checked against its record (length always, the SHA-256 digest
 * where one is recorded; a small digested body whole before it is passed on, any other as it streams: see
 * `checkedBody` in verified-body.ts; for a ranged read, the range's length only). A body over
 * `PUMPED_MIN_BYTES` is checked as it is pumped into a runtime stream of its length (`verifiedPumped`), so its
 * bytes do not become garbage in the isolate. A body found damaged errors, never ends as if
 * whole, and the entry is deleted from that tier in the background, so the next request refills it. A copy
 * that cannot change once written (it has a `copy` id: the edge's) is checked on its first whole read in this
 * isolate only. Every read of an entry from a tier goes through here.
 */
export async function readChecked(
  tier: Tier,
  key: string,
  deps: Pick<Exchange["deps"], "waitUntil" | "log" | "tierTimeoutMs">,
  range?: ByteRange,
): Promise<CachedObject | null> {
  const found = await tier.get(key, range);
  if (!found) return null;
  const drop = (error: DamagedEntryError) => {
    deps.log("tier.damaged", { tier: tier.name, key, damage: error.damage, error: describe(error) });
    const deleting = withDeadline(tier.delete(key), deps.tierTimeoutMs, `${tier.name} delete`).catch((failure) => {
      deps.log("tier.skipped", { tier: tier.name, op: "delete", key, error: describe(failure) });
    });
    deps.waitUntil(deleting);
  };
  if (found.range) {
    // Only the range was read: its length is checked; a digest covers the whole body, so it is not.
    const expected = { length: found.range.end - found.range.start + 1, digest: "" };
    return { entry: found.entry, body: checkedLarge(found.body, expected, drop), range: found.range };
  }
  if (found.copy === undefined) return { entry: found.entry, body: checkedLarge(found.body, found.entry, drop) };
  // A copy that never changes once written (the edge's) and that this isolate has already checked whole is not
  // checked again: its bytes are the ones that checked out (a whole answer hands it to the runtime as it is,
  // which sends it with the length the Cache API knows it has). Any other copy, a new put's included, is checked.
  const copy = `${tier.name} ${key} ${found.copy} ${found.entry.length} ${found.entry.digest}`;
  if (checkedCopies.has(copy)) return { entry: found.entry, body: checkedAlready(found.body) };
  return { entry: found.entry, body: checkedLarge(found.body, found.entry, drop, () => rememberChecked(copy)) };
}

/**
 * `verifiedPumped` for a body over `PUMPED_MIN_BYTES` (a large hit: no JavaScript buffer per read, and an answer
 * that needs no copy of it), else `checkedBody` (for a range, whose expected digest is "": `verifiedBody`).
 */
function checkedLarge(
  body: ReadableStream<Uint8Array>,
  expected: ExpectedBody,
  onDamaged: (error: DamagedEntryError) => void,
  onChecked?: () => void,
): ReadableStream<Uint8Array> {
  if (expected.length > PUMPED_MIN_BYTES) return verifiedPumped(body, expected, onDamaged, onChecked);
  return checkedBody(body, expected, onDamaged, onChecked);
}

/** Copies this isolate has checked whole (tier, key, copy id, length, digest), oldest first; bounded. */
const checkedCopies = new Set<string>();
const MAX_CHECKED_COPIES = 10_000;

function rememberChecked(copy: string): void {
  checkedCopies.add(copy);
  if (checkedCopies.size > MAX_CHECKED_COPIES) {
    const oldest = checkedCopies.values().next().value;
    if (oldest !== undefined) checkedCopies.delete(oldest);
  }
}

/** A stored response field (names are stored in lower case), or null. */
function storedField(entry: StoredEntry, name: string): string | null {
  return entry.headers.find(([field]) => field === name)?.[1] ?? null;
}
