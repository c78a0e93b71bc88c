import { TiercelError } from "../core/errors";
import { cacheKey, keyPartsFor } from "../core/keys";
import { urlPurgeKey } from "../core/purge";
import { isResizeUrl, parseResizeUrl } from "../optimize/resize-url";
import { checkConnectTarget, checkOriginUrl } from "../origins/address";
import type { AuditEntry, AuditQuery, AuditRecord } from "./audit";
import type { PurgeAdd, PurgeMeta, PurgeRows } from "./purges";
import { type Site, siteSchema } from "./schema";
import type { FeedAnswer, FeedChange, PublishedPurges, PurgeDelta } from "./store";
import type { Actor, StoredToken, TokenInfo } from "./tokens";

/**
 * What a site's owner (src/objects/site-owner.ts) decides, as pure functions: the next state of a site
 * after an edit or a purge, which host claims an edit needs, and when the owner may publish to KV. The
 * owner serializes calls to these; nothing here reads a clock or a binding.
 */

/** The owner's state: the current config and its revision, or the tombstone a deleted site leaves. */
export type OwnerState =
  | {
      kind: "site";
      site: Site;
      revision: number;
      /** The revision at which the settings last changed (absent: `revision`); purges alone leave it. */
      configRevision?: number;
    }
  | { kind: "deleted"; generation: number; revision: number };

/** A site as the owner answers for it: the config and its revision (bumped by every write, never reused). */
export interface OwnedSite {
  site: Site;
  revision: number;
}

/** An error as it crosses a Durable Object RPC boundary (a class does not survive it; the code does). */
export interface WireError {
  code: TiercelError["code"];
  status: number;
  message: string;
  details?: Record<string, unknown>;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: WireError };

/** Runs `work`, turning a TiercelError into an Outcome; anything else is a bug and is rethrown. */
export async function outcomeOf<T>(work: () => Promise<T> | T): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    if (!(error instanceof TiercelError)) throw error;
    return {
      ok: false,
      error: { code: error.code, status: error.status, message: error.message, details: error.details },
    };
  }
}

/** The value of an Outcome, or its error thrown again as a TiercelError. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  const { code, status, message, details } = outcome.error;
  return throwError(new TiercelError(code, status, message, details ? { details } : undefined));
}

function throwError(error: TiercelError): never {
  throw error;
}

/**
 * The site an edit produces. Generation and purge records belong to the owner: what a body says about
 * them is not taken, so an edit built from a stale read can never roll a purge or a generation back.
 * A site created over a tombstone starts past the deleted site's generation (its old entries stay
 * unreachable).
 */
export function siteFromBody(id: string, body: unknown, current: OwnerState | null): Site {
  if (!isObject(body)) throw invalid([{ path: "(root)", message: "must be a JSON object" }]);
  if ("id" in body && body.id !== id) throw invalid([{ path: "id", message: `must be ${id}, the id in the URL` }]);
  const { generation: _g, purges: _p, ...rest } = body;
  const owned =
    current?.kind === "site"
      ? { generation: current.site.generation }
      : { generation: current?.kind === "deleted" ? current.generation + 1 : 0 };
  const parsed = siteSchema.safeParse({ ...rest, id, ...owned });
  if (!parsed.success) {
    throw invalid(
      parsed.error.issues.map((issue) => ({ path: issue.path.join(".") || "(root)", message: issue.message })),
    );
  }
  const site = parsed.data;
  if (site.hosts.length === 0) throw invalid([{ path: "hosts", message: "must name at least one host" }]);
  checkOrigin(site);
  return site;
}

/** What a purge asks for, validated. */
export interface PurgeRequest {
  urls: string[];
  tags: string[];
  all: boolean;
  soft: boolean;
}

export function parsePurgeRequest(body: unknown): PurgeRequest {
  if (!isObject(body)) throw invalid([{ path: "(root)", message: "must be a JSON object" }]);
  const request = {
    urls: stringList(body.urls, "urls"),
    tags: stringList(body.tags, "tags"),
    all: body.all === true,
    soft: body.soft === true,
  };
  if (request.urls.length === 0 && request.tags.length === 0 && !request.all) {
    throw invalid([{ path: "(root)", message: "name urls, tags, or all: true" }]);
  }
  return request;
}

/** What a purge does: the site after it (a purge of everything bumps its generation), the records it adds. */
export interface PurgePlan {
  site: Site;
  /** The cache keys of its URL purges, to delete now. */
  keys: string[];
  add: PurgeAdd;
  /** The settings changed (a new generation): they are published again, not only the purge state. */
  configChanged: boolean;
}

