import { answerFromEntry } from "./answer";
import { setBounded } from "./bounded";
import type { Flight } from "./collapse";
import { withDeadline } from "./deadline";
import { type ErrorCode, TiercelError, withDiagnostics } from "./errors";
import { describe, type Exchange } from "./exchange";
import { ANSWERED_BY_TIERCEL, answerContext } from "./fill";
import { passOn } from "./http/content-coding";
import type { Lookup } from "./lookup";
import type { ShieldAnswer } from "./shield";
import type { BodyBreak } from "./shield-broadcast";
import type { SiteCounters } from "./stats";
import { storeBody } from "./store";
import { LoopTurns, largeChunkReader } from "./streams";
import type { Tier } from "./tier";

/**
 * The data center's side of the shield (src/core/shield.ts). A GET that missed in every tier, with nothing
 * stale to revalidate, asks the shield for its key; the shield's shared answer is stored in this data
 * center's own tiers only (it wrote the global tier itself) and answered from. Returns undefined when the
 * request is to go to the origin from here: the site turned the shield off, the key is hit-for-pass, the
 * shield sent it away, or the shield is unreachable, failed or gave no answer within its bound (degrade,
 * never fail).
 */
export async function viaShield(ex: Exchange, look: Lookup, flight: Flight | undefined): Promise<Response | undefined> {
  const { deps, site, status } = ex;
  const shield = deps.shield;
  if (!shield || !site.cache.shield || look.stale || ex.request.method !== "GET") return undefined;
  const member = status.add({ cache: "Tiercel-Shield" });
  if (passedUntil(ex) > deps.now()) {
    member.detail = "hit-for-pass";
    return undefined;
  }
  const headers = [...ex.request.headers].filter(([name]) => !ANSWERED_BY_TIERCEL.includes(name));
  const request = {
    siteId: site.id,
    key: ex.baseKey,
    url: ex.request.url,
    headers,
    // When the request began, not when its lookups were done: a request whose lookups were slow still joins
    // a fill it missed the global copy of.
    startedAt: ex.timing.started,
    ...(look.index ? { varies: true } : {}),
    ...(look.seen ? {} : sawNone(ex)),
  };
  let answer: ShieldAnswer;
  try {
    answer = await ex.timing.measure("shield", () =>
      withDeadline(shield.fill(ex.baseKey, request), shield.timeoutMs, "shield"),
    );
  } catch (error) {
    member.detail = error instanceof Error && error.name === "DeadlineError" ? "shield-timeout" : "shield-error";
    deps.log("shield.skipped", { key: ex.baseKey, error: describe(error) });
    return undefined;
  }
  switch (answer.kind) {
    case "go":
      member.detail = answer.reason;
      if (answer.passMs) rememberPass(ex, answer.passMs);
      return undefined;
    case "failed":
      if (answer.work) deps.stats.add(site.id, answer.work);
      Object.assign(member, answer.member, { detail: answer.code });
      flight?.settle({ kind: "none" });
      throw withDiagnostics(new TiercelError(answer.code, answer.status, answer.message), status, ex.timing);
    case "pass": {
      if (answer.work) deps.stats.add(site.id, answer.work);
      Object.assign(member, answer.member);
      flight?.settle({ kind: "none" });
      if (answer.passMs > 0) rememberPass(ex, answer.passMs);
      status.forwarded(answer.status, "none");
      const passed = new Headers(answer.headers);
      passed.set("cache-status", status.toString());
      passed.set("server-timing", ex.timing.toString());
      const body =
        answer.body && answer.ended ? breakingOnOutcome(answer.body, answer.ended as ShieldEnded) : answer.body;
      return passOn(body, { status: answer.status, statusText: answer.statusText, headers: passed });
    }
    case "fill": {
      // The leader counts the fill's origin fetch and bytes now, its global-tier writes once they are done.
      if (answer.work) deps.stats.add(site.id, answer.work);
      Object.assign(member, answer.member);
      // The shield wrote the global tier: this data center keeps its own copy, nearest the client.
      const tiers = deps.tiers.filter(isLocal);
      // The entry's instants are the shield's: moved onto this data center's clock (skew, or a test's clock).
      const shift = deps.now() - answer.now;
      const { entry } = answer.target;
      const local = {
        ...entry,
        requestTime: entry.requestTime + shift,
        responseTime: entry.responseTime + shift,
        storedAt: entry.storedAt + shift,
      };
      // One copy per key at a time in this isolate: the other requests of the same fill stream it unstored.
      const storeHere = !localStores.has(answer.target.key) && localStores.size < MAX_LOCAL_STORES;
      const target = { ...answer.target, entry: local, verify: false, tiers: storeHere ? tiers : [] };
      const body = breakingOnOutcome(answer.body, answer.ended as ShieldEnded);
      const { client, outcome, settled, storing } = storeHere
        ? storeBody(ex, target, body)
        : {
            client: body,
            outcome: Promise.resolve(),
            settled: Promise.resolve({ kind: "none" as const }),
            storing: false,
          };
      if (storeHere) {
        localStores.add(answer.target.key);
        void outcome.finally(() => localStores.delete(answer.target.key));
      }
      void settled.then((shared) => flight?.settle(shared));
      deps.waitUntil(outcome);
      // This miss's background work ends when the shield's global copy is written, too.
      // `stored` is an RPC stub: disposed once used, so the shield knows it is no longer held.
      const stored = answer.stored as ShieldStored;
      deps.waitUntil(
        Promise.resolve()
          .then(() => stored())
          .then((work) => {
            if (work) deps.stats.add(site.id, work);
          })
          .catch(() => {})
          .finally(() => stored[Symbol.dispose]?.()),
      );
      // This data center's copy is its own store; the shield's member says what became of the global one.
      status.forwarded(local.status, storing ? "storing" : "none", answer.storing ? answer.member.detail : undefined);
      return answerFromEntry(local, client, answerContext(ex));
    }
  }
}

