// A small S3-compatible object server on loopback: GetObject and HeadObject over path-style and
// virtual-hosted URLs, with objects held in memory. `npm start` serves the demo assets from it, and the
// workerd tests point Tiercel's S3 origin at it to see what Tiercel sends to a bucket.
//
// Like S3 it refuses every request whose AWS Signature Version 4 does not verify: the signature is computed
// again here with AWS's own signer (@smithy/signature-v4) from what arrived on the wire, and compared in
// constant time. It answers the way S3 does, including the headers Tiercel must strip (x-amz-request-id,
// x-amz-id-2, Server: AmazonS3) and the <StringToSign>/<CanonicalRequest> that S3 puts in a
// SignatureDoesNotMatch body, which Tiercel must never pass on to a client.
//
// Run it alone with `node demo/s3-server.mjs` (S3_PORT, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { createServer, validateHeaderName, validateHeaderValue } from "node:http";
import { extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Sha256 } from "@aws-crypto/sha256-js";
import { ALGORITHM_IDENTIFIER, createScope, getCanonicalHeaders, SignatureV4 } from "@smithy/signature-v4";

const ASSETS = fileURLToPath(new URL("./assets/", import.meta.url));

/** S3 refuses a request signed more than 15 minutes away from its own clock. */
const MAX_SKEW_MS = 15 * 60_000;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
/** What S3 stores when an upload names no Content-Type. */
const DEFAULT_CONTENT_TYPE = "binary/octet-stream";

/** Content types guessed from the extension when a directory is loaded, as `aws s3 sync` does. */
const TYPES = {
  ".html": "text/html",
  ".css": "text/css",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".json": "application/json",
  ".txt": "text/plain",
  ".xml": "application/xml",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
};

/**
 * @typedef {object} StoredObject
 * @property {Buffer} body
 * @property {string} etag            quoted MD5 hex of the body, as S3 gives for a single-part upload
 * @property {number} lastModified    ms since the epoch, whole seconds (HTTP dates carry no more)
 * @property {string} contentType
 * @property {string | undefined} cacheControl
 * @property {Record<string, string>} metadata   user metadata, names lower-case, served as x-amz-meta-*
 */

/**
 * @typedef {object} PutOptions
 * @property {string} [contentType]    default binary/octet-stream, like S3
 * @property {string} [cacheControl]
 * @property {Record<string, string>} [metadata]   sent back as x-amz-meta-<name>
 * @property {Date} [lastModified]     default now
 */

/**
 * @typedef {object} SeenRequest
 * @property {string} method
 * @property {string} url          the request target exactly as sent (path and query)
 * @property {string} path         the path exactly as sent
 * @property {Record<string, string | string[] | undefined>} headers   as Node parsed them (lower-case names)
 * @property {string | undefined} bucket
 * @property {string | undefined} key
 * @property {boolean} authenticated   whether the signature verified
 * @property {number | undefined} status   set once the response is sent
 */

/**
 * @typedef {object} S3Stats
 * @property {number} requests   every request received
 * @property {number} rejected   requests refused for their authentication (bad, missing or stale signature)
 * @property {Record<string, number>} rejections   the same, by S3 error code
 * @property {SeenRequest | undefined} lastRequest
 * @property {(bucket: string, key: string, method?: "GET" | "HEAD") => number} hits
 *   authenticated GETs and HEADs of one object (whatever the answer: 200, 206, 304, 404…)
 * @property {() => void} reset
 */

/**
 * @typedef {object} S3Error
 * @property {number} status
 * @property {string} code
 * @property {string} message
 * @property {Record<string, string>} [detail]   further elements of the XML body, in order
 * @property {Record<string, string>} [headers]
 */

/**
 * The signer S3 itself would use, asked to show its work: the canonical request and string to sign for a
 * request that has already arrived, and the signature they yield. `createCanonicalRequest` and
 * `createStringToSign` are the signer's own steps (protected, so reached from a subclass); the HMAC chain is
 * its public `sign(stringToSign)`.
 */
