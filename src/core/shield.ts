import { setBounded } from "./bounded";
import type { CacheStatusMember } from "./cache-status";
import type { VariantIndex } from "./entry";
import { type ErrorCode, TiercelError } from "./errors";
import { type Deps, describe, type Exchange, type ShareableFill } from "./exchange";
import { fromOrigin } from "./fill";
import { normalizeHost } from "./host";
import { selectingValues } from "./keys";
import { lookupTiers, readChecked } from "./lookup";
import { isolateBudget } from "./memory-budget";
import { cacheExchange } from "./pipeline";
import { fromStoredCopy } from "./resume";
import { ServerTiming } from "./server-timing";
import { type BodyBreak, Broadcast, closingOnError } from "./shield-broadcast";
import { type SiteCounters, Stats } from "./stats";
import { streamOf } from "./streams";
import type { Tier } from "./tier";

/**
 * The origin shield: one coordinator per cache key (the `Shield` Durable Object, src/objects/shield.ts, is a
 * thin shell over this) that makes a cold object's origin fetch once for every data center and isolate.
 *
 * A data center that missed in its edge tier and in the global tier asks the shield for the key. The first
 * request leads: the shield re-resolves the site from the request's host (and checks it is the site the
 * data center named), derives the key and the origin request itself, fetches the origin through the same
 * fill code as a data center (src/core/fill.ts), writes the global tier once, and streams the answer to
 * every waiter through a bounded window (src/core/shield-broadcast.ts). Requests arriving while it streams
 * join it from byte 0 while the head is still held; later ones start detached and read the global tier's
 * copy once it is written. An answer that is not shared (private, uncacheable) goes to the leader alone,
 * and the key is remembered as hit-for-pass for `hitForPassMs`: its waiters, and requests in that time, go
 * to the origin themselves rather than queue behind a leader.
 */
export interface ShieldRequest {
  /** The site the data center resolved: the shield resolves it again and refuses a mismatch. */
  siteId: string;
  /** The client's URL (the shield derives the key, keyed URL and any resize itself). */
  url: string;
  /** The client's request headers, without those Tiercel answers itself (range, conditionals). */
  headers: [string, string][];
  /**
   * When the data center asked (epoch ms): a fill that had already finished by then is not joined (the URL
   * may have been invalidated or purged since), a new one is led.
   */
  startedAt: number;
  /** The key the data center derived (the shield's own instance): the shield checks it derives the same. */
  key?: string;
  /** The data center met a variant index for the URL: the shield reads it from the global tier itself. */
  varies?: boolean;
  /**
   * The data center's lookup found no entry in any tier, not even a stale or purged one: a copy the shield
   * wrote lately may not have reached it yet (see `recentMs`). Absent, the shield never answers from a copy
   * (the data center may have seen it purged).
   */
  sawNone?: boolean;
  /** With `sawNone`: the control feed's last change applied in the data center (its purges and settings). */
  controlSeq?: number;
  /** With `sawNone`: when the data center's isolate last invalidated this key (an unsafe method), if it did. */
  invalidatedAt?: number;
}

/** The shield's own Cache-Status member, as the data center prints it. */
export type ShieldMember = Pick<CacheStatusMember, "hit" | "fwd" | "fwdStatus" | "collapsed" | "detail">;

export type ShieldAnswer =
  /** A shared answer: store it in the edge tier only, answer the client from it. */
  | {
      kind: "fill";
      target: ShareableFill["target"];
      storing: boolean;
      member: ShieldMember;
      /** Never errors (see `closingOnError`): a body that broke off closes, and `ended` says so. */
      body: ReadableStream<Uint8Array>;
      /** Once `body` has closed: null if that is the body's end, what broke it otherwise. */
      ended: () => Promise<BodyBreak | null>;
      /** The shield's clock when it answered: the data center shifts the entry's times onto its own. */
      now: number;
      /** For the leader only: the fill's work so far (the origin fetch and its bytes), which it counts. */
      work?: SiteCounters;
      /**
       * Settles once the global-tier store is done (the data center waits for it in the background); for the
       * leader, with the rest of the fill's work (the global-tier writes), which it counts.
       */
      stored: () => Promise<SiteCounters | undefined>;
    }
  /** The leader's own unshared answer, passed on as it is. */
  | {
      kind: "pass";
      status: number;
      statusText: string;
      headers: [string, string][];
      /** Never errors, as a shared body (see `closingOnError`). */
      body: ReadableStream<Uint8Array> | null;
      /** Once `body` has closed: null if that is the body's end, what broke it otherwise. */
      ended?: () => Promise<BodyBreak | null>;
      member: ShieldMember;
      /** How long the data center may send this key straight to the origin. */
      passMs: number;
      /** The origin fetch and its bytes, counted by the data center (the leader). */
      work?: SiteCounters;
    }
  /** The origin fetch failed: the leader's answer is this error. */
  | {
      kind: "failed";
      code: ErrorCode;
      status: number;
      message: string;
      member: ShieldMember;
      /** The origin fetch, counted by the data center (the leader). */
      work?: SiteCounters;
    }
  /** Nothing to share: fetch the origin yourself (hit-for-pass, another variant, the shield declined). */
  | { kind: "go"; reason: string; passMs?: number };