/** The shield's `ended` callback as it arrives over RPC: a stub, disposable. */
type ShieldEnded = (() => Promise<BodyBreak | null>) & { [Symbol.dispose]?: () => void };

/**
 * The shield's body as this data center passes it on: the shield closes its body even when it broke off
 * (an error sent over RPC is one no isolate can catch, see `closingOnError`), so its close is passed on only
 * once `ended` says it is the body's end; a break errors the body here, in this isolate, as a fill of its
 * own would: the client's transfer fails and nothing is stored.
 */
export function breakingOnOutcome(source: ReadableStream<Uint8Array>, ended: ShieldEnded): ReadableStream<Uint8Array> {
  const reader = largeChunkReader(source);
  let released = false;
  const turns = new LoopTurns();
  const release = () => {
    if (released) return;
    released = true;
    ended[Symbol.dispose]?.();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (!done) {
            // Let the event loop turn while the shield's body always has bytes ready (see LoopTurns).
            const turn = turns.after(value.byteLength);
            if (turn) await turn;
            controller.enqueue(value);
            return;
          }
          const broke = await ended();
          release();
          if (broke) {
            const code = (broke.code ?? "origin_bad_response") as ErrorCode;
            controller.error(new TiercelError(code, broke.status ?? 502, broke.message));
          } else controller.close();
        } catch (error) {
          release();
          controller.error(error);
        }
      },
      cancel(reason) {
        release();
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}

/** Keys whose shield fill this isolate is storing in its own tiers now (one copy per key at a time). */
const localStores = new Set<string>();
const MAX_LOCAL_STORES = 1_000;

/** The shield's `stored` callback as it arrives over RPC: a stub, disposable. */
type ShieldStored = (() => Promise<SiteCounters | undefined>) & { [Symbol.dispose]?: () => void };

/** Tiers of this data center alone; every other tier is global, written by the shield. */
const LOCAL_TIERS = new Set(["edge", "memory"]);

export function isLocal(tier: Tier): boolean {
  return LOCAL_TIERS.has(tier.name);
}

/** What a request whose lookup saw no entry tells the shield, so it may answer from a recent fill's copy. */
function sawNone(ex: Exchange) {
  const { deps } = ex;
  const invalidatedAt = deps.invalidated.get(ex.baseKey);
  return {
    sawNone: true,
    ...(deps.control?.seq !== undefined ? { controlSeq: deps.control.seq } : {}),
    ...(invalidatedAt !== undefined ? { invalidatedAt } : {}),
  };
}

/** Keys this isolate sends straight to the origin until the time given (hit-for-pass, learnt from the shield). */
const passes = new Map<string, number>();

function passedUntil(ex: Exchange): number {
  return passes.get(ex.baseKey) ?? 0;
}

function rememberPass(ex: Exchange, ms: number): void {
  setBounded(passes, ex.baseKey, ex.deps.now() + ms, 10_000);
}