class SignatureCheck extends SignatureV4 {
  /**
   * @param {{ method: string, path: string, query: Record<string, string | string[]>,
   *   headers: Record<string, string> }} request   headers: only the signed ones
   * @param {string} payloadHash   the x-amz-content-sha256 the request carries
   * @param {string} amzDate       its X-Amz-Date, e.g. 20240102T030405Z
   * @param {string} region
   */
  async explain(request, payloadHash, amzDate, region) {
    const signable = new Set(Object.keys(request.headers));
    // With signableHeaders listing every header passed, none is dropped as "unsignable" (user-agent, range…).
    const canonicalHeaders = getCanonicalHeaders(/** @type {any} */ (request), undefined, signable);
    const canonicalRequest = this.createCanonicalRequest(/** @type {any} */ (request), canonicalHeaders, payloadHash);
    const scope = createScope(amzDate.slice(0, 8), region, "s3");
    const stringToSign = await this.createStringToSign(amzDate, scope, canonicalRequest, ALGORITHM_IDENTIFIER);
    const signature = await this.sign(stringToSign, {
      signingDate: parseAmzDate(amzDate),
      signingRegion: region,
      signingService: "s3",
    });
    return { canonicalRequest, stringToSign, signature };
  }
}

/**
 * Starts the server; resolves once it listens.
 *
 * @param {object} [options]
 * @param {number} [options.port]   0 picks a free port
 * @param {string} [options.host]
 * @param {string} [options.region]   the only region the server accepts in a credential scope
 * @param {{ accessKeyId: string, secretAccessKey: string }} [options.credentials]   the one key pair it knows
 * @param {Record<string, string | null | undefined>} [options.buckets]
 *   bucket name → a directory whose files (recursively) become its objects, keyed by relative path; or nothing
 * @param {(line: string) => void} [options.log]
 * @param {() => number} [options.now]   the server's clock, for the X-Amz-Date skew check and uploads
 * @param {number} [options.maxSkewMs]
 * @param {boolean} [options.sendDate]   send a Date header (tests that move a clock may not want one)
 */
