/**
 * One error type for everything Tiercel refuses or fails to do. Each carries a stable machine-readable
 * `code` and the HTTP status the client gets; the message is for humans. Anything a client caused is a
 * 4xx; an upstream (origin, config store) that misbehaves is a 502/504; never a bare 500.
 */
export type ErrorCode =
  | "bad_host"
  | "bad_path"
  | "not_found"
  | "origin_access_denied"
  | "origin_auth_failed"
  | "origin_error"
  | "site_not_found"
  | "site_config_invalid"
  | "site_store_unavailable"
  | "method_not_allowed"
  | "origin_unreachable"
  | "origin_timeout"
  | "origin_bad_response"
  | "origin_forbidden"
  | "loop_detected"
  | "internal_error"
  | "unauthorized"
  | "token_in_url"
  | "admin_disabled"
  | "admin_token_too_short"
  | "admin_host_only"
  | "admin_only"
  | "forbidden_site"
  | "csrf_failed"
  | "console_needs_admin_host"
  | "invalid_form"
  | "invalid_query"
  | "invalid_config"
  | "invalid_json"
  | "host_taken"
  | "revision_conflict"
  | "invalid_precondition"
  | "owner_unavailable"
  | "invalid_window"
  | "invalid_site"
  | "stats_unavailable"
  | "purge_limit"
  | "resize_not_enabled"
  | "bad_resize_options"
  | "resize_not_allowed";

export class TiercelError extends Error {
  override readonly name = "TiercelError";

  constructor(
    readonly code: ErrorCode,
    readonly status: number,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string>; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.headers = options?.headers ?? {};
    this.details = options?.details ?? {};
  }

  readonly headers: Record<string, string>;
  /** Extra fields for the error body, e.g. the `issues` of an invalid config. */
  readonly details: Record<string, unknown>;
}

/** The JSON error body every Tiercel-made error response carries. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; [detail: string]: unknown };
}

/**
 * Turns any thrown value into a response. A `TiercelError` keeps its status and code; anything else is a
 * bug, reported as 502 `internal_error` without leaking its message. Error responses are never stored.
 */
export function errorResponse(error: unknown, extraHeaders?: HeadersInit): Response {
  const known =
    error instanceof TiercelError
      ? error
      : new TiercelError("internal_error", 502, "Tiercel could not complete the request", { cause: error });
  const body: ErrorBody = { error: { ...known.details, code: known.code, message: known.message } };
  const headers = new Headers(extraHeaders);
  headers.set("content-type", "application/json; charset=utf-8");
  headers.set("cache-control", "no-store");
  for (const [name, value] of Object.entries(known.headers)) headers.set(name, value);
  return new Response(JSON.stringify(body), { status: known.status, headers });
}

/**
 * Puts the request's Cache-Status and Server-Timing on an error on its way out, so an error response says
 * which caches it passed and where the time went, like any other answer.
 */
export function withDiagnostics(
  error: unknown,
  status: { toString(): string },
  timing: { toString(): string },
): unknown {
  if (error instanceof TiercelError) {
    error.headers["cache-status"] = status.toString();
    error.headers["server-timing"] = timing.toString();
  }
  return error;
}
