import { minify } from "./optimize/minify";
import type { MinifyKind } from "./optimize/minify-kind";
import { TransformLimiter } from "./optimize/queue";
import { CHANGED_HEADER, type Failure, IMAGE_HEADER, JOB_HEADER, SITE_HEADER } from "./optimize/remote";
import { type ImageJob, OptimizeError } from "./optimize/types";
import { wasmImageEngine } from "./optimize/wasm-images";

/**
 * The optimizer Worker (wrangler.optimizer.jsonc): the CPU-bound transforms — the WASM image codecs and the
 * minifiers — in an isolate of their own, reached by the cache Worker through its OPTIMIZER service binding
 * (protocol: src/optimize/remote.ts). It decides nothing: it turns the bytes and options it is sent into
 * bytes and metadata. What to transform, keys, headers and stand-ins are the cache Worker's.
 *
 * Transforms run one at a time (they compute synchronously on the isolate's one thread, and one decoded
 * image at a time bounds memory), each on a fresh turn of the event loop; a site has at most 2 in the
 * isolate (one running, one waiting), and at most 8 wait in all. Past that the answer is `busy` at once.
 */
const limiter = new TransformLimiter({ concurrency: 2, maxWaiting: 0 }, { concurrency: 1, maxWaiting: 8 });

const KINDS: readonly MinifyKind[] = ["html", "css", "js"];

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (request.method !== "POST") return failure(405, "method-not-allowed", "Only POST is answered");
    const site = request.headers.get(SITE_HEADER) ?? "";
    try {
      if (url.pathname === "/image") {
        const job = parseJob(request.headers.get(JOB_HEADER));
        const input = new Uint8Array(await request.arrayBuffer());
        const result = await limiter.run(site, () => wasmImageEngine.transform({ ...job, input }));
        const meta = { format: result.format, width: result.width, height: result.height };
        return new Response(result.bytes, { headers: { [IMAGE_HEADER]: JSON.stringify(meta) } });
      }
      const kind = url.pathname.startsWith("/minify/") ? url.pathname.slice("/minify/".length) : undefined;
      if (kind !== undefined && (KINDS as readonly string[]).includes(kind)) {
        const source = new Uint8Array(await request.arrayBuffer());
        const result = await limiter.run(site, () => minify(kind as MinifyKind, source));
        // Unchanged: the caller keeps its own copy of the input, so it is not sent back.
        return new Response(result.changed ? result.bytes : null, {
          headers: { [CHANGED_HEADER]: result.changed ? "1" : "0" },
        });
      }
      return failure(404, "not-found", `Nothing is served at ${url.pathname}`);
    } catch (error) {
      if (error instanceof OptimizeError)
        return failure(error.reason === "busy" ? 503 : 422, error.reason, error.message);
      return failure(500, "engine-error", error instanceof Error ? error.message : String(error));
    }
  },
} satisfies ExportedHandler;

/** The job a request carries (its options as JSON); a malformed one is the caller's bug: `invalid-job`. */
function parseJob(header: string | null): Omit<ImageJob, "input"> {
  try {
    const job = JSON.parse(header ?? "") as Omit<ImageJob, "input">;
    if (typeof job === "object" && job !== null && typeof job.output === "string") return job;
  } catch {
    // falls through
  }
  throw new OptimizeError("invalid-job", "The request carries no valid job");
}

function failure(status: number, reason: string, message: string): Response {
  const body: Failure = { reason, message };
  return Response.json(body, { status });
}