export async function startS3Server({
  port = 0,
  host = "127.0.0.1",
  region = "us-east-1",
  credentials = { accessKeyId: "", secretAccessKey: "" },
  buckets = {},
  log = () => {},
  now = () => Date.now(),
  maxSkewMs = MAX_SKEW_MS,
  sendDate = true,
} = {}) {
  const { accessKeyId, secretAccessKey } = credentials;
  if (!accessKeyId || !secretAccessKey)
    throw new TypeError("startS3Server needs credentials.accessKeyId and .secretAccessKey");
  // S3 signs the path as the client URI-encoded it once; the signer must not encode it again.
  const signer = new SignatureCheck({
    service: "s3",
    region,
    credentials: { accessKeyId, secretAccessKey },
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });

  /** @type {Map<string, Map<string, StoredObject>>} */
  const store = new Map();
  for (const name of Object.keys(buckets)) store.set(name, new Map());

  /**
   * @param {string} bucket
   * @param {string} key
   * @param {Buffer | Uint8Array | string} bytes
   * @param {PutOptions} [options]
   */
  function putObject(bucket, key, bytes, { contentType, cacheControl, metadata = {}, lastModified } = {}) {
    const objects = store.get(bucket);
    if (!objects) throw new Error(`no bucket "${bucket}"; list it in startS3Server({ buckets })`);
    if (!key || Buffer.byteLength(key) > 1024) throw new Error(`object keys are 1 to 1024 bytes of UTF-8: "${key}"`);
    const body = Buffer.from(typeof bytes === "string" ? Buffer.from(bytes) : bytes);
    /** @type {Record<string, string>} */
    const meta = {};
    for (const [name, value] of Object.entries(metadata)) {
      validateHeaderName(`x-amz-meta-${name}`);
      validateHeaderValue(`x-amz-meta-${name}`, value);
      meta[name.toLowerCase()] = value;
    }
    if (contentType !== undefined) validateHeaderValue("content-type", contentType);
    if (cacheControl !== undefined) validateHeaderValue("cache-control", cacheControl);
    /** @type {StoredObject} */
    const object = {
      body,
      etag: `"${createHash("md5").update(body).digest("hex")}"`,
      lastModified: Math.floor((lastModified?.getTime() ?? now()) / 1000) * 1000,
      contentType: contentType ?? DEFAULT_CONTENT_TYPE,
      cacheControl,
      metadata: meta,
    };
    objects.set(key, object);
    return { etag: object.etag, lastModified: new Date(object.lastModified), size: body.byteLength };
  }

  /**
   * @param {string} bucket
   * @param {string} key
   * @returns {boolean} whether there was such an object
   */
  function deleteObject(bucket, key) {
    return store.get(bucket)?.delete(key) ?? false;
  }

  for (const [bucket, dir] of Object.entries(buckets)) {
    if (!dir) continue;
    for await (const file of filesUnder(dir)) {
      putObject(bucket, file.key, await readFile(file.path), {
        contentType: TYPES[/** @type {keyof typeof TYPES} */ (extname(file.key).toLowerCase())],
      });
    }
  }

  // Bucket names hold no "/", so "bucket/key" names one object unambiguously.
  /** @type {Map<string, { GET: number, HEAD: number }>} */
  const hitCounts = new Map();
  /** @type {S3Stats} */
  const stats = {
    requests: 0,
    rejected: 0,
    rejections: {},
    lastRequest: undefined,
    hits(bucket, key, method) {
      const counts = hitCounts.get(`${bucket}/${key}`);
      if (!counts) return 0;
      return method ? counts[method] : counts.GET + counts.HEAD;
    },
    reset() {
      stats.requests = 0;
      stats.rejected = 0;
      stats.rejections = {};
      stats.lastRequest = undefined;
      hitCounts.clear();
    },
  };

  /**
   * @param {import("node:http").IncomingMessage} req
   * @param {import("node:http").ServerResponse} res
   */
  async function handle(req, res) {
    req.resume(); // GET and HEAD carry no body worth reading; anything else is refused below.
    const target = req.url ?? "/";
    const query = target.indexOf("?");
    const path = query < 0 ? target : target.slice(0, query);
    const method = req.method ?? "GET";
    /** @type {SeenRequest} */
    const seen = {
      method,
      url: target,
      path,
      headers: { ...req.headers },
      bucket: undefined,
      key: undefined,
      authenticated: false,
      status: undefined,
    };
    stats.requests += 1;
    stats.lastRequest = seen;
    const number = stats.requests;
    res.sendDate = sendDate;
    res.on("finish", () => {
      seen.status = res.statusCode;
      log(`s3: ${method} ${target} -> ${res.statusCode} (request #${number})`);
    });

    if (!path.startsWith("/")) return sendError(req, res, invalidUri());
    const refusal = await authenticate(req, path, query < 0 ? "" : target.slice(query + 1));
    if (refusal) {
      stats.rejected += 1;
      stats.rejections[refusal.code] = (stats.rejections[refusal.code] ?? 0) + 1;
      return sendError(req, res, refusal);
    }
    seen.authenticated = true;

    if (method !== "GET" && method !== "HEAD") {
      return sendError(req, res, {
        status: 405,
        code: "MethodNotAllowed",
        message: "The specified method is not allowed against this resource.",
        detail: { Method: method, ResourceType: "OBJECT" },
        headers: { Allow: "GET, HEAD" },
      });
    }
    const place = locate(req.headers.host, path);
    if (!place) return sendError(req, res, invalidUri());
    seen.bucket = place.bucket || undefined;
    seen.key = place.key || undefined;
    const objects = store.get(place.bucket);
    if (!place.bucket || !objects || !place.key) {
      if (place.bucket && !objects) {
        return sendError(req, res, {
          status: 404,
          code: "NoSuchBucket",
          message: "The specified bucket does not exist",
          detail: { BucketName: place.bucket },
        });
      }
      return sendError(req, res, {
        status: 501,
        code: "NotImplemented",
        message: "This server implements GetObject and HeadObject only; name an object key.",
      });
    }

    const counts = hitCounts.get(`${place.bucket}/${place.key}`) ?? { GET: 0, HEAD: 0 };
    counts[method] += 1;
    hitCounts.set(`${place.bucket}/${place.key}`, counts);

    const object = objects.get(place.key);
    if (!object) {
      return sendError(req, res, {
        status: 404,
        code: "NoSuchKey",
        message: "The specified key does not exist.",
        detail: { Key: place.key },
      });
    }
    serveObject(req, res, object);
  }

  /**
   * Verifies a header-signed SigV4 request; returns the S3 error to answer with, or undefined if it verifies.
   * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
   *
   * @param {import("node:http").IncomingMessage} req
   * @param {string} path    exactly as sent
   * @param {string} rawQuery
   * @returns {Promise<S3Error | undefined>}
   */
  async function authenticate(req, path, rawQuery) {
    const header = req.headers.authorization;
    if (!header) return { status: 403, code: "AccessDenied", message: "Access Denied" };
    if (!header.startsWith(`${ALGORITHM_IDENTIFIER} `)) {
      return {
        status: 400,
        code: "InvalidRequest",
        message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
      };
    }
    const auth = parseAuthorization(header);
    if (!auth) {
      return malformed('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".');
    }
    if (auth.accessKeyId !== accessKeyId) {
      return {
        status: 403,
        code: "InvalidAccessKeyId",
        message: "The AWS Access Key Id you provided does not exist in our records.",
        detail: { AWSAccessKeyId: auth.accessKeyId },
      };
    }
    if (auth.region !== region) {
      return malformed(`the region '${auth.region}' is wrong; expecting '${region}'`, { Region: region });
    }
    if (auth.service !== "s3" || auth.terminator !== "aws4_request") {
      return malformed(`incorrect service '${auth.service}'. This endpoint belongs to 's3'.`);
    }

    const amzDate = single(req.headers["x-amz-date"]);
    const signedAt = amzDate === undefined ? undefined : parseAmzDate(amzDate);
    if (amzDate === undefined || !signedAt) {
      return {
        status: 403,
        code: "AccessDenied",
        message: "AWS authentication requires a valid Date or x-amz-date header",
      };
    }
    if (auth.date !== amzDate.slice(0, 8)) {
      return malformed("Invalid credential date. Date is not the same as X-Amz-Date.");
    }
    const serverTime = now();
    if (Math.abs(serverTime - signedAt.getTime()) > maxSkewMs) {
      return {
        status: 403,
        code: "RequestTimeTooSkewed",
        message: "The difference between the request time and the current time is too large.",
        detail: {
          RequestTime: amzDate,
          ServerTime: new Date(serverTime).toISOString(),
          MaxAllowedSkewMilliseconds: String(maxSkewMs),
        },
      };
    }

    const payloadHash = single(req.headers["x-amz-content-sha256"]);
    if (payloadHash === undefined) {
      return {
        status: 400,
        code: "InvalidRequest",
        message: "Missing required header for this request: x-amz-content-sha256",
      };
    }
    if (payloadHash !== UNSIGNED_PAYLOAD && !/^[0-9a-f]{64}$/.test(payloadHash)) {
      return {
        status: 400,
        code: "InvalidArgument",
        message:
          "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, or a valid sha256 value.",
        detail: { ArgumentName: "x-amz-content-sha256", ArgumentValue: payloadHash },
      };
    }

    // S3 insists that Host and every x-amz-* header the request carries are signed.
    const signed = new Set(auth.signedHeaders);
    const unsigned = Object.keys(req.headers).filter(
      (name) => (name === "host" || name.startsWith("x-amz-")) && !signed.has(name),
    );
    if (!signed.has("host") && !unsigned.includes("host")) unsigned.unshift("host");
    if (unsigned.length > 0) {
      return {
        status: 403,
        code: "AccessDenied",
        message: "There were headers present in the request which were not signed",
        detail: { HeadersNotSigned: unsigned.join(", ") },
      };
    }

    const request = {
      method: req.method ?? "GET",
      path,
      query: parseQuery(rawQuery),
      headers: signedHeaderValues(req.rawHeaders, signed),
    };
    const expected = await signer.explain(request, payloadHash, amzDate, region);
    let verified = sameSignature(expected.signature, auth.signature);
    // The SigV4 canonical URI is the decoded path URI-encoded once (every byte but A-Z a-z 0-9 - _ . ~ and
    // "/"). A client that sends the path already in that form signs exactly what it sent; one that sends a
    // legal but differently escaped path (aws4fetch sends "(" as is and signs "%28") signs the canonical form.
    if (!verified) {
      const canonicalPath = canonicalUri(path);
      if (canonicalPath !== undefined && canonicalPath !== path) {
        const again = await signer.explain({ ...request, path: canonicalPath }, payloadHash, amzDate, region);
        verified = sameSignature(again.signature, auth.signature);
      }
    }
    if (verified) {
      if (payloadHash !== UNSIGNED_PAYLOAD && payloadHash !== EMPTY_SHA256) {
        return {
          status: 400,
          code: "XAmzContentSHA256Mismatch",
          message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
          detail: { ClientComputedContentSHA256: payloadHash, S3ComputedContentSHA256: EMPTY_SHA256 },
        };
      }
      return undefined;
    }
    return {
      status: 403,
      code: "SignatureDoesNotMatch",
      message:
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
      detail: {
        AWSAccessKeyId: auth.accessKeyId,
        StringToSign: expected.stringToSign,
        SignatureProvided: auth.signature,
        StringToSignBytes: spacedHex(expected.stringToSign),
        CanonicalRequest: expected.canonicalRequest,
        CanonicalRequestBytes: spacedHex(expected.canonicalRequest),
      },
    };
  }

  /**
   * Splits the path into bucket and key: virtual-hosted when Host starts with a known bucket name and a dot,
   * path-style otherwise. Undefined when the path does not percent-decode.
   *
   * @param {string | undefined} hostHeader
   * @param {string} path
   * @returns {{ bucket: string, key: string } | undefined}
   */
  function locate(hostHeader, path) {
    const hostname = (hostHeader ?? "").toLowerCase().replace(/:\d+$/, "");
    let virtualBucket = "";
    for (const name of store.keys()) {
      if (hostname.startsWith(`${name}.`) && name.length > virtualBucket.length) virtualBucket = name;
    }
    if (virtualBucket) {
      const key = decodeKey(path.slice(1));
      return key === undefined ? undefined : { bucket: virtualBucket, key };
    }
    const slash = path.indexOf("/", 1);
    const bucket = decodeKey(slash < 0 ? path.slice(1) : path.slice(1, slash));
    const key = slash < 0 ? "" : decodeKey(path.slice(slash + 1));
    return bucket === undefined || key === undefined ? undefined : { bucket, key };
  }

  /**
   * Answers GET or HEAD for a stored object: preconditions, then a single byte range.
   *
   * @param {import("node:http").IncomingMessage} req
   * @param {import("node:http").ServerResponse} res
   * @param {StoredObject} object
   */
  function serveObject(req, res, object) {
    const lastModified = new Date(object.lastModified).toUTCString();
    /** @type {Record<string, string | number>} */
    const validators = { ETag: object.etag, "Last-Modified": lastModified };
    if (object.cacheControl !== undefined) validators["Cache-Control"] = object.cacheControl;

    const failed = failedPrecondition(req, object);
    if (failed === 304) {
      res.writeHead(304, { ...amzHeaders(), ...validators });
      return res.end();
    }
    if (failed) {
      return sendError(req, res, {
        status: 412,
        code: "PreconditionFailed",
        message: "At least one of the pre-conditions you specified did not hold",
        detail: { Condition: failed },
      });
    }

    const size = object.body.byteLength;
    /** @type {Record<string, string | number>} */
    const headers = {
      ...amzHeaders(),
      ...validators,
      "Accept-Ranges": "bytes",
      "Content-Type": object.contentType,
      "x-amz-server-side-encryption": "AES256",
    };
    for (const [name, value] of Object.entries(object.metadata)) headers[`x-amz-meta-${name}`] = value;

    const range = parseRange(single(req.headers.range), size);
    if (range === "unsatisfiable") {
      return sendError(req, res, {
        status: 416,
        code: "InvalidRange",
        message: "The requested range is not satisfiable",
        detail: { RangeRequested: single(req.headers.range) ?? "", ActualObjectSize: String(size) },
        headers: { "Content-Range": `bytes */${size}` },
      });
    }
    if (range) {
      const part = object.body.subarray(range.start, range.end + 1);
      res.writeHead(206, {
        ...headers,
        "Content-Range": `bytes ${range.start}-${range.end}/${size}`,
        "Content-Length": part.byteLength,
      });
      return res.end(req.method === "HEAD" ? undefined : part);
    }
    res.writeHead(200, { ...headers, "Content-Length": size });
    res.end(req.method === "HEAD" ? undefined : object.body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      log(`s3: ${req.method} ${req.url} failed: ${error instanceof Error ? error.stack : error}`);
      if (res.headersSent) return res.destroy();
      sendError(req, res, { status: 500, code: "InternalError", message: "We encountered an internal error." });
    });
  });
  // workerd keeps connections to the origin alive; a server that closes idle ones first (Node's default is
  // 5 s) races with a request sent on them, which then fails with "Network connection lost".
  server.keepAliveTimeout = 10 * 60_000;
  server.headersTimeout = 10 * 60_000 + 1000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(undefined));
  });
  const address = server.address();
  if (!address || typeof address !== "object") throw new Error("S3 server has no address");
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`;

  return {
    server,
    url,
    port: address.port,
    region,
    stats,
    putObject,
    deleteObject,
    /** Stops listening and drops kept-alive connections. */
    close: () =>
      /** @type {Promise<void>} */ (
        new Promise((resolve, reject) => {
          server.close((error) => (error ? reject(error) : resolve()));
          server.closeAllConnections();
        })
      ),
  };
}

/**
 * Which precondition fails, in RFC 9110's order (which is also S3's): If-Match, else If-Unmodified-Since
 * (→ 412); then If-None-Match, else If-Modified-Since (→ 304). Undefined when all hold.
 * https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2
 *
 * @param {import("node:http").IncomingMessage} req
 * @param {StoredObject} object
 * @returns {"If-Match" | "If-Unmodified-Since" | 304 | undefined}
 */
function failedPrecondition(req, object) {
  const ifMatch = single(req.headers["if-match"]);
  if (ifMatch !== undefined) {
    // Strong comparison: https://www.rfc-editor.org/rfc/rfc9110#section-13.1.1
    if (!entityTags(ifMatch).some((tag) => tag === "*" || tag === object.etag)) return "If-Match";
  } else {
    const since = Date.parse(single(req.headers["if-unmodified-since"]) ?? "");
    if (!Number.isNaN(since) && object.lastModified > since) return "If-Unmodified-Since";
  }
  const ifNoneMatch = single(req.headers["if-none-match"]);
  if (ifNoneMatch !== undefined) {
    // Weak comparison: https://www.rfc-editor.org/rfc/rfc9110#section-13.1.2
    const weak = (/** @type {string} */ tag) => tag.replace(/^W\//, "");
    if (entityTags(ifNoneMatch).some((tag) => tag === "*" || weak(tag) === object.etag)) return 304;
  } else {
    const since = Date.parse(single(req.headers["if-modified-since"]) ?? "");
    if (!Number.isNaN(since) && object.lastModified <= since) return 304;
  }
  return undefined;
}

/** @param {string} value */
function entityTags(value) {
  return value
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);
}

/**
 * One byte range of an object of `size` bytes. S3 serves a single range only: anything else it does not
 * understand (several ranges, other units, bad syntax) it ignores and sends the whole object.
 * https://www.rfc-editor.org/rfc/rfc9110#section-14.1.2
 *
 * @param {string | undefined} header
 * @param {number} size
 * @returns {{ start: number, end: number } | "unsatisfiable" | undefined}
 */
function parseRange(header, size) {
  const match = /^bytes=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$/.exec(header ?? "");
  if (!match) return undefined;
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end: last === "" ? size - 1 : Math.min(Number(last), size - 1) };
}

/**
 * `AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex`
 *
 * @param {string} header
 */
function parseAuthorization(header) {
  /** @type {Map<string, string>} */
  const fields = new Map();
  for (const part of header.slice(ALGORITHM_IDENTIFIER.length + 1).split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) return undefined;
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get("Credential")?.split("/");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (credential?.length !== 5 || !signedHeaders || !signature) return undefined;
  const [accessKeyId = "", date = "", region = "", service = "", terminator = ""] = credential;
  return { accessKeyId, date, region, service, terminator, signedHeaders: signedHeaders.split(";"), signature };
}

/**
 * @param {string} message
 * @param {Record<string, string>} [detail]
 * @returns {S3Error}
 */
function malformed(message, detail) {
  return {
    status: 400,
    code: "AuthorizationHeaderMalformed",
    message: `The authorization header is malformed; ${message}`,
    ...(detail ? { detail } : {}),
  };
}

/** @returns {S3Error} */
function invalidUri() {
  return { status: 400, code: "InvalidURI", message: "Couldn't parse the specified URI." };
}

/**
 * `20240102T030405Z` → Date, or undefined when it is not one.
 *
 * @param {string} value
 */
function parseAmzDate(value) {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match.map(Number);
  const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
  return date.toISOString().replace(/[-:]|\.\d{3}/g, "") === value ? date : undefined;
}

/**
 * The signed headers' values, from the raw headers: repeated headers joined with "," after trimming each,
 * as SigV4 canonicalises them. A header listed in SignedHeaders but absent is left out, so the signed
 * header list no longer matches and the signature fails, as it should.
 *
 * @param {string[]} rawHeaders   Node's [name, value, name, value, …]
 * @param {Set<string>} signed
 */
function signedHeaderValues(rawHeaders, signed) {
  /** @type {Map<string, string[]>} */
  const values = new Map();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = /** @type {string} */ (rawHeaders[i]).toLowerCase();
    if (!signed.has(name)) continue;
    values.set(name, [...(values.get(name) ?? []), /** @type {string} */ (rawHeaders[i + 1]).trim()]);
  }
  /** @type {Record<string, string>} */
  const headers = Object.create(null);
  for (const [name, list] of values) headers[name] = list.join(",");
  return headers;
}

/**
 * The query as the signer wants it: decoded names → decoded value(s); it sorts and encodes them itself.
 *
 * @param {string} rawQuery
 */
function parseQuery(rawQuery) {
  /** @type {Record<string, string | string[]>} */
  const query = Object.create(null);
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    const prior = query[name];
    query[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value];
  }
  return query;
}

/**
 * Percent-decodes a key as S3 does: UTF-8, "%2B" is "+", a literal "+" stays "+", "//" stays.
 *
 * @param {string} raw
 * @returns {string | undefined}
 */
function decodeKey(raw) {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/**
 * The SigV4 canonical URI of a path for S3: decoded, then URI-encoded once, leaving unreserved characters
 * and "/". https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
 *
 * @param {string} path
 */
function canonicalUri(path) {
  const decoded = decodeKey(path);
  if (decoded === undefined) return undefined;
  return encodeURIComponent(decoded)
    .replace(/%2F/g, "/")
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Constant-time comparison of two hex signatures.
 *
 * @param {string} expected
 * @param {string} provided
 */
function sameSignature(expected, provided) {
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(provided, "utf8");
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/**
 * The header a client sent once, or undefined (Node gives arrays only for a few repeatable headers).
 *
 * @param {string | string[] | undefined} value
 */
function single(value) {
  return Array.isArray(value) ? value[0] : value;
}

/** S3's per-request identifiers and server name. */
function amzHeaders() {
  return {
    "x-amz-request-id": randomBytes(8).toString("hex").toUpperCase(),
    "x-amz-id-2": randomBytes(54).toString("base64"),
    Server: "AmazonS3",
  };
}

/**
 * An S3 error: the XML body S3 sends (none for HEAD), with its request ids.
 *
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 * @param {S3Error} error
 */
function sendError(req, res, error) {
  const ids = amzHeaders();
  const elements = {
    Code: error.code,
    Message: error.message,
    ...error.detail,
    RequestId: ids["x-amz-request-id"],
    HostId: ids["x-amz-id-2"],
  };
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${Object.entries(elements)
    .map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`)
    .join("")}</Error>`;
  const body = Buffer.from(xml);
  res.writeHead(error.status, {
    ...ids,
    ...error.headers,
    "Content-Type": "application/xml",
    ...(req.method === "HEAD" ? {} : { "Content-Length": body.byteLength }),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/** @param {string} text */
function escapeXml(text) {
  return text.replace(
    /[&<>"']/g,
    (c) =>
      /** @type {Record<string, string>} */ ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[
        c
      ] ?? c,
  );
}

/** `AB` → `41 42`, as S3 shows StringToSignBytes. @param {string} text */
function spacedHex(text) {
  return [...Buffer.from(text)].map((byte) => byte.toString(16).padStart(2, "0")).join(" ");
}

/**
 * Every file under `dir`, keyed by its path relative to it with "/" separators.
 *
 * @param {string} dir
 * @param {string} [prefix]
 * @returns {AsyncGenerator<{ key: string, path: string }>}
 */
async function* filesUnder(dir, prefix = "") {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const key = `${prefix}${entry.name}`;
    if (entry.isDirectory()) yield* filesUnder(join(dir, entry.name), `${key}/`);
    else if (entry.isFile()) yield { key, path: join(dir, entry.name) };
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const s3 = await startS3Server({
    port: Number(process.env.S3_PORT ?? 9000),
    region: process.env.S3_REGION ?? "us-east-1",
    credentials: {
      accessKeyId: process.env.S3_ACCESS_KEY_ID ?? "tiercel-demo",
      secretAccessKey: process.env.S3_SECRET_ACCESS_KEY ?? "tiercel-demo-secret",
    },
    buckets: { demo: ASSETS },
    log: console.log,
  });
  console.log(`demo S3 listening on ${s3.url} (bucket "demo", region ${s3.region})`);
}
