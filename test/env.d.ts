// Bindings the test configuration adds on top of wrangler.jsonc's (see vitest.config.ts).
declare namespace Cloudflare {
  interface Env {
    /** Base URL of the counting loopback origin (test/support/origin-server.ts). */
    TEST_ORIGIN: string;
    /** Endpoint of the SigV4-verifying bucket server (demo/s3-server.mjs). */
    TEST_S3_ENDPOINT: string;
    TEST_S3_KEY_ID: string;
    TEST_S3_SECRET: string;
    TEST_S3_WRONG_SECRET: string;
  }
}
