import { DeadlineError, withDeadline } from "../core/deadline";
import type { MinifyKind } from "./minify-kind";
import {
  type ImageEngine,
  type ImageJob,
  type ImageResult,
  type Minifier,
  type MinifyResult,
  OptimizeError,
  type OutputFormat,
} from "./types";

/**
 * The cache Worker's side of the optimizer Worker (src/optimizer-worker.ts), reached through the `OPTIMIZER`
 * service binding. The CPU-bound work — the WASM image codecs and the minifiers — runs there, in its own
 * isolate, so it never holds up this Worker's hits; here only bytes and options are sent and bytes and
 * metadata read back. The decisions (what to transform, keys, headers, stand-ins) stay in this Worker.
 *
 * The protocol is plain HTTP over the binding (so it works the same deployed, under `wrangler dev`, and
 * against an optimizer in another process):
 *
 *   POST /minify/<html|css|js>   body: the text's bytes     → 200, the result; `Tiercel-Changed: 0|1`
 *   POST /image                  body: the image's bytes,   → 200, the result;
 *                                `Tiercel-Job`: the job         `Tiercel-Image`: {format, width, height}
 *                                as JSON (without input)
 *   any failure                  → 4xx/5xx with `{"reason": …, "message": …}`: the optimizer's
 *                                  OptimizeError, recreated here with the same reason
 *
 * Every request names the site (`Tiercel-Site`), which the optimizer uses to keep one site from taking all
 * of its turns. An optimizer that cannot be reached, answers something else, or takes longer than the
 * deadline is an OptimizeError (`optimizer-unavailable`, `optimizer-timeout`): a failure, so the original
 * stands in briefly (docs/optimization.md).
 */

/** What the cache Worker needs of the binding: `fetch`. */
export interface OptimizerBinding {
  fetch(request: Request): Promise<Response>;
}

export const SITE_HEADER = "tiercel-site";
export const JOB_HEADER = "tiercel-job";
export const IMAGE_HEADER = "tiercel-image";
export const CHANGED_HEADER = "tiercel-changed";
/** The optimizer is reached only through the binding; the host is a label. */
const BASE = "https://optimizer.tiercel.internal";

export interface RemoteOptions {
  /** How long one call may take before the original is served instead. */
  timeoutMs: number;
}

/** The `wasm` image engine, run by the optimizer Worker. */
export function remoteImageEngine(binding: OptimizerBinding, options: RemoteOptions): ImageEngine {
  return {
    name: "wasm",
    formats: ["png", "jpeg", "webp"],
    async transform(job: ImageJob, site = ""): Promise<ImageResult> {
      const { input, ...rest } = job;
      const response = await call(binding, options, "/image", input, { [JOB_HEADER]: JSON.stringify(rest) }, site);
      const meta = parseImageMeta(response.headers.get(IMAGE_HEADER));
      return { bytes: new Uint8Array(await response.arrayBuffer()), ...meta };
    },
  };
}

/** The minifiers, run by the optimizer Worker. */
export function remoteMinifier(binding: OptimizerBinding, options: RemoteOptions): Minifier {
  return {
    async minify(kind: MinifyKind, source: Uint8Array, site = ""): Promise<MinifyResult> {
      const response = await call(binding, options, `/minify/${kind}`, source, {}, site);
      const changed = response.headers.get(CHANGED_HEADER) === "1";
      return { bytes: changed ? new Uint8Array(await response.arrayBuffer()) : source, changed };
    },
  };
}

/** Engines for a Worker without the binding: every transform fails, so the original stands in. */
export const unboundOptimizer = {
  engine: {
    name: "wasm",
    formats: ["png", "jpeg", "webp"],
    transform: () => Promise.reject(unbound()),
  } satisfies ImageEngine,
  minifier: { minify: () => Promise.reject(unbound()) } satisfies Minifier,
};

function unbound(): OptimizeError {
  return new OptimizeError("optimizer-unavailable", "This Worker has no OPTIMIZER service binding");
}

async function call(
  binding: OptimizerBinding,
  options: RemoteOptions,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
  site: string,
): Promise<Response> {
  const controller = new AbortController();
  const request = new Request(`${BASE}${path}`, {
    method: "POST",
    body,
    headers: { ...headers, [SITE_HEADER]: site, "content-type": "application/octet-stream" },
    signal: controller.signal,
  });
  let response: Response;
  try {
    response = await withDeadline(binding.fetch(request), options.timeoutMs, "optimizer call");
  } catch (error) {
    controller.abort();
    const timedOut = error instanceof DeadlineError;
    throw new OptimizeError(
      timedOut ? "optimizer-timeout" : "optimizer-unavailable",
      `The optimizer Worker did not answer: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (response.ok) return response;
  const failure = await response.json().catch(() => undefined);
  if (isFailure(failure)) throw new OptimizeError(failure.reason, failure.message);
  throw new OptimizeError("optimizer-unavailable", `The optimizer Worker answered ${response.status}`);
}

/** The body of an optimizer's error answer. */
export interface Failure {
  reason: string;
  message: string;
}

function isFailure(value: unknown): value is Failure {
  if (typeof value !== "object" || value === null) return false;
  const { reason, message } = value as Record<string, unknown>;
  return typeof reason === "string" && /^[a-z0-9-]{1,64}$/.test(reason) && typeof message === "string";
}

const OUTPUT_FORMATS: readonly OutputFormat[] = ["png", "jpeg", "webp", "avif"];

function parseImageMeta(header: string | null): Omit<ImageResult, "bytes"> {
  const meta = (() => {
    try {
      return JSON.parse(header ?? "") as Record<string, unknown>;
    } catch {
      return undefined;
    }
  })();
  const { format, width, height } = meta ?? {};
  if (
    typeof format !== "string" ||
    !OUTPUT_FORMATS.includes(format as OutputFormat) ||
    !Number.isInteger(width) ||
    !Number.isInteger(height)
  ) {
    throw new OptimizeError("engine-bad-output", "The optimizer Worker's answer does not describe an image");
  }
  return { format: format as OutputFormat, width: width as number, height: height as number };
}
