import { TiercelError } from "../core/errors";
import { cacheKey, keyPartsFor } from "../core/keys";
import { isResizeUrl, parseResizeUrl } from "../optimize/resize-url";
import { checkConnectTarget, checkOriginUrl } from "../origins/address";
import type { AuditEntry, AuditQuery, AuditRecord } from "./audit";
import { type Site, siteSchema } from "./schema";
import type { Actor, StoredToken, TokenInfo } from "./tokens";

/**
 * What a site's owner (src/objects/site-owner.ts) decides, as pure functions: the next state of a site
 * after an edit or a purge, which host claims an edit needs, and when the owner may publish to KV. The
 * owner serializes calls to these; nothing here reads a clock or a binding.
 */

/** The owner's state: the current config and its revision, or the tombstone a deleted site leaves. */
export type OwnerState =
  | { kind: "site"; site: Site; revision: number }
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
      ? { generation: current.site.generation, purges: current.site.purges }
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

/** Purge records older than this are dropped (no entry can be retained longer). */
const RECORD_KEEP_MS = 400 * 86_400_000;
/** More purge records than this and the site's generation is bumped instead (a purge of everything). */
const MAX_RECORDS = 10_000;

/**
 * The site after a purge at `now`, and the cache keys of its URL purges (computed with the same key
 * function as requests, from the state the purge applies to, so a concurrent generation bump cannot make
 * them miss).
 */
export async function applyPurge(
  site: Site,
  request: PurgeRequest,
  now: number,
): Promise<{ site: Site; keys: string[] }> {
  const purges = structuredClone(site.purges);
  let generation = site.generation;
  const keys: string[] = [];
  for (const raw of request.urls) {
    const target = URL.canParse(raw) ? new URL(raw) : null;
    if (!target || !site.hosts.includes(target.hostname.toLowerCase())) {
      throw invalid([{ path: "urls", message: `${raw} is not an absolute URL on one of the site's hosts` }]);
    }
    // A resize URL is keyed as the pipeline keys it: its source path plus its options.
    const resized = isResizeUrl(target) ? resizedKeyParts(target, site) : undefined;
    const key = await cacheKey(resized ?? keyPartsFor(site, target));
    purges.urls[key] = now;
    keys.push(key);
  }
  for (const tag of request.tags) {
    if (request.soft) purges.softTags[tag] = now;
    else purges.tags[tag] = now;
  }
  if (request.all && request.soft) purges.softAll = now;
  const everything = (request.all && !request.soft) || prune(purges, now) > MAX_RECORDS;
  if (everything) {
    // A purge of everything needs no records: the generation is part of every key.
    generation += 1;
    purges.urls = {};
    purges.tags = {};
    purges.softTags = {};
    delete purges.softAll;
  }
  return { site: { ...site, generation, purges }, keys };
}

/** Drops purge records no entry can be older than; returns how many remain. */
function prune(purges: Site["purges"], now: number): number {
  let count = 0;
  for (const records of [purges.urls, purges.tags, purges.softTags]) {
    for (const [name, time] of Object.entries(records)) {
      if (now - time > RECORD_KEEP_MS) delete records[name];
      else count += 1;
    }
  }
  return count;
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
  purge(
    id: string,
    body: unknown,
    actor: Actor,
  ): Promise<Outcome<OwnedSite & { keys: string[]; request: PurgeRequest }>>;
  remove(id: string, actor: Actor): Promise<Outcome<{ hosts: string[] }>>;
}

/** An audit record on its way from an owner's outbox to the registry: its outbox number and the entry. */
export interface AuditHandOver {
  seq: number;
  entry: AuditEntry;
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
