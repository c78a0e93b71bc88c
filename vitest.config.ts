import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * Every test runs inside workerd with the real local KV and Cache API from wrangler.jsonc. A counting
 * HTTP origin runs on loopback in Node (test/support/global-setup.ts) and its URL reaches the Worker as
 * the TEST_ORIGIN binding. The optimizer Worker runs beside it, in its own workerd process.
 */
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      main: "./src/worker.ts",
      wrangler: { configPath: "./wrangler.jsonc" },
      miniflare: {
        bindings: {
          TEST_ORIGIN: `http://127.0.0.1:${inject("originPort")}`,
          TEST_S3_ENDPOINT: `http://127.0.0.1:${inject("s3Port")}`,
          // Secrets named by the test sites' bucket configs (see test/support/global-setup.ts).
          TEST_S3_KEY_ID: "tiercel-test",
          TEST_S3_SECRET: "tiercel-test-secret",
          TEST_S3_WRONG_SECRET: "not-the-secret",
          ADMIN_TOKEN: "test-admin-token",
        },
        // The optimizer Worker runs in a workerd process of its own (test/support/optimizer-process.ts);
        // the cache Worker's OPTIMIZER binding (wrangler.jsonc) reaches it there.
        serviceBindings: {
          OPTIMIZER: { external: { address: `127.0.0.1:${inject("optimizerPort")}`, http: {} } },
        },
      },
    })),
  ],
  test: {
    globalSetup: ["./test/support/global-setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
