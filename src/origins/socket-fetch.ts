import { connect } from "cloudflare:sockets";
import { TiercelError } from "../core/errors";
import { endToEndHeaders, hopByHopNames } from "../core/http/headers";

/** Where `socketFetch` connects, whatever the request's URL says. */
export interface SocketTarget {
  /** The address to connect to: an IP address (IPv6 without brackets) or a name. */
  hostname: string;
  port: number;
  /** Speak TLS (see `socketFetch` for the name the certificate is checked against). */
  tls: boolean;
  /** The name the certificate must carry, also sent as SNI; the Host header's name when absent. */
  serverName?: string;
}

/** Only what `fetchUpstream` passes: the request and the signal for its headers deadline. */
export type SocketFetch = (request: Request, init?: { signal?: AbortSignal }) => Promise<Response>;

/** The most a response head may take, interim responses included (a bound on a hostile origin). */
const MAX_HEAD_BYTES = 64 * 1024;
/** The most a chunk-size line may take, extensions included. */
const MAX_CHUNK_LINE_BYTES = 8 * 1024;

/** Methods whose bodyless request still says `Content-Length: 0` (RFC 9110 §8.6: a body is expected). */
const LENGTH_REQUIRED = new Set(["POST", "PUT", "PATCH"]);

/**
 * Statuses that never carry content: 204 and 304 by RFC 9112 §6.3 item 1; 205 because RFC 9110 §15.3.6
 * forbids content and a Web `Response` refuses a body with it (whatever follows is dropped with the
 * connection).
 */
const NO_CONTENT = new Set([204, 205, 304]);

// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; the last SP is tolerated
// missing, as most clients do.
const STATUS_LINE = /^HTTP\/1\.[0-9] ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
// RFC 9112 §5.1: field-name ":" OWS field-value OWS, no whitespace before the colon. The OWS is trimmed by
// hand: a regex that trims it backtracks quadratically on a long run of spaces from a hostile origin.
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 §5.5: no control characters in a field value except HTAB.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, with BWS allowed before ";" (§7.1.1). 13 hex digits keep
// every size a safe integer.
const CHUNK_SIZE_LINE = /^([0-9A-Fa-f]{1,13})[\t ]*(?:;.*)?$/;

const encoder = new TextEncoder();

/**
 * A fetch that connects to `target` instead of the request URL's host and sends the request's own Host
 * header (the URL's host when it has none). workerd's `fetch()` derives Host from the URL and ignores a
 * Host header, so a backend reached by IP and port (a hosting platform's "origin IP and port per domain")
 * would see the IP as its Host; this speaks HTTP/1.1 (RFC 9112) over a TCP socket from `cloudflare:sockets`
 * instead.
 *
 * Just enough of the protocol for one request per connection: `Connection: close` (no reuse), a request
 * body streamed in the chunked coding, and a response framed by RFC 9112 §6.3 and streamed as it arrives,
 * with interim 1xx responses skipped. Anything malformed is refused rather than guessed at (the origin is
 * hostile); failures are `TiercelError`s, `origin_unreachable` for the connection and `origin_bad_response`
 * for what came over it. `init.signal` bounds the wait for the response head only.
 *
 * With `tls`, the socket is upgraded at once and the certificate is checked against `serverName` (else the
 * Host header's name), never against the address: a certificate names the site, not the IP it lives on.
 * (The tests cover plain HTTP only; workerd's local TLS cannot be pointed at a test certificate authority.)
 */
export function socketFetch(target: SocketTarget): SocketFetch {
  return async (request, init) => {
    const signal = init?.signal;
    signal?.throwIfAborted();
    const url = new URL(request.url);
    const host = request.headers.get("host") ?? url.host;

    const socket = open(target, host);
    // Closing also stops reading the request body, which nothing needs once the exchange is over.
    const closing = new AbortController();
    const close = () => {
      if (closing.signal.aborted) return;
      closing.abort();
      socket.close().catch(() => {});
    };

    const writer = socket.writable.getWriter();
    writer.closed.catch(() => {});
    let sendError: unknown;
    sendRequest(writer, request, url, host, closing.signal, close).catch((error: unknown) => {
      sendError = error;
    });

    const reader = socket.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    reader.closed.catch(() => {});
    const input = new Incoming(reader);

    let onAbort = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        close();
        reject(signal?.reason);
      };
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    let head: Head;
    try {
      await Promise.race([socket.opened, aborted]);
      head = await Promise.race([readHead(input), aborted]);
    } catch (error) {
      close();
      if (signal?.aborted) throw signal.reason;
      if (error instanceof TiercelError && error.code === "origin_unreachable" && sendError !== undefined) {
        // A request that could not be sent is the better explanation for an answer that never came.
        throw new TiercelError(error.code, error.status, error.message, { cause: sendError });
      }
      if (error instanceof TiercelError) throw error;
      throw new TiercelError("origin_unreachable", 502, "The connection to the origin failed", { cause: error });
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }

    try {
      return toResponse(head, request.method, input, close);
    } catch (error) {
      close();
      throw error;
    }
  };
}

