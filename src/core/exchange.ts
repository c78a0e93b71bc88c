import type { Engines, OptimizeLimits } from "../optimize/optimize";
import type { TransformLimiter } from "../optimize/queue";
import type { ResizeRequest } from "../optimize/resize-url";
import type { Site } from "../sites/schema";
import type { SiteStore } from "../sites/store";
import type { CacheStatus } from "./cache-status";
import type { Collapser } from "./collapse";
import type { Origin } from "./origin";
import type { PurgeView } from "./purge";
import type { ServerTiming } from "./server-timing";
import type { ShieldBinding } from "./shield";
import type { Stats, StatsFlusher } from "./stats";
import type { StoreTarget } from "./store";
import type { Tier } from "./tier";

/**
 * What the pipeline needs from the platform. `worker.ts` builds it from the bindings once per isolate
 * (plus `waitUntil` per request); tests build it from real local bindings, with pieces replaced where a
 * test needs a failing tier or a controlled clock.
 */
export interface Deps {
  sites: SiteStore;
  /** The control feed's client (src/sites/control.ts): checked before each request, at most once per window. */
  control?: {
    beforeRequest(waitUntil?: (work: Promise<unknown>) => void): Promise<void>;
    /** The last change of the control feed applied here (settings, purges). */
    readonly seq?: number;
  };
  /** Cache tiers, nearest the client first (edge, then global). */
  tiers: Tier[];
  originFor(site: Site): Origin;
  now(): number;
  waitUntil(work: Promise<unknown>): void;
  log: Logger;
  /** Origin fetches in flight in this isolate, for request collapsing. */
  collapser: Collapser;
  /** Per-site request counters of this isolate. */
  stats: Stats;
  /** Sends the counters' deltas to the aggregator in batches (absent: they stay in the isolate). */
  flusher?: StatsFlusher;
  /**
   * Keys invalidated in this isolate (by an unsafe method or a URL purge) and when: a fill whose origin
   * request started before that time must not store its result after it.
   */
  invalidated: Map<string, number>;
  /** How long one tier lookup, or one buffered store, may take before the tier is skipped. */
  tierTimeoutMs: number;
  /** Bodies up to this size (or of unknown size, up to it) are buffered once and shared; larger ones stream. */
  maxBufferBytes: number;
  /** The largest body stored at all; larger ones stream through unstored. */
  maxObjectBytes: number;
  /**
   * How far (bytes) a store may fall behind the client it is filled alongside before it gives up (that copy
   * is not stored; the client is never slowed by a store). Default `STORE_LOOK_AHEAD_BYTES` (memory-budget.ts).
   */
  storeLookAheadBytes?: number;
  /** Image engines and the minifier: the optimizer Worker's, behind the OPTIMIZER binding. */
  engines: Engines;
  optimizeLimits: OptimizeLimits;
  /** Bounds the transforms in flight per site and per isolate (a site's burst cannot starve another's). */
  transformLimiter: TransformLimiter;
  /** The origin shield (SHIELD): a cold miss's origin fetch, once for every data center. Absent inside it. */
  shield?: ShieldBinding;
}

export type Logger = (event: string, fields: Record<string, unknown>) => void;

/** One GET or HEAD on its way through the pipeline. */
export interface Exchange {
  request: Request;
  url: URL;
  site: Site;
  /** The site's purge state, as this isolate knows it (parsed once per version, checked by Map lookups). */
  purges: PurgeView;
  deps: Deps;
  timing: ServerTiming;
  status: CacheStatus;
  /** The key of the URL; for a response that varies, the key of its variant index. */
  baseKey: string;
  /** For a resize URL: its options (then `url` is the source image's URL). */
  resize?: ResizeRequest;
  /** For a resize URL: the source image's own key, whose URL purges reach its resized variants too. */
  sourceKey?: string;
  /**
   * Told when the fill's answer is shareable and being stored (the shield streams it to every waiter);
   * not called for an answer that is passed on unstored (private, uncacheable), which is never shared.
   */
  onShareable?: (fill: ShareableFill) => void;
  /**
   * In the shield: whether the fill's global-tier stores set its pace now (no reader paces the shield's
   * fan-out, so nobody waits on the bytes and the copy later readers resume from must not be dropped).
   */
  storesPace?: () => boolean;
  /**
   * In the shield: the fill's answer is read in this isolate (the shield's fan-out checks its length), never
   * sent to a socket, so its body is handed on as the fill streams it rather than through a runtime
   * `FixedLengthStream` (which the fan-out would read back into JavaScript: one more copy of every byte).
   */
  answerReadHere?: boolean;
}

/** A fill's stored answer as the shield hands it on: where it is stored, and when the store is done. */
export interface ShareableFill {
  target: Omit<StoreTarget, "tiers" | "verify">;
  outcome: Promise<unknown>;
  storing: boolean;
}

export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