/**
 * A purge at `now` as the owner applies it. URL keys are computed with the same key function as requests,
 * from the state the purge applies to, so a concurrent generation bump cannot make them miss.
 */
export async function planPurge(site: Site, request: PurgeRequest): Promise<PurgePlan> {
  const keys: string[] = [];
  for (const raw of request.urls) {
    const target = URL.canParse(raw) ? new URL(raw) : null;
    if (!target || !site.hosts.includes(target.hostname.toLowerCase())) {
      throw invalid([{ path: "urls", message: `${raw} is not an absolute URL on one of the site's hosts` }]);
    }
    // A resize URL is keyed as the pipeline keys it: its source path plus its options.
    const resized = isResizeUrl(target) ? resizedKeyParts(target, site) : undefined;
    keys.push(await cacheKey(resized ?? keyPartsFor(site, target)));
  }
  const everything = request.all && !request.soft;
  return {
    // A purge of everything needs no records: the generation is part of every key.
    site: everything ? { ...site, generation: site.generation + 1 } : site,
    keys,
    add: { urls: keys.map(urlPurgeKey), tags: request.tags, soft: request.soft, softAll: request.all && request.soft },
    configChanged: everything,
  };
}

/** Whether a config still carries purge records (from before owners kept them apart). */
export function hasLegacyPurges(site: Site): boolean {
  const p = site.purges;
  return (
    Object.keys(p.urls).length + Object.keys(p.tags).length + Object.keys(p.softTags).length > 0 ||
    p.softAll !== undefined
  );
}

/** Moves a config's purge records into the purge state, keeping their times; the config keeps none. */
export function migrateLegacyPurges(site: Site, rows: PurgeRows, meta: PurgeMeta): { site: Site; meta: PurgeMeta } {
  const p = site.purges;
  for (const [key, at] of Object.entries(p.urls)) rows.putUrl(urlPurgeKey(key), at);
  for (const [tag, at] of Object.entries(p.tags)) rows.putTag(tag, false, at);
  for (const [tag, at] of Object.entries(p.softTags)) rows.putTag(tag, true, at);
  const next: PurgeMeta = { ...meta, version: meta.version + 1 };
  if (p.softAll !== undefined) next.softAll = Math.max(p.softAll, meta.softAll ?? 0);
  return { site: { ...site, purges: { urls: {}, tags: {}, softTags: {} } }, meta: next };
}

/**
 * The claims a site needs to hold exactly `hosts`, given the current owner of each (null: free, or
 * released). A host owned by another site refuses the whole change: claims are all or nothing.
 */
export function claimPlan(
  owners: ReadonlyMap<string, string | null>,
  siteId: string,
  hosts: readonly string[],
  held: readonly string[],
): { taken: { host: string; siteId: string } } | { claim: string[]; release: string[] } {
  for (const host of hosts) {
    const owner = owners.get(host) ?? null;
    if (owner !== null && owner !== siteId) return { taken: { host, siteId: owner } };
  }
  return {
    claim: hosts.filter((host) => (owners.get(host) ?? null) !== siteId),
    release: held.filter((host) => !hosts.includes(host)),
  };
}

export function hostTaken(taken: { host: string; siteId: string }): TiercelError {
  return new TiercelError("host_taken", 409, `The host ${taken.host} belongs to another site`, {
    details: { host: taken.host, siteId: taken.siteId },
  });
}

/**
 * KV allows one write per second per key: the owner publishes at once when its last publish is at least
 * `intervalMs` old, else at the returned time, once, with whatever the state is then (writes coalesce).
 */
export const PUBLISH_INTERVAL_MS = 1_000;

export function nextPublishAt(lastPublishedAt: number, now: number, intervalMs = PUBLISH_INTERVAL_MS): number {
  return Math.max(now, lastPublishedAt + intervalMs);
}

/** Origin addresses are checked when a site is written, not only when it is used; each under its own field. */
function checkOrigin(site: Site): void {
  const check = (field: string, run: () => unknown) => {
    try {
      run();
    } catch (error) {
      throw invalid([{ path: field, message: error instanceof Error ? error.message : String(error) }]);
    }
  };
  const origin = site.origin;
  if (origin.kind === "s3") check("origin.endpoint", () => checkOriginUrl(origin.endpoint, origin));
  else {
    check("origin.url", () => checkOriginUrl(origin.url, origin));
    const connectTo = origin.connectTo;
    if (connectTo) check("origin.connectTo", () => checkConnectTarget(connectTo, origin));
  }
}

