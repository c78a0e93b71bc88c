import { DurableObject } from "cloudflare:workers";
import {
  createShield,
  type ShieldAnswer,
  type ShieldCore,
  type ShieldCounters,
  type ShieldRequest,
} from "../core/shield";
import { shieldPlatformFor } from "../worker";

/**
 * `SHIELD` → Shield: one instance per cache key (`idFromName(key)`), the origin shield of that key
 * (src/core/shield.ts). It has the Worker's own bindings and secrets, so it reaches the origin and the
 * global tier the way a data center would; it keeps nothing in storage.
 */
export class Shield extends DurableObject<Env> {
  private core: ShieldCore | undefined;

  fill(request: ShieldRequest): Promise<ShieldAnswer> {
    this.core ??= createShield(shieldPlatformFor(this.env));
    return this.core.fill(request, (work) => this.ctx.waitUntil(work));
  }

  invalidated(key: string): void {
    this.core ??= createShield(shieldPlatformFor(this.env));
    this.core.invalidated(key);
  }

  /** What this instance has done since it started (tests, diagnostics). */
  counters(): ShieldCounters {
    const none = { fills: 0, joined: 0, detached: 0, passes: 0, declined: 0, fromCopy: 0, globalPuts: 0 };
    return { ...(this.core?.counters ?? none) };
  }
}
