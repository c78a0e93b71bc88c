import { ACCEPTED_CODINGS } from "../core/http/content-coding";
import { endToEndHeaders } from "../core/http/headers";
import type { Origin, OriginRequest } from "../core/origin";
import type { HttpOriginConfig } from "../sites/schema";
import { checkConnectTarget, checkOriginUrl } from "./address";
import { cleanResponse, LOOP_TOKEN } from "./hygiene";
import { socketFetch } from "./socket-fetch";
import { fetchUpstream, type UpstreamOptions } from "./upstream";

/**
 * A site's backend at a base URL, optionally reached at another `host:port` while the URL's host is sent
 * as Host (the write-up's "origin IP and port per domain"). It gets what a reverse proxy is expected to
 * pass — the method, the body of non-GET requests, cookies and application headers — but never the
 * headers that would let one client poison what others are served from the cache (see `UNKEYED`).
 */
export interface HttpOriginOptions extends UpstreamOptions {
  config: HttpOriginConfig;
  /**
   * How `connectTo` is honoured. `direct` (workerd, local): speak HTTP/1.1 over a TCP socket to the address
   * and send the site's Host.
   * `resolve-override` (Cloudflare): keep the URL and set `cf.resolveOverride` to the connect host, which
   * Cloudflare applies only to hostnames in the same zone, and only on the default ports.
   */
  connectMode?: "direct" | "resolve-override";
}

/**
 * Request headers never passed on. Either the runtime sets them (Host, Content-Length), they describe the
 * client's connection to Cloudflare (cf-*), or they are known to change what an application answers
 * without being part of the cache key: forwarding headers a client could forge (Tiercel sets its own
 * X-Forwarded-For and -Proto), URL rewrites and method overrides.
 */
const UNKEYED = [
  "host",
  "content-length",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-forwarded-server",
  "x-forwarded-scheme",
  "x-forwarded-ssl",
  "x-host",
  "x-original-host",
  "x-original-url",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-real-ip",
  "true-client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "cdn-loop",
];

export function httpOrigin(options: HttpOriginOptions): Origin {
  const { config } = options;
  const base = checkOriginUrl(config.url, { allowPrivate: config.allowPrivate });
  const basePath = base.pathname.replace(/\/+$/, "");
  const connect = config.connectTo
    ? checkConnectTarget(config.connectTo, { allowPrivate: config.allowPrivate })
    : undefined;
  const connectMode = options.connectMode ?? "direct";
  // workerd's fetch() derives Host from the URL and ignores a Host header, so in direct mode Tiercel speaks
  // HTTP/1.1 itself over a TCP socket to the address, with the site's host (from the config, never the
  // client) as Host; with https the certificate is checked against that host, not the address.
  const direct =
    connect && connectMode === "direct"
      ? {
          ...options,
          fetch: socketFetch({
            hostname: connect.host.replace(/^\[(.*)\]$/, "$1"),
            port: connect.port,
            tls: base.protocol === "https:",
            serverName: base.hostname,
          }),
        }
      : undefined;

  return {
    async fetch(request: OriginRequest): Promise<Response> {
      const target = new URL(base);
      target.pathname = basePath + request.url.pathname;
      target.search = request.url.search;

      const headers = endToEndHeaders(request.headers, UNKEYED);
      for (const name of [...headers.keys()]) if (name.startsWith("cf-")) headers.delete(name);
      const clientIp = request.headers.get("cf-connecting-ip");
      if (clientIp) headers.set("x-forwarded-for", clientIp);
      // The key has no scheme: unless the site asks for the client's, the backend is told a fixed one, so
      // its answer (an http→https redirect, absolute links) is the same for every client of the key.
      const clientScheme = request.url.protocol.replace(":", "");
      headers.set("x-forwarded-proto", config.forwardedProto === "client" ? clientScheme : config.forwardedProto);
      // Only the codings Tiercel decodes, whatever the client accepts: what is stored is the identity form.
      headers.set("accept-encoding", ACCEPTED_CODINGS);
      // RFC 8586: say this request went through Tiercel, so an origin that points back is caught.
      const loop = request.headers.get("cdn-loop");
      headers.set("cdn-loop", loop ? `${loop}, ${LOOP_TOKEN}` : LOOP_TOKEN);

      const init: RequestInit<RequestInitCfProperties> = {
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD" ? null : request.body,
        redirect: "manual",
      };
      if (direct) {
        headers.set("host", base.host);
        return cleanResponse(await fetchUpstream(new Request(target, init), direct), []);
      }
      if (connect) init.cf = { resolveOverride: connect.host };
      return cleanResponse(await fetchUpstream(new Request(target, init), options), []);
    },
  };
}
