// Bindings the test configuration adds on top of wrangler.jsonc's (see vitest.config.ts).
declare namespace Cloudflare {
  interface Env {
    /** Base URL of the counting loopback origin (test/support/origin-server.ts). */
    TEST_ORIGIN: string;
  }
}
