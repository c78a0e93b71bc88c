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

/** Members are collected nearest-client first, as the pipeline walks outward, and printed reversed. */
export class CacheStatus {
  private readonly members: CacheStatusMember[] = [];

  add(member: CacheStatusMember): CacheStatusMember {
    this.members.push(member);
    return member;
  }

  /**
   * Marks every member that forwarded the request with the status it got back, whether it will store
   * the response, and (where it has none yet) a detail such as why it will not.
   */
  forwarded(status: number, stored: boolean, detail?: string): void {
    for (const member of this.members) {
      if (member.fwd === undefined) continue;
      member.fwdStatus = status;
      if (stored) member.stored = true;
      if (detail && !member.detail) member.detail = detail;
    }
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
