/**
 * Cache-Status (RFC 9211). Each tier that handled a request adds one member; the header lists them from
 * the cache nearest the origin to the one nearest the client (§2: "the first member ... is the cache
 * closest to the origin server").
 */
export type ForwardReason = "bypass" | "method" | "uri-miss" | "vary-miss" | "miss" | "stale" | "partial" | "request";

export interface CacheStatusMember {
  /** Cache name, e.g. "Tiercel-Edge". */
  cache: string;
  hit?: boolean;
  fwd?: ForwardReason;
  fwdStatus?: number;
  stored?: boolean;
  /** Remaining freshness in seconds (§2.5). */
  ttl?: number;
  collapsed?: boolean;
  /** Implementation-specific detail (§2.8), a token such as `timeout` or `no-store`. */
  detail?: string;
}

/**
 * What is known of the store when the headers leave: done (`stored`), under way and able to fail
 * (`storing`), or not attempted (`none`).
 */
export type StoreState = "stored" | "storing" | "none";

/** Members are collected nearest-client first, as the pipeline walks outward, and printed reversed. */
export class CacheStatus {
  private readonly members: CacheStatusMember[] = [];

  add(member: CacheStatusMember): CacheStatusMember {
    this.members.push(member);
    return member;
  }

  /**
   * Marks every member that forwarded the request with the status it got back, what is known of the store
   * when the headers leave, and (where it has none yet) a detail such as why it will not store.
   *
   * `stored` (RFC 9211 §2.4) is claimed only for a store that has already happened (a collapsed waiter
   * answered from the leader's stored entry). A fill's headers leave before its body has arrived, so its
   * store may still fail (a body cut short is never stored): it says `detail=storing` (§2.8) instead,
   * unless it already has a detail of its own (which then wins: it explains the body being sent).
   */
  forwarded(status: number, store: StoreState, detail?: string): void {
    for (const member of this.members) {
      if (member.fwd === undefined) continue;
      member.fwdStatus = status;
      if (store === "stored") member.stored = true;
      const said = detail ?? (store === "storing" ? "storing" : undefined);
      if (said && !member.detail) member.detail = said;
    }
  }

  /**
   * The forwarded answer failed after its head came (a body that broke off while it was read): every member
   * that forwarded says why, in place of what it said of the store (which cannot happen now).
   */
  failed(detail: string): void {
    for (const member of this.members) if (member.fwd !== undefined) member.detail = detail;
  }

  toString(): string {
    return [...this.members].reverse().map(formatMember).join(", ");
  }
}

function formatMember(m: CacheStatusMember): string {
  const params: string[] = [m.cache];
  if (m.hit) params.push("hit");
  if (m.fwd) params.push(`fwd=${m.fwd}`);
  if (m.fwdStatus !== undefined) params.push(`fwd-status=${m.fwdStatus}`);
  if (m.stored) params.push("stored");
  if (m.ttl !== undefined) params.push(`ttl=${Math.floor(m.ttl)}`);
  if (m.collapsed) params.push("collapsed");
  if (m.detail) params.push(`detail=${formatDetail(m.detail)}`);
  return params.join("; ");
}

/**
 * A token when the value is one (RFC 8941 §3.3.4), else a String (§3.3.3): printable ASCII only, with `"`
 * and `\` escaped; anything else becomes `?`.
 */
function formatDetail(detail: string): string {
  if (/^[a-zA-Z*][a-zA-Z0-9:/!#$%&'*+.^_`|~-]*$/.test(detail)) return detail;
  const printable = detail.replace(/[^\x20-\x7e]/g, "?").replace(/["\\]/g, (c) => `\\${c}`);
  return `"${printable}"`;
}
