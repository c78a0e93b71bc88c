import { AwsClient } from "aws4fetch";
import { errorResponse, TiercelError } from "../core/errors";
import type { Origin, OriginRequest } from "../core/origin";
import type { S3OriginConfig } from "../sites/schema";
import { checkOriginUrl } from "./address";
import { cleanResponse } from "./hygiene";
import { objectSegments } from "./path";
import { fetchUpstream, type UpstreamOptions } from "./upstream";

/**
 * An S3-compatible bucket, read-only, signed with SigV4 (aws4fetch). Works with AWS S3, R2's S3 API, GCS
 * interoperability (HMAC keys) and MinIO; see docs/configuration.md for the settings of each.
 *
 * Requests are built, not forwarded: only the allow-listed headers below reach the bucket, never a client's
 * Authorization or x-amz-*, never a body. Responses lose S3's internal headers, and S3 errors become clean
 * JSON errors — S3's XML error bodies can echo the canonical request and the string to sign.
 */
export interface S3OriginOptions extends UpstreamOptions {
  config: S3OriginConfig;
  /** Reads a Worker secret by name; undefined when it does not exist. */
  secret(name: string): string | undefined;
}

/** The only client request headers a bucket ever sees. */
const FORWARDED = ["range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];

/** Response headers internal to the storage service. */
const INTERNAL_PREFIXES = ["x-amz-", "x-goog-", "x-guploader-", "x-minio-", "x-rgw-"];

export function s3Origin(options: S3OriginOptions): Origin {
  const { config } = options;
  const endpoint = checkOriginUrl(config.endpoint, { allowPrivate: config.allowPrivate });
  // The host actually contacted (bucket.endpoint with virtual-hosted addressing) must pass the same rules.
  checkOriginUrl(objectUrl(endpoint, config, "").href, { allowPrivate: config.allowPrivate });
  const accessKeyId = options.secret(config.accessKeyIdSecret);
  const secretAccessKey = options.secret(config.secretAccessKeySecret);
  const client =
    accessKeyId && secretAccessKey
      ? new AwsClient({ accessKeyId, secretAccessKey, service: "s3", region: config.region })
      : undefined;

  return {
    async fetch(request: OriginRequest): Promise<Response> {
      if (!client) {
        throw new TiercelError(
          "origin_auth_failed",
          502,
          `The bucket credentials are missing: set the Worker secrets ${config.accessKeyIdSecret} and ${config.secretAccessKeySecret}`,
        );
      }
      let key = config.prefix + objectSegments(request.url).join("/");
      if (config.indexDocument && (key === config.prefix || key.endsWith("/"))) key += config.indexDocument;
      const headers = new Headers();
      for (const name of FORWARDED) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      const signed = await client.sign(objectUrl(endpoint, config, key), { method: request.method, headers });
      const response = await fetchUpstream(signed, options);
      if (response.status >= 300 && response.status !== 304) return cleanError(response, request.method);
      return cleanResponse(response, INTERNAL_PREFIXES);
    },
  };
}

/**
 * The object's URL. Each key segment is encoded the way SigV4 canonicalizes S3 paths (RFC 3986 unreserved
 * characters kept, everything else percent-encoded once, `/` kept): spaces, `+`, `%`, unicode and `//`.
 */
export function objectUrl(endpoint: URL, config: Pick<S3OriginConfig, "bucket" | "addressing">, key: string): URL {
  const encodedKey = key.split("/").map(encodeKeySegment).join("/");
  const url = new URL(endpoint);
  const basePath = url.pathname.replace(/\/+$/, "");
  if (config.addressing === "virtual") {
    url.hostname = `${config.bucket}.${url.hostname}`;
    url.pathname = `${basePath}/${encodedKey}`;
  } else {
    url.pathname = `${basePath}/${config.bucket}/${encodedKey}`;
  }
  return url;
}

function encodeKeySegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Maps an S3 error (or redirect) to a clean response; S3's body never reaches the client. */
async function cleanError(response: Response, method: string): Promise<Response> {
  const text = method === "HEAD" ? "" : await readLimited(response, 16 * 1024);
  const code = /<Code>([A-Za-z]+)<\/Code>/.exec(text)?.[1] ?? "";
  return errorResponse(s3Error(response.status, code));
}

function s3Error(status: number, code: string): TiercelError {
  if (status === 404 || code === "NoSuchKey" || code === "NoSuchBucket") {
    return new TiercelError("not_found", 404, "No such object");
  }
  const credentialCodes = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "RequestTimeTooSkewed",
    "AuthorizationHeaderMalformed",
  ];
  if (credentialCodes.includes(code)) {
    return new TiercelError("origin_auth_failed", 502, `The bucket refused Tiercel's credentials (${code})`);
  }
  if (status === 403) return new TiercelError("origin_access_denied", 403, "Access to this object is denied");
  if (status === 416) return new TiercelError("origin_error", 502, "The bucket refused the requested range");
  if (status >= 300 && status < 400) {
    return new TiercelError(
      "origin_error",
      502,
      `The bucket redirected (${code || status}): check the endpoint and region`,
    );
  }
  return new TiercelError("origin_error", 502, `The bucket answered ${status}${code ? ` (${code})` : ""}`);
}

async function readLimited(response: Response, limit: number): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (total < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
  }
  await reader.cancel().catch(() => {});
  const decoder = new TextDecoder();
  return chunks.map((chunk) => decoder.decode(chunk, { stream: true })).join("");
}