/** What a data center calls: the shield for `key`, reached over RPC. */
export interface ShieldBinding {
  fill(key: string, request: ShieldRequest): Promise<ShieldAnswer>;
  /** The key was invalidated (an unsafe method): the shield answers it from no copy stored before now. */
  invalidated(key: string): Promise<void>;
  /** How long a data center waits for the shield's answer before fetching the origin itself. */
  timeoutMs: number;
}

export interface ShieldOptions {
  /** Most bytes a fill holds for its waiters (head and read-ahead). */
  windowBytes: number;
  /**
   * The window of a body declared larger than `windowBytes`, out of the isolate's memory budget when it has
   * room: a body up to this size is held whole while it streams, so every request arriving during the fill
   * joins it from byte 0; a larger one keeps this much of its head.
   */
  headBytes: number;
  /** How long the slowest waiter may hold a fill back before it is detached to the global tier's copy. */
  stallMs: number;
  /** How long an unshared answer sends its key's requests straight to the origin. */
  hitForPassMs: number;
  /** How long a finished fill still answers requests for its key (from its head or the global tier). */
  keepMs: number;
  /**
   * How long after a fill this shield answers a request for its key from the global tier's copy, when it
   * holds one, before it would go to the origin: a data center's own lookup can miss a copy just written
   * (KV is eventually consistent: a new key may stay unseen in a location for up to 60 s; or its read
   * timed out), and that must not cost another origin fetch.
   */
  recentMs: number;
}

export const SHIELD_DEFAULTS: ShieldOptions = {
  windowBytes: 4 * 1024 * 1024,
  headBytes: 16 * 1024 * 1024,
  stallMs: 5_000,
  hitForPassMs: 30_000,
  keepMs: 5_000,
  recentMs: 60_000,
};

/** Counters of one shield instance (tests and logs). */
export interface ShieldCounters {
  fills: number;
  joined: number;
  detached: number;
  passes: number;
  declined: number;
  /** Requests answered from the global tier's copy of a recent fill (see `recentMs`). */
  fromCopy: number;
  /** Puts made to the global tiers (entries and variant indexes). */
  globalPuts: number;
}

type Head =
  | {
      kind: "shared";
      shared: ShareableFill;
      broadcast: Broadcast;
      /** The rest of the fill's work once its store is done (handed to the leader alone). */
      work: () => SiteCounters | undefined;
      member: ShieldMember;
      values: string;
      /** When the body had streamed and its store was done (epoch ms), once both are. */
      finishedAt?: number;
    }
  | { kind: "none" };

const MAX_PASSES = 10_000;

