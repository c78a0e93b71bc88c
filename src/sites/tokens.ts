import { TiercelError } from "../core/errors";
import { invalid, isObject, type OwnerState } from "./owner";
import type { Site } from "./schema";

/**
 * Admin API tokens, as pure functions: the global token's minimum length, the format of site-scoped tokens,
 * what a create request may say, and what a scoped token may do. The host registry
 * (src/objects/host-registry.ts) stores scoped tokens, by SHA-256 hash only; the admin API checks them.
 */

/** The global ADMIN_TOKEN must be at least this long (scripts/start.mjs repeats it for its own message). */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

/** Who made a request: the global token, or a site-scoped token (with the sites it may touch). */
export type Principal = { kind: "admin" } | { kind: "token"; id: string; name: string; sites: string[] };

/** Who an audit record names. */
export type Actor = { kind: "admin" } | { kind: "token"; id: string; name: string };

export function actorOf(principal: Principal): Actor {
  return principal.kind === "admin" ? { kind: "admin" } : { kind: "token", id: principal.id, name: principal.name };
}

/** A scoped token as the registry keeps it: never the secret, only its SHA-256 (hex). */
export interface StoredToken {
  id: string;
  name: string;
  sites: string[];
  hash: string;
  createdAt: number;
}

/** A scoped token as the API lists it. */
export interface TokenInfo {
  id: string;
  name: string;
  sites: string[];
  createdAt: string;
}

export function tokenInfo(token: StoredToken): TokenInfo {
  return { id: token.id, name: token.name, sites: token.sites, createdAt: new Date(token.createdAt).toISOString() };
}

/**
 * `tcs_<id>_<secret>`: a public id (16 hex digits) to find the token by, and 32 random bytes (base64url).
 * The id lets the registry find the hash without an index on secrets; the secret is compared in constant
 * time.
 */
const SCOPED_TOKEN = /^tcs_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$/;

/** The id a bearer token names, if it has the scoped format. */
export function scopedTokenId(bearer: string): string | null {
  return SCOPED_TOKEN.exec(bearer)?.[1] ?? null;
}

/** A new scoped token: its id and the whole secret string (shown once). */
export function newScopedToken(): { id: string; secret: string } {
  const id = hex(crypto.getRandomValues(new Uint8Array(8)));
  const random = crypto.getRandomValues(new Uint8Array(32));
  const secret = `tcs_${id}_${base64url(random)}`;
  return { id, secret };
}

export async function sha256Hex(text: string): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
}

/** Compares a presented secret with a stored SHA-256 (hex) in constant time. */
export async function matchesHash(secret: string, storedHex: string): Promise<boolean> {
  const given = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret)));
  const stored = fromHex(storedHex);
  if (stored === null || stored.length !== given.length) return false;
  return crypto.subtle.timingSafeEqual(given, stored);
}

/** At most this many sites per token, and this many tokens in all. */
export const MAX_TOKEN_SITES = 100;
export const MAX_TOKENS = 1_000;

const SITE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** What `POST /tokens` may say: a name and the site ids the token may touch. */
export function parseTokenRequest(body: unknown): { name: string; sites: string[] } {
  if (!isObject(body)) throw invalid([{ path: "(root)", message: "must be a JSON object" }]);
  const issues: { path: string; message: string }[] = [];
  const name = body.name;
  if (typeof name !== "string" || !/^[\x20-\x7e]{1,100}$/.test(name) || name.trim() === "") {
    issues.push({ path: "name", message: "must be 1–100 printable ASCII characters" });
  }
  const sites = body.sites;
  if (
    !Array.isArray(sites) ||
    sites.length === 0 ||
    sites.length > MAX_TOKEN_SITES ||
    !sites.every((id) => typeof id === "string" && SITE_ID.test(id))
  ) {
    issues.push({ path: "sites", message: `must list 1–${MAX_TOKEN_SITES} site ids` });
  }
  for (const key of Object.keys(body)) {
    if (key !== "name" && key !== "sites") issues.push({ path: key, message: "is not a token field" });
  }
  if (issues.length > 0) throw invalid(issues);
  return { name: (name as string).trim(), sites: [...new Set(sites as string[])].sort() };
}

/** 403 for a site outside a scoped token's list (whether or not the site exists). */
export function checkSiteInScope(principal: Principal, siteId: string): void {
  if (principal.kind === "token" && !principal.sites.includes(siteId)) {
    throw new TiercelError("forbidden_site", 403, `This token may not touch site ${siteId}`);
  }
}

/** 403 for what only the global token may do. */
export function requireAdmin(principal: Principal, what: string): void {
  if (principal.kind !== "admin") {
    throw new TiercelError("admin_only", 403, `Only the global admin token can ${what}`);
  }
}

/**
 * A scoped token edits the settings of a site that exists, and never its hosts: a host claim reaches past
 * the site (it takes a name from every other tenant), so creating a site or changing its hosts needs the
 * global token.
 */
export function checkScopedEdit(actor: Actor, current: OwnerState | null, next: Site): void {
  if (actor.kind === "admin") return;
  if (current?.kind !== "site")
    throw new TiercelError("admin_only", 403, "Only the global admin token can create a site");
  const before = [...current.site.hosts].sort();
  const after = [...next.hosts].sort();
  if (before.length !== after.length || before.some((host, i) => host !== after[i])) {
    throw new TiercelError("admin_only", 403, "Only the global admin token can change a site's hosts");
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function fromHex(text: string): Uint8Array | null {
  if (!/^(?:[0-9a-f]{2})+$/.test(text)) return null;
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}
