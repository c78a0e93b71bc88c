import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { type Deps, respond } from "../../src/core/pipeline";
import type { SiteInput } from "../../src/sites/schema";
import { siteKey } from "../../src/sites/store";
import worker, { platformFor } from "../../src/worker";
import type { RouteSpec, SeenRequest } from "./origin-server";

/** The loopback origin, as seen from inside workerd. */
export const origin = {
  url: env.TEST_ORIGIN,

  /** Sets how `path` answers from now on. */
  async route(path: string, spec: RouteSpec): Promise<void> {
    const res = await fetch(`${env.TEST_ORIGIN}/__route?path=${encodeURIComponent(path)}`, {
      method: "PUT",
      body: JSON.stringify(spec),
    });
    if (!res.ok) throw new Error(`could not set route ${path}`);
  },

  /** How many requests reached `path`, and the last of them. */
  async hits(path: string): Promise<{ hits: number; last: SeenRequest | null }> {
    const res = await fetch(`${env.TEST_ORIGIN}/__hits?path=${encodeURIComponent(path)}`);
    return res.json();
  },
};

let counter = 0;
/** A name no other test uses, so tests never share paths, hosts or ids (storage outlives a test). */
export function unique(prefix: string): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Writes a site config to the real local SITES namespace, as an operator would, and makes this isolate
 * and data center forget what they remembered about the host (as the admin API does after a write).
 */
export async function putSite(host: string, site: SiteInput | unknown): Promise<void> {
  await env.SITES.put(siteKey(host), JSON.stringify(site));
  await platformFor(env).sites.forget([host]);
}

/** A new site on a fresh host whose origin is the loopback server (optionally under a base path). */
export async function newSite(
  options: {
    basePath?: string;
    cache?: SiteInput["cache"];
    optimize?: SiteInput["optimize"];
    bypass?: SiteInput["bypass"];
    forwardedProto?: "https" | "http" | "client";
  } = {},
): Promise<{ host: string; id: string }> {
  const host = `${unique("site")}.test`;
  const id = unique("id");
  // The test origin is on loopback, which a site has to allow explicitly.
  const origin = {
    kind: "http" as const,
    url: `${env.TEST_ORIGIN}${options.basePath ?? ""}`,
    allowPrivate: true,
    ...(options.forwardedProto ? { forwardedProto: options.forwardedProto } : {}),
  };
  await putSite(host, {
    id,
    origin,
    ...(options.cache ? { cache: options.cache } : {}),
    ...(options.optimize ? { optimize: options.optimize } : {}),
    ...(options.bypass ? { bypass: options.bypass } : {}),
  });
  return { host, id };
}

/** A clock the test moves by hand; pass `clock.now` as the `now` override. */
export function testClock(start = Date.now()) {
  let t = start;
  return {
    now: () => t,
    advance(seconds: number) {
      t += seconds * 1000;
    },
  };
}

/**
 * Sends a request through the Worker's own fetch handler with the real bindings, then waits for every
 * background store it started (no sleeping). With `overrides`, runs the pipeline on the same platform
 * pieces with some replaced (a failing tier, a controlled clock), and without the shield unless `overrides`
 * names one: the shield (a Durable Object) builds its own platform, which the replaced pieces would not reach.
 */
export async function send(
  input: string,
  init?: RequestInit,
  overrides?: Partial<Omit<Deps, "waitUntil">>,
): Promise<Response> {
  const request = new Request(input, init) as Request<unknown, IncomingRequestCfProperties>;
  const ctx = createExecutionContext();
  const response = overrides
    ? await respond(request, {
        ...withoutShield(platformFor(env)),
        ...overrides,
        waitUntil: (work) => ctx.waitUntil(work),
      })
    : await worker.fetch(request, env, ctx);
  const body = await response.arrayBuffer().catch((error: unknown) => error);
  await waitOnExecutionContext(ctx);
  if (body instanceof ArrayBuffer)
    return new Response(body.byteLength || init?.method === "HEAD" ? body : null, response);
  // The body broke off: hand back the headers and the error, as a client would see them.
  return Object.assign(new Response(null, response), { bodyError: body });
}

/** A platform's pieces without the shield: each request fetches the origin from this isolate, with its own pieces. */
export function withoutShield(platform: Omit<Deps, "waitUntil">): Omit<Deps, "waitUntil"> {
  const { shield: _shield, ...rest } = platform;
  return rest;
}

/** The SigV4-verifying bucket server, driven through the loopback origin's relay (its requests must be signed). */
export const bucket = {
  async put(
    name: string,
    key: string,
    body: string | Uint8Array,
    options: { contentType?: string; cacheControl?: string } = {},
  ): Promise<void> {
    const headers: Record<string, string> = { "content-type": options.contentType ?? "text/plain" };
    if (options.cacheControl) headers["x-cache-control"] = options.cacheControl;
    const query = `bucket=${encodeURIComponent(name)}&key=${encodeURIComponent(key)}`;
    const res = await fetch(`${env.TEST_ORIGIN}/__s3/put?${query}`, { method: "PUT", headers, body });
    if (!res.ok) throw new Error(`could not put ${name}/${key}`);
  },

  /** Signed GET/HEAD requests that reached one object, the last request, and how many were refused. */
  async hits(
    name: string,
    key: string,
  ): Promise<{ hits: number; last: { headers: Record<string, string>; path: string } | null; rejected: number }> {
    const query = `bucket=${encodeURIComponent(name)}&key=${encodeURIComponent(key)}`;
    return (await fetch(`${env.TEST_ORIGIN}/__s3/hits?${query}`)).json();
  },
};

/** A new site on a fresh host whose origin is the test bucket (on loopback, so allowPrivate). */
export async function newBucketSite(
  options: { prefix?: string; wrongSecret?: boolean; bucketName?: string } = {},
): Promise<{ host: string; id: string }> {
  const host = `${unique("bucket-site")}.test`;
  const id = unique("id");
  await putSite(host, {
    id,
    origin: {
      kind: "s3",
      endpoint: env.TEST_S3_ENDPOINT,
      bucket: options.bucketName ?? "test-bucket",
      region: "us-east-1",
      prefix: options.prefix ?? "",
      accessKeyIdSecret: "TEST_S3_KEY_ID",
      secretAccessKeySecret: options.wrongSecret ? "TEST_S3_WRONG_SECRET" : "TEST_S3_SECRET",
      allowPrivate: true,
    },
  });
  return { host, id };
}

/** The bytes of a file under test/fixtures/, served by the loopback origin (workerd has no file system). */
export async function fixture(name: string): Promise<Uint8Array> {
  const path = `/__fixtures/${name}`;
  await origin.route(path, { file: name });
  const response = await fetch(`${env.TEST_ORIGIN}${path}`);
  if (!response.ok) throw new Error(`fixture ${name}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The admin token the test Worker is given (vitest.config.ts). */
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123";

/** One admin API call as an operator makes it: JSON in and out, the test token unless `token` says otherwise. */
export async function adminCall(
  method: string,
  path: string,
  options: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {},
) {
  const { body, token = ADMIN_TOKEN, headers = {} } = options;
  const init: RequestInit = { method, headers: { "content-type": "application/json", ...headers } };
  if (token !== null) (init.headers as Record<string, string>).authorization = `Bearer ${token}`;
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await send(`http://admin.test/_tiercel/api/v1${path}`, init);
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}