/** Connects; with TLS, upgrades at once so that the certificate is checked against the site's name. */
function open(target: SocketTarget, host: string): Socket {
  const address = { hostname: target.hostname, port: target.port };
  try {
    // `secureTransport: "on"` would verify the certificate against `hostname`, an IP here; `startTls` takes
    // the name to verify (and send as SNI).
    const plain = connect(address, { secureTransport: target.tls ? "starttls" : "off", allowHalfOpen: false });
    const socket = target.tls
      ? plain.startTls({ expectedServerHostname: hostnameOf(target.serverName ?? host) })
      : plain;
    for (const each of new Set([plain, socket])) {
      each.opened.catch(() => {});
      each.closed.catch(() => {});
    }
    return socket;
  } catch (cause) {
    throw new TiercelError("origin_unreachable", 502, "Could not open a connection to the origin", { cause });
  }
}

/** The name in a Host value or URL hostname: no port, no IPv6 brackets, in the URL parser's canonical form. */
function hostnameOf(host: string): string {
  try {
    return new URL(`http://${host}/`).hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return host;
  }
}

/**
 * Writes the request head and then the body, if any, in the chunked coding (RFC 9112 §7.1) as it arrives,
 * never whole. A request body that fails closes the connection, so the origin never acts on half of it.
 */
async function sendRequest(
  writer: WritableStreamDefaultWriter,
  request: Request,
  url: URL,
  host: string,
  closing: AbortSignal,
  close: () => void,
): Promise<void> {
  const body = request.method === "GET" || request.method === "HEAD" ? null : request.body;
  // RFC 9110 §7.6.1: hop-by-hop fields describe this connection, which this client frames itself.
  const drop = hopByHopNames(request.headers);
  drop.add("host");
  drop.add("content-length");
  const lines = [`${request.method} ${url.pathname}${url.search} HTTP/1.1`, `host: ${host}`];
  for (const [name, value] of request.headers) {
    if (!drop.has(name) && !name.startsWith("proxy-")) lines.push(`${name}: ${value}`);
  }
  lines.push("connection: close");
  if (body) lines.push("transfer-encoding: chunked");
  else if (LENGTH_REQUIRED.has(request.method)) lines.push("content-length: 0");
  await writer.write(latin1Bytes(`${lines.join("\r\n")}\r\n\r\n`));
  if (!body || closing.aborted) return;

  const reader = body.getReader();
  const stop = () => reader.cancel().catch(() => {});
  closing.addEventListener("abort", stop, { once: true });
  try {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        close();
        throw error;
      }
      if (next.done) break;
      // A zero-size chunk would end the body (RFC 9112 §7.1), so empty reads are skipped.
      if (next.value.byteLength === 0) continue;
      await writer.write(encoder.encode(`${next.value.byteLength.toString(16)}\r\n`));
      await writer.write(next.value);
      await writer.write(encoder.encode("\r\n"));
    }
    await writer.write(encoder.encode("0\r\n\r\n"));
  } catch (error) {
    reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    closing.removeEventListener("abort", stop);
  }
}

interface Head {
  status: number;
  reason: string;
  headers: Headers;
}

/**
 * Reads the final response head, skipping interim 1xx responses (RFC 9110 §15.2). The whole of it, interim
 * responses included, must fit in `MAX_HEAD_BYTES`.
 */
async function readHead(input: Incoming): Promise<Head> {
  let budget = MAX_HEAD_BYTES;
  const line = async (): Promise<string> => {
    const next = await input.line(budget, "The origin's response head is too large");
    if (next === undefined && budget === MAX_HEAD_BYTES) {
      throw new TiercelError("origin_unreachable", 502, "The origin closed the connection without answering");
    }
    if (next === undefined) throw malformed("The origin closed the connection in the middle of the response head");
    budget -= next.size;
    return next.text;
  };

  for (;;) {
    const statusLine = await line();
    const match = STATUS_LINE.exec(statusLine);
    if (!match) throw malformed("The origin's status line is malformed");
    const status = Number(match[1]);
    const headers = new Headers();
    for (;;) {
      const field = await line();
      if (field === "") break;
      // RFC 9112 §5.2: obsolete line folding; refused rather than unfolded.
      if (field.startsWith(" ") || field.startsWith("\t")) throw malformed("The origin folded a header line");
      const colon = field.indexOf(":");
      const name = colon < 0 ? "" : field.slice(0, colon);
      const value = trimOws(field.slice(colon + 1));
      if (!FIELD_NAME.test(name) || !FIELD_VALUE.test(value)) {
        throw malformed("The origin sent a malformed header line");
      }
      headers.append(name, value);
    }
    // RFC 9110 §15.2: a client must accept (and may ignore) interim responses before the final one. 101
    // would switch protocols, which this client never asks for.
    if (status >= 100 && status < 200 && status !== 101) continue;
    return { status, reason: match[2] ?? "", headers };
  }
}

