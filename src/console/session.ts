/**
 * The console's sessions, as functions of WebCrypto alone. A session is a cookie holding the token the
 * operator signed in with, sealed with AES-GCM under a key derived (HKDF) from ADMIN_TOKEN: opaque to the
 * browser and to anyone who reads it, unforgeable, and void when ADMIN_TOKEN changes. The console passes the
 * token to the admin API in-process on each request, so a scoped token revoked in the meantime is refused at
 * once. The cookie is `HttpOnly; Secure; SameSite=Strict`, scoped to the console's path; the token is never
 * in a URL, a page or script-readable storage.
 *
 * Each session has a random id; its CSRF token is an HMAC of that id under a second derived key, so every
 * form carries a value only a page of this session can know.
 */

export const COOKIE = "tiercel_console";
export const CONSOLE_PATH = "/_tiercel/console";
/** A session lasts 8 hours from sign-in. */
export const SESSION_MS = 8 * 3_600_000;

export interface Session {
  /** The token signed in with (the global ADMIN_TOKEN or a scoped token). */
  token: string;
  /** Random, per sign-in: the CSRF token is derived from it. */
  id: string;
  /** Epoch ms after which the session is void. */
  expires: number;
}

interface Keys {
  seal: CryptoKey;
  csrf: CryptoKey;
}

const derived = new Map<string, Promise<Keys>>();

/** The keys derived from a secret (ADMIN_TOKEN), once per isolate and secret. */
function keysFor(secret: string): Promise<Keys> {
  let keys = derived.get(secret);
  if (!keys) {
    keys = deriveKeys(secret);
    // A rotated secret replaces the old one; at most a few are ever held.
    if (derived.size > 4) derived.clear();
    derived.set(secret, keys);
  }
  return keys;
}

async function deriveKeys(secret: string): Promise<Keys> {
  const encoder = new TextEncoder();
  const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
  const params = (info: string) => ({
    name: "HKDF",
    hash: "SHA-256",
    salt: encoder.encode("tiercel-console/1"),
    info: encoder.encode(info),
  });
  const [seal, csrf] = await Promise.all([
    crypto.subtle.deriveKey(params("session"), base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]),
    crypto.subtle.deriveKey(params("csrf"), base, { name: "HMAC", hash: "SHA-256", length: 256 }, false, ["sign"]),
  ]);
  return { seal, csrf };
}

export function newSession(token: string, now: number): Session {
  return { token, id: base64url(crypto.getRandomValues(new Uint8Array(16))), expires: now + SESSION_MS };
}

/** The cookie's value: base64url(iv ‖ AES-GCM(JSON)). */
export async function seal(session: Session, secret: string): Promise<string> {
  const { seal: key } = await keysFor(secret);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = new TextEncoder().encode(JSON.stringify({ t: session.token, i: session.id, e: session.expires }));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, plain));
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv);
  out.set(sealed, iv.length);
  return base64url(out);
}

/** The session a cookie value holds, or null: malformed, forged, sealed under another secret, or expired. */
export async function unseal(value: string, secret: string, now: number): Promise<Session | null> {
  if (value.length > 4096) return null;
  const bytes = fromBase64url(value);
  if (bytes === null || bytes.length < 12 + 16) return null;
  const { seal: key } = await keysFor(secret);
  let plain: ArrayBuffer;
  try {
    plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.slice(0, 12) }, key, bytes.slice(12));
  } catch {
    return null;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(plain));
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const { t, i, e } = parsed as Record<string, unknown>;
  if (typeof t !== "string" || typeof i !== "string" || typeof e !== "number" || e <= now) return null;
  return { token: t, id: i, expires: e };
}

/** The CSRF token of a session: HMAC-SHA256 of its id. */
export async function csrfToken(session: Session, secret: string): Promise<string> {
  const { csrf } = await keysFor(secret);
  const mac = await crypto.subtle.sign("HMAC", csrf, new TextEncoder().encode(session.id));
  return base64url(new Uint8Array(mac));
}

/** Whether a submitted CSRF token is the session's, compared in constant time. */
export async function checkCsrf(given: string | null, session: Session, secret: string): Promise<boolean> {
  if (given === null || given.length > 100) return false;
  const expected = new TextEncoder().encode(await csrfToken(session, secret));
  const presented = new TextEncoder().encode(given);
  if (presented.length !== expected.length) return false;
  return crypto.subtle.timingSafeEqual(presented, expected);
}

/** The Set-Cookie value of a session (or, with `null`, of signing out). */
export function sessionCookie(value: string | null, maxAgeSeconds = SESSION_MS / 1000): string {
  const attributes = `Path=${CONSOLE_PATH}; HttpOnly; Secure; SameSite=Strict`;
  return value === null
    ? `${COOKIE}=; ${attributes}; Max-Age=0`
    : `${COOKIE}=${value}; ${attributes}; Max-Age=${maxAgeSeconds}`;
}

/** The session cookie's value in a Cookie header, if present. */
export function cookieValue(header: string | null): string | null {
  if (!header) return null;
  for (const part of header.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === COOKIE) return rest.join("=");
  }
  return null;
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  } catch {
    return null;
  }
}
