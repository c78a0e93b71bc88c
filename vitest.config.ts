import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * Every test runs inside workerd with the real local KV and Cache API from wrangler.jsonc. A counting
 * HTTP origin runs on loopback in Node (test/support/global-setup.ts) and its URL reaches the Worker as
 * the TEST_ORIGIN binding.
 */
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      main: "./src/worker.ts",
      wrangler: { configPath: "./wrangler.jsonc" },
      miniflare: {
        bindings: { TEST_ORIGIN: `http://127.0.0.1:${inject("originPort")}` },
      },
    })),
  ],
  test: {
    globalSetup: ["./test/support/global-setup.ts"],
    include: ["test/**/*.test.ts"],
  },
});