export function createShield(platform: Omit<Deps, "waitUntil">, options: ShieldOptions = SHIELD_DEFAULTS) {
  const fills = new Map<string, Promise<Head>>();
  const passes = new Map<string, number>();
  const counters: ShieldCounters = {
    fills: 0,
    joined: 0,
    detached: 0,
    passes: 0,
    declined: 0,
    fromCopy: 0,
    globalPuts: 0,
  };
  /** Keys this shield filled and stored lately, and until when they count as recent (`recentMs`). */
  const filled = new Map<string, number>();
  /** Keys invalidated lately (a data center's unsafe method), and when: no copy older is answered from. */
  const invalidations = new Map<string, number>();
  // Every write the shield makes to a global tier is counted: one per fill is the goal. The tier is otherwise
  // the same (`global` for the site's admission policy, ranged gets, `refresh`).
  const tiers = platform.tiers.map(
    (tier): Tier => ({
      ...tier,
      get: (key, range) => tier.get(key, range),
      delete: (key) => tier.delete(key),
      put(...args) {
        counters.globalPuts += 1;
        return tier.put(...args);
      },
    }),
  );
  const deps = { ...platform, tiers };

  const passLeft = (key: string): number => {
    const until = passes.get(key);
    if (until === undefined) return 0;
    const left = until - deps.now();
    if (left <= 0) passes.delete(key);
    return Math.max(0, left);
  };

  /**
   * A waiter's bytes from `offset` once the fill no longer holds them: the global tier's copy of this very
   * fill, once written, read a range at a time as the waiter takes them (resume.ts).
   */
  const resumeFrom = async (shared: ShareableFill, offset: number, waitUntil: Deps["waitUntil"]) => {
    counters.detached += 1;
    await shared.outcome;
    const { key, entry } = shared.target;
    return fromStoredCopy(deps.tiers, key, entry, { ...deps, waitUntil }, offset);
  };

  const share = (head: Head & { kind: "shared" }, collapsed: boolean, work?: SiteCounters): ShieldAnswer | null => {
    // Past the head a reader starts detached; that needs the global tier's copy, so without a store it goes.
    if (!head.broadcast.holdsAll && !head.shared.storing) return null;
    const outcome = head.shared.outcome.catch(() => {});
    const { body, ended } = closingOnError(head.broadcast.join());
    return {
      kind: "fill",
      target: head.shared.target,
      storing: head.shared.storing,
      member: { ...head.member, collapsed },
      body,
      ended,
      now: deps.now(),
      ...(work ? { work } : {}),
      // Only the leader counts the fill's writes: the waiters' data centers made none.
      stored: collapsed ? () => outcome.then(() => undefined) : () => outcome.then(head.work),
    };
  };

  async function lead(ex: Exchange, request: ShieldRequest, waitUntil: Deps["waitUntil"]): Promise<ShieldAnswer> {
    let announce!: (head: Head) => void;
    const announced = new Promise<Head>((resolve) => {
      announce = resolve;
    });
    fills.set(ex.baseKey, announced);
    const forget = () => {
      if (fills.get(ex.baseKey) === announced) fills.delete(ex.baseKey);
    };
    counters.fills += 1;
    // The fill's own counters (origin fetch, bytes, global writes, optimizing): handed to the data center
    // whose request led it, which counts them with its request, so the global stats see them once.
    const tally = new Stats(deps.now);
    ex.deps = { ...ex.deps, stats: tally };
    const work = () => tally.takeTotal(ex.site.id);
    const member = ex.status.add({ cache: "Tiercel-Shield", fwd: "miss" });
    let shared: ShareableFill | undefined;
    ex.onShareable = (fill) => {
      shared = fill;
    };
    // The global-tier stores follow the readers of the fill, and set its pace once none paces it.
    let fanned: Broadcast | undefined;
    ex.storesPace = () => fanned !== undefined && !fanned.paced;
    // The fill's answer is read here, by the fan-out (which checks its length), not sent to a socket.
    ex.answerReadHere = true;
    let response: Response;
    try {
      const index = request.varies ? await indexOf(ex, waitUntil) : undefined;
      response = await fromOrigin(ex, index ? { index } : {});
    } catch (error) {
      announce({ kind: "none" });
      forget();
      const failed = error instanceof TiercelError ? error : undefined;
      const done = work();
      return {
        kind: "failed",
        code: failed?.code ?? "origin_error",
        status: failed?.status ?? 502,
        message: failed?.message ?? "The origin could not be reached",
        member: memberOf(member),
        ...(done ? { work: done } : {}),
      };
    }
    if (!shared) {
      announce({ kind: "none" });
      forget();
      // Errors are not remembered (the next request tries again), nor answers made private by the
      // leader's own credentials (a cookie-less request may well be cacheable).
      const credentials = ex.request.headers.has("cookie") || ex.request.headers.has("authorization");
      const passMs = response.status < 500 && !credentials ? options.hitForPassMs : 0;
      if (passMs > 0) remember(ex.baseKey, passMs);
      const headers = [...response.headers].filter(([name]) => name !== "cache-status" && name !== "server-timing");
      const done = work();
      const passed = response.body ? closingOnError(response.body) : undefined;
      return {
        kind: "pass",
        status: response.status,
        statusText: response.statusText,
        headers,
        body: passed?.body ?? null,
        ...(passed ? { ended: passed.ended } : {}),
        member: memberOf(member),
        passMs,
        ...(done ? { work: done } : {}),
      };
    }
    const fill = shared;
    // A larger window, when the isolate's memory budget allows: a body declared up to `headBytes` is kept
    // whole while it streams, and the first `headBytes` of a larger one until they are read, so requests
    // arriving meanwhile join from byte 0 with the others rather than wait, detached, for the global tier's
    // copy (a joiner after that still does).
    const declared = fill.target.declaredLength;
    const kept = declared === undefined ? 0 : Math.min(declared, options.headBytes);
    const whole = kept > options.windowBytes ? isolateBudget.take(kept) : undefined;
    const broadcast = new Broadcast(response.body ?? streamOf(new Uint8Array(0)), {
      ...(declared !== undefined && response.body ? { length: declared } : {}),
      windowBytes: options.windowBytes,
      headBytes: whole ? kept : 0,
      stallMs: options.stallMs,
      resume: fill.storing ? (offset) => resumeFrom(fill, offset, waitUntil) : undefined,
    });
    fanned = broadcast;
    const head: Head & { kind: "shared" } = {
      kind: "shared",
      shared: fill,
      broadcast,
      work,
      member: memberOf(member),
      values: fill.target.values,
    };
    announce(head);
    void Promise.allSettled([broadcast.done, fill.outcome]).then(() => {
      head.finishedAt = deps.now();
      if (fill.storing) rememberFilled(ex.baseKey);
    });
    // The fill stays joinable until it has streamed, its store is done and `keepMs` more have passed: a
    // request that arrives meanwhile reads the head still held, or the global tier's copy (a data center's
    // lookup may have missed it just before it was written). Then what it holds is dropped (a reader still
    // in it goes on from the stored copy) and its memory given back; a fill not stored holds it until its
    // last reader is done, since they have nowhere else to read from.
    waitUntil(
      Promise.allSettled([broadcast.done, fill.outcome])
        .then(() => new Promise((resolve) => setTimeout(resolve, options.keepMs)))
        .then(() => {
          forget();
          if (fill.storing) broadcast.dropHeld();
          else return broadcast.idle;
        })
        .finally(() => whole?.release()),
    );
    return share(head, false, work()) ?? { kind: "go", reason: "late" };
  }

  function rememberFilled(key: string): void {
    setBounded(filled, key, deps.now() + options.recentMs, MAX_PASSES);
  }

  function filledLately(key: string): boolean {
    const until = filled.get(key);
    if (until === undefined) return false;
    if (until > deps.now()) return true;
    filled.delete(key);
    return false;
  }

  /**
   * The global tier's fresh copy for the request, read as a data center reads it (purges, freshness,
   * variants), as a shared answer; null when there is none.
   */
  async function fromCopy(
    ex: Exchange,
    request: ShieldRequest,
    waitUntil: Deps["waitUntil"],
  ): Promise<ShieldAnswer | null> {
    // The data center knows of purges or settings this shield has not applied yet: no copy, a fill.
    if ((request.controlSeq ?? 0) > (deps.control?.seq ?? Number.POSITIVE_INFINITY)) return null;
    // Its reads are not counted here: the shield counts nothing of its own.
    const looked = await lookupTiers({ ...ex, deps: { ...ex.deps, waitUntil, stats: new Stats(deps.now) } });
    await looked.stale?.body.cancel().catch(() => {});
    const found = looked.fresh;
    if (!found) return null;
    const invalidatedAt = Math.max(request.invalidatedAt ?? 0, invalidations.get(ex.baseKey) ?? 0);
    if (found.softPurged || found.entry.requestTime <= invalidatedAt) {
      await found.body.cancel().catch(() => {});
      return null;
    }
    counters.fromCopy += 1;
    const { body, ended } = closingOnError(found.body);
    const { entry } = found;
    return {
      kind: "fill",
      target: {
        key: found.key,
        entry,
        declaredLength: entry.length >= 0 ? entry.length : undefined,
        values: JSON.stringify(selectingValues(entry.vary, ex.request.headers)),
        // A variant: the data center stores the index at the base key with it, so its edge copy is found.
        ...(found.index ? { index: found.index } : {}),
      },
      storing: false,
      member: { hit: true, detail: "stored-copy" },
      body,
      ended,
      now: deps.now(),
      stored: () => Promise.resolve(undefined),
    };
  }

  function remember(key: string, ms: number): void {
    counters.passes += 1;
    setBounded(passes, key, deps.now() + ms, MAX_PASSES);
  }

  return {
    counters,
    /** A data center invalidated `key`: no copy stored before now answers it (`fromCopy`). */
    invalidated(key: string): void {
      filled.delete(key);
      setBounded(invalidations, key, deps.now(), MAX_PASSES);
    },
    async fill(request: ShieldRequest, waitUntil: Deps["waitUntil"]): Promise<ShieldAnswer> {
      const decline = (reason: string): ShieldAnswer => {
        counters.declined += 1;
        return { kind: "go", reason };
      };
      const url = new URL(request.url);
      const headers = new Headers(request.headers);
      const host = normalizeHost(headers.get("host") ?? url.host);
      // As a data center does before each request: what changed since the last check (settings, purges).
      await deps.control?.beforeRequest(waitUntil);
      let ex: Exchange | undefined;
      // The data center's key is derived from its config as this one is from the shield's: a different key
      // means one of them is behind (a settings change on its way). The shield reads the config again once;
      // still different, the data center fetches the origin itself (its fill must be keyed by its config).
      for (let attempt = 0; attempt < 2 && !ex; attempt++) {
        if (attempt > 0) await deps.sites.forget([host]);
        const site = await deps.sites.siteForHost(host, waitUntil);
        if (!site || site.id !== request.siteId || !site.cache.shield) return decline("shield-declined");
        try {
          const derived = await cacheExchange(
            new Request(url, { headers }),
            site,
            { ...deps, waitUntil },
            new ServerTiming(deps.now),
          );
          if (request.key === undefined || derived.baseKey === request.key) ex = derived;
        } catch (error) {
          deps.log("shield.declined", { url: request.url, error: describe(error) });
          return decline("shield-declined");
        }
      }
      if (!ex) return decline("config-differs");
      const passMs = passLeft(ex.baseKey);
      if (passMs > 0) return { kind: "go", reason: "hit-for-pass", passMs };
      let head: Head | undefined;
      for (let checked = false; ; ) {
        const running = fills.get(ex.baseKey);
        head = running ? await running : undefined;
        const over = head?.kind === "shared" && head.finishedAt !== undefined && request.startedAt >= head.finishedAt;
        if (head && !over) break;
        if (checked || !request.sawNone || !filledLately(ex.baseKey)) return lead(ex, request, waitUntil);
        // Filled lately: its copy, if the global tier still holds it fresh, rather than the origin again.
        checked = true;
        const copy = await fromCopy(ex, request, waitUntil);
        if (copy) return copy;
        // Meanwhile another request may have begun a fill: looked up again.
      }
      if (head.kind === "none") {
        const left = passLeft(ex.baseKey);
        return left > 0 ? { kind: "go", reason: "hit-for-pass", passMs: left } : { kind: "go", reason: "not-shared" };
      }
      // The leader's variant is shared only with requests that select the same one (as in collapse.ts).
      const values = JSON.stringify(selectingValues(head.shared.target.entry.vary, ex.request.headers));
      if (values !== head.values) return { kind: "go", reason: "other-variant" };
      counters.joined += 1;
      return share(head, true) ?? { kind: "go", reason: "late" };
    },
  };
}

export type ShieldCore = ReturnType<typeof createShield>;

/** The variant index at the URL's base key in the global tier, if there is one. */
async function indexOf(ex: Exchange, waitUntil: Deps["waitUntil"]): Promise<VariantIndex | undefined> {
  for (const tier of ex.deps.tiers) {
    const found = await readChecked(tier, ex.baseKey, { ...ex.deps, waitUntil }).catch(() => null);
    if (!found) continue;
    await found.body.cancel().catch(() => {});
    if (found.entry.variants) return found.entry.variants;
  }
  return undefined;
}

function memberOf(member: CacheStatusMember): ShieldMember {
  const out: ShieldMember = {};
  if (member.fwd) out.fwd = member.fwd;
  if (member.fwdStatus !== undefined) out.fwdStatus = member.fwdStatus;
  if (member.detail) out.detail = member.detail;
  return out;
}
