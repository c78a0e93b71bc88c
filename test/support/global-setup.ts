import type { TestProject } from "vitest/node";
import { startS3Server } from "../../demo/s3-server.mjs";
import { startOptimizer } from "./optimizer-process";
import { startOriginServer } from "./origin-server";

/** Credentials of the test bucket server; the Worker gets them as secrets (vitest.config.ts). */
export const S3_CREDENTIALS = { accessKeyId: "tiercel-test", secretAccessKey: "tiercel-test-secret" };
export const S3_BUCKETS = ["test-bucket", "other-bucket"];

/**
 * Starts, once for the whole run, the loopback origin and the S3-compatible bucket server (which verifies
 * every request's SigV4 signature with AWS's own signer), and the optimizer Worker in a workerd process of
 * its own, and tells the workerd tests their ports.
 */
export default async function setup(project: TestProject) {
  const s3 = await startS3Server({
    credentials: S3_CREDENTIALS,
    buckets: Object.fromEntries(S3_BUCKETS.map((name) => [name, null])),
    // Tests move Tiercel's clock; a real-time Date from the bucket would age its responses.
    sendDate: false,
  });
  const { server, port } = await startOriginServer(s3);
  const optimizer = await startOptimizer();
  project.provide("originPort", port);
  project.provide("s3Port", s3.port);
  project.provide("optimizerPort", optimizer.port);
  return async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await s3.close();
    await optimizer.close();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    originPort: number;
    s3Port: number;
    optimizerPort: number;
  }
}