/** The key parts of a resize URL, or a 400 naming the URL when its options do not parse for this site. */
function resizedKeyParts(target: URL, site: Site) {
  try {
    const { request, source } = parseResizeUrl(target, site.optimize);
    return keyPartsFor(site, source, request.canonical);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw invalid([{ path: "urls", message: `${target.href}: ${message}` }]);
  }
}

function stringList(value: unknown, path: string): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) ||
    !value.every((item) => typeof item === "string" && item.length > 0 && item.length <= 1024)
  ) {
    throw invalid([{ path, message: "must be a list of non-empty strings" }]);
  }
  if (value.length > 1000) throw invalid([{ path, message: "at most 1000 at a time" }]);
  return value;
}

export function invalid(issues: { path: string; message: string }[]): TiercelError {
  const message = issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ");
  return new TiercelError("invalid_config", 400, message, { details: { issues } });
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Runs async work one call at a time, in call order. A Durable Object's input gate holds other events
 * only while it awaits its own storage; an owner that awaits KV or another object needs this to keep
 * read-decide-write steps whole.
 */
export function serialQueue(): <T>(work: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(work: () => Promise<T>) => {
    const result = tail.then(work);
    tail = result.catch(() => undefined);
    return result;
  };
}

/**
 * The site owner's RPC surface (src/objects/site-owner.ts), as the admin API uses it. Every change names
 * its actor: the owner records it in the audit log in the same transaction as the change.
 */
export interface SiteOwnerApi {
  read(id: string): Promise<Outcome<OwnedSite | null>>;
  /** `ifRevision`: refuse with 412 unless the current revision (0: none) is this one. */
  write(
    id: string,
    body: unknown,
    ifRevision: number | undefined,
    actor: Actor,
  ): Promise<Outcome<OwnedSite & { dropped: string[] }>>;
  purge(id: string, body: unknown, actor: Actor): Promise<Outcome<PurgeDone>>;
  remove(id: string, actor: Actor): Promise<Outcome<{ hosts: string[] }>>;
  /** The whole purge state, as published. */
  purges(id: string): Promise<PublishedPurges>;
}

/** An audit record on its way from an owner's outbox to the registry: its outbox number and the entry. */
export interface AuditHandOver {
  seq: number;
  entry: AuditEntry;
}
/** What a purge answers: the site, its revision, the keys to delete now, and the purge state after it. */
export interface PurgeDone extends OwnedSite {
  keys: string[];
  request: PurgeRequest;
  /** What the purge changed in the purge state (the admin isolate applies it to what it knows). */
  delta: PurgeDelta;
  /** Tag records dropped to keep the tag table bounded by this purge (see src/sites/purges.ts). */
  evictedTags: number;
}

/** The control feed's RPC surface (src/objects/control-feed.ts). */
export interface ControlFeedApi {
  append(change: Omit<FeedChange, "seq" | "at">): Promise<number>;
  since(seq: number): Promise<FeedAnswer>;
}

/** The host registry's RPC surface (src/objects/host-registry.ts). */
export interface HostRegistryApi {
  /** Claims exactly `hosts` for the site, all or nothing; releases the ones it held and no longer lists. */
  setHosts(siteId: string, hosts: string[]): Promise<Outcome<{ released: string[] }>>;
  /** The hosts the site holds; `hints` not yet known are first read from KV (sites stored before owners). */
  hostsOf(siteId: string, hints: string[]): Promise<string[]>;
  release(siteId: string): Promise<string[]>;
  /** Site ids holding at least one host, in id order, after `after`. */
  list(after: string | null, limit: number): Promise<{ ids: string[]; cursor: string | null }>;
  /** Stores a scoped token (its hash) and its audit record, in one transaction. */
  createToken(token: StoredToken, actor: Actor): Promise<Outcome<TokenInfo>>;
  token(id: string): Promise<StoredToken | null>;
  listTokens(): Promise<TokenInfo[]>;
  revokeToken(id: string, actor: Actor, at: number): Promise<Outcome<TokenInfo>>;
  /** Keeps records an owner hands over from its outbox (idempotent by `source` and `seq`). */
  appendAudit(source: string, records: AuditHandOver[]): Promise<void>;
  audit(query: AuditQuery, sites: string[] | null): Promise<{ records: AuditRecord[]; next: string | null }>;
}