/** How the response's content is delimited (RFC 9112 §6.3). */
type Framing = { kind: "none" } | { kind: "chunked" } | { kind: "length"; length: number } | { kind: "close" };

function framingOf(head: Head, method: string): Framing {
  // §6.3 item 1: no content after a HEAD request, nor with 1xx, 204 or 304 (205: see NO_CONTENT).
  if (method === "HEAD" || NO_CONTENT.has(head.status)) return { kind: "none" };
  const transferEncoding = head.headers.get("transfer-encoding");
  if (transferEncoding !== null) {
    // §6.3 item 3: Transfer-Encoding overrides Content-Length. This client sends no TE, so chunked is the
    // only coding an origin may use (RFC 9112 §6.1); any other cannot be decoded here and is refused.
    const codings = transferEncoding
      .split(",")
      .map((coding) => coding.trim().toLowerCase())
      .filter((coding) => coding !== "");
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw malformed("The origin used a transfer coding other than chunked");
    }
    return { kind: "chunked" };
  }
  const contentLength = head.headers.get("content-length");
  if (contentLength !== null) {
    // §6.3 item 5: a list of identical values is one value; anything else is an unrecoverable error.
    const values = new Set(contentLength.split(",").map((value) => value.trim()));
    const [value] = values;
    if (values.size !== 1 || value === undefined || !/^[0-9]{1,15}$/.test(value)) {
      throw malformed("The origin sent an invalid Content-Length");
    }
    return { kind: "length", length: Number(value) };
  }
  // §6.3 item 8: otherwise the content runs until the origin closes the connection.
  return { kind: "close" };
}

function toResponse(head: Head, method: string, input: Incoming, close: () => void): Response {
  // A Web Response holds 200–599 only (101 and the rest have nothing to be passed on as).
  if (head.status < 200 || head.status > 599) {
    throw malformed(`The origin answered with status ${head.status}, which cannot be passed on`);
  }
  const framing = framingOf(head, method);
  const drop = [...head.headers.keys()].filter((name) => name.startsWith("proxy-"));
  // §6.3 item 3: a Content-Length next to Transfer-Encoding is wrong and must be removed.
  if (framing.kind === "chunked") drop.push("content-length");
  const headers = endToEndHeaders(head.headers, drop);

  let body: ReadableStream<Uint8Array> | Uint8Array | null;
  if (framing.kind === "none") body = null;
  else if (framing.kind === "length" && framing.length === 0) body = new Uint8Array(0);
  else body = contentStream(input, framing, close);
  if (!(body instanceof ReadableStream)) close();
  try {
    return new Response(body, { status: head.status, statusText: head.reason, headers });
  } catch (cause) {
    throw new TiercelError("origin_bad_response", 502, "The origin's response cannot be passed on", { cause });
  }
}

/**
 * The content as a stream that reads from the socket only when asked (never buffering it whole), errors on
 * a connection that ends early or a malformed chunk, and closes the socket when it ends or is cancelled.
 */
