import { TiercelError } from "../core/errors";
import type { PurgeRequest } from "./owner";
import type { Site } from "./schema";
import type { Actor } from "./tokens";

/**
 * The audit log, as pure functions: what a record says about a change, how long records are kept, and what
 * a read may ask for.
 *
 * Where records live: a site's owner writes the record of a site change into its own SQLite in the same
 * transaction as the change (an outbox: a change is never stored without its record, nor a record without
 * its change), then hands it to the host registry, which keeps the one log the API reads. A hand-over that
 * fails is retried from the owner's alarm; the registry ignores a record it already has, so a retry never
 * doubles one. Token changes are recorded by the registry itself, in the transaction that stores the token.
 */

export type AuditAction =
  | "site.create"
  | "site.update"
  | "site.delete"
  | "site.purge"
  | "token.create"
  | "token.revoke";

/** One change: who, what, when. */
export interface AuditEntry {
  /** Epoch ms, when the owner (or the registry) made the change. */
  at: number;
  actor: Actor;
  action: AuditAction;
  /** The site changed; null for token changes. */
  site: string | null;
  hosts: string[];
  summary: Record<string, unknown>;
}

/** A record as the API answers it. */
export interface AuditRecord extends Omit<AuditEntry, "at"> {
  id: number;
  at: string;
}

/** The registry keeps the newest this many records, none older than `AUDIT_KEEP_MS`. */
export const AUDIT_KEEP_RECORDS = 10_000;
export const AUDIT_KEEP_MS = 90 * 86_400_000;

/** Top-level fields an edit can change; `generation` and `purges` belong to purges. */
const SETTINGS = ["version", "origin", "cache", "bypass", "optimize"] as const;

/** The record of a site write: created, or which fields changed and which hosts came and went. */
export function siteWriteEntry(
  actor: Actor,
  before: Site | null,
  after: Site,
  revision: number,
  at: number,
): AuditEntry {
  if (before === null) {
    return { at, actor, action: "site.create", site: after.id, hosts: after.hosts, summary: { revision } };
  }
  const changed = SETTINGS.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(after[field]));
  const summary: Record<string, unknown> = { revision, changed };
  const added = after.hosts.filter((host) => !before.hosts.includes(host));
  const removed = before.hosts.filter((host) => !after.hosts.includes(host));
  if (added.length > 0) summary.hostsAdded = added;
  if (removed.length > 0) summary.hostsRemoved = removed;
  return { at, actor, action: "site.update", site: after.id, hosts: after.hosts, summary };
}

/** At most this many purged URLs are named in a record (the count is always there). */
const URLS_NAMED = 20;

export function purgeEntry(actor: Actor, site: Site, request: PurgeRequest, revision: number, at: number): AuditEntry {
  const summary: Record<string, unknown> = {
    revision,
    urls: request.urls.slice(0, URLS_NAMED),
    urlCount: request.urls.length,
    tags: request.tags,
    all: request.all,
    soft: request.soft,
  };
  return { at, actor, action: "site.purge", site: site.id, hosts: site.hosts, summary };
}

export function deleteEntry(actor: Actor, site: Site, revision: number, at: number): AuditEntry {
  return { at, actor, action: "site.delete", site: site.id, hosts: site.hosts, summary: { revision } };
}

/** What `GET /audit` may ask: one site, how many (1–500, default 50), and before which record or time. */
export interface AuditQuery {
  site: string | null;
  limit: number;
  /** Records with a smaller id (the `next` cursor of the previous page). */
  beforeId: number | null;
  /** Records made before this time (epoch ms). */
  beforeAt: number | null;
}

export function parseAuditQuery(params: URLSearchParams): AuditQuery {
  const site = params.get("site");
  if (site !== null && !/^[A-Za-z0-9_-]{1,64}$/.test(site)) throw badQuery("site must be a site id");
  const rawLimit = params.get("limit");
  const limit = rawLimit === null ? 50 : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw badQuery("limit must be an integer from 1 to 500");
  const before = params.get("before");
  let beforeId: number | null = null;
  let beforeAt: number | null = null;
  if (before !== null) {
    if (/^\d{1,15}$/.test(before)) beforeId = Number(before);
    else if (/^\d{4}-\d{2}-\d{2}/.test(before) && Number.isFinite(Date.parse(before))) beforeAt = Date.parse(before);
    else throw badQuery("before must be a record id (the previous page's next) or an ISO 8601 time");
  }
  return { site, limit, beforeId, beforeAt };
}

function badQuery(message: string): TiercelError {
  return new TiercelError("invalid_query", 400, `Audit query: ${message}`);
}