function contentStream(
  input: Incoming,
  framing: Exclude<Framing, { kind: "none" }>,
  close: () => void,
): ReadableStream<Uint8Array> {
  let remaining = framing.kind === "length" ? framing.length : 0;
  let chunkDataEnds = false;

  const prematureEnd = () =>
    new TiercelError("origin_bad_response", 502, "The origin closed the connection before the end of the body");

  /** The next piece of content, or undefined at its end. */
  const next = async (): Promise<Uint8Array | undefined> => {
    if (framing.kind === "close") return input.bytes(Number.POSITIVE_INFINITY);
    if (framing.kind === "length") {
      if (remaining === 0) return undefined;
      const bytes = await input.bytes(remaining);
      if (bytes === undefined) throw prematureEnd();
      remaining -= bytes.byteLength;
      return bytes;
    }
    // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; last-chunk = 1*("0") [ chunk-ext ] CRLF
    if (remaining === 0) {
      if (chunkDataEnds) {
        const end = await input.line(MAX_CHUNK_LINE_BYTES, "The origin sent a malformed chunk");
        if (end === undefined) throw prematureEnd();
        if (end.text !== "") throw malformed("The origin sent a chunk longer than its size");
        chunkDataEnds = false;
      }
      const sizeLine = await input.line(MAX_CHUNK_LINE_BYTES, "The origin sent a chunk-size line that is too long");
      if (sizeLine === undefined) throw prematureEnd();
      const match = CHUNK_SIZE_LINE.exec(sizeLine.text);
      if (!match) throw malformed("The origin sent a malformed chunk size");
      remaining = Number.parseInt(match[1] as string, 16);
      if (remaining === 0) {
        // §7.1.2: the trailer section, read and dropped (nothing here merges trailers into the header).
        let budget = MAX_HEAD_BYTES;
        for (;;) {
          const trailer = await input.line(budget, "The origin's trailer section is too large");
          if (trailer === undefined) throw prematureEnd();
          if (trailer.text === "") return undefined;
          budget -= trailer.size;
        }
      }
    }
    const bytes = await input.bytes(remaining);
    if (bytes === undefined) throw prematureEnd();
    remaining -= bytes.byteLength;
    if (remaining === 0) chunkDataEnds = true;
    return bytes;
  };

  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let bytes: Uint8Array | undefined;
        try {
          bytes = await next();
        } catch (error) {
          close();
          if (cancelled) return;
          controller.error(
            error instanceof TiercelError
              ? error
              : new TiercelError("origin_bad_response", 502, "The connection to the origin failed", { cause: error }),
          );
          return;
        }
        // A read cancelled while it waited on the socket has nowhere to put what it got.
        if (cancelled) return;
        if (bytes !== undefined) controller.enqueue(bytes);
        // Done at the end, or at once after the last byte of a known length: the socket is let go either way.
        if (bytes === undefined || (framing.kind === "length" && remaining === 0)) {
          controller.close();
          close();
        }
      },
      cancel() {
        cancelled = true;
        close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** Bytes read from the socket, handed out as lines (of the head and the chunked coding) or as content. */
class Incoming {
  private buffered: Uint8Array = new Uint8Array(0);

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /**
   * One line without its CRLF (a bare LF is accepted too, RFC 9112 §2.2) and the bytes it took, or
   * undefined if the connection ends first. A line longer than `limit` bytes is refused with `tooLong`.
   */
  async line(limit: number, tooLong: string): Promise<{ text: string; size: number } | undefined> {
    let searched = 0;
    for (;;) {
      const lf = this.buffered.indexOf(0x0a, searched);
      if (lf >= 0) {
        if (lf + 1 > limit) throw malformed(tooLong);
        const end = lf > 0 && this.buffered[lf - 1] === 0x0d ? lf - 1 : lf;
        const text = latin1Text(this.buffered.subarray(0, end));
        this.buffered = this.buffered.subarray(lf + 1);
        return { text, size: lf + 1 };
      }
      if (this.buffered.byteLength >= limit) throw malformed(tooLong);
      searched = this.buffered.byteLength;
      if (!(await this.fill())) return undefined;
    }
  }

  /** Up to `max` bytes (at least one), or undefined if the connection has ended. */
  async bytes(max: number): Promise<Uint8Array | undefined> {
    if (this.buffered.byteLength === 0 && !(await this.fill())) return undefined;
    if (max >= this.buffered.byteLength) {
      const all = this.buffered;
      this.buffered = new Uint8Array(0);
      return all;
    }
    // A copy, so that what is handed out never shares memory with what is kept.
    const some = this.buffered.slice(0, max);
    this.buffered = this.buffered.subarray(max);
    return some;
  }

  private async fill(): Promise<boolean> {
    for (;;) {
      const { done, value } = await this.reader.read();
      if (done) return false;
      if (value.byteLength === 0) continue;
      if (this.buffered.byteLength === 0) {
        this.buffered = value;
      } else {
        const joined = new Uint8Array(this.buffered.byteLength + value.byteLength);
        joined.set(this.buffered);
        joined.set(value, this.buffered.byteLength);
        this.buffered = joined;
      }
      return true;
    }
  }
}

/** `text` without leading and trailing spaces and tabs (OWS, RFC 9110 §5.6.3). */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return text.slice(start, end);
}

function malformed(message: string): TiercelError {
  return new TiercelError("origin_bad_response", 502, message);
}

/** HTTP field values are bytes; Headers holds them as Latin-1 strings (a ByteString), one char per byte. */
function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function latin1Text(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.byteLength; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}
