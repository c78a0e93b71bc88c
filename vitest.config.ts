import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * Lines workerd logs for events the tests provoke on purpose and Tiercel handles, which no setting turns
 * off: the pool writes workerd's structured logs straight to stderr (its own `ignoreMessages` list is not
 * configurable). Each entry is one exact shape; anything else workerd logs still shows.
 * - The pool's WebSocket to each test runner closing at teardown (filtered by the pool itself from
 *   vitest-pool-workers 0.16, cloudflare/workers-sdk#13833).
 * - A subrequest to the loopback origin that fails (refused, hung up, reset, cut mid-body): workerd logs
 *   the socket error and "Uncaught (in promise) … Network connection lost" even when the caller handles
 *   the rejection at once (`fetch(url).catch(...)` prints them too). Tiercel's answer to each of these
 *   failures is asserted by the tests that provoke them.
 * - An R2 read whose body is cancelled (a test that drops a body on purpose, a client that goes away): workerd
 *   logs the cancelled pump as an exception, though nothing failed; a runtime pipe whose reading end is
 *   cancelled that way (large-media's players and stores that give up) logs "read end of pipe was aborted".
 * - An edge-tier put of a body that broke off: the copy declares its length (src/tiers/edge.ts) and ends
 *   short, so the runtime logs "fixed-length pipe ended prematurely"; the put fails and nothing is kept.
 */
const KNOWN_NOISE = [
  /^exception = workerd\/api\/web-socket\.c\+\+:\d+: disconnected: WebSocket peer disconnected\n(stack:[^\n]*\n)?$/,
  /^uncaught exception; source = Uncaught \(in promise\); stack = Error: Network connection lost\.\n$/,
  /^uncaught exception; exception = workerd\/jsg\/[^\n]*: disconnected: jsg\.Error: Network connection lost\.\nstack:[^\n]*\n$/,
  /^exception = workerd\/api\/streams\/internal\.c\+\+:\d+: disconnected: pump canceled\nstack:[^\n]*\n$/,
  /^exception = kj\/async-io\.c\+\+:\d+: disconnected: stream disconnected prematurely\nstack:[^\n]*\n$/,
  /^exception = kj\/async-io\.c\+\+:\d+: disconnected: read end of pipe was aborted\nstack:[^\n]*\n$/,
  /^exception = kj\/async-io\.c\+\+:\d+: disconnected: fixed-length pipe ended prematurely\nstack:[^\n]*\n$/,
  /^exception = kj\/async-io-unix\.c\+\+:\d+: disconnected: connect\(\): Connection refused\nstack:[^\n]*\n$/,
  /^exception = kj\/async-io-unix\.c\+\+:\d+: disconnected: ::read\(fd, buffer, maxBytes\): Connection reset by peer\nstack:[^\n]*\n$/,
  /^exception = kj\/compat\/http\.c\+\+:\d+: disconnected: premature EOF in HTTP entity body; did not reach Content-Length; expectedLength = \d+; alreadyRead = \d+\nstack:[^\n]*\n$/,
];
// The pool writes each log with one `write` call, to stderr or stdout by its level.
for (const stream of [process.stderr, process.stdout]) {
  const write = stream.write.bind(stream);
  stream.write = ((chunk: string | Uint8Array, ...rest: never[]) =>
    typeof chunk === "string" && KNOWN_NOISE.some((line) => line.test(chunk))
      ? true
      : write(chunk, ...rest)) as typeof stream.write;
}

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
          ADMIN_TOKEN: "test-admin-token-0123456789abcdef0123",
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
    // Tiercel's own structured log lines (`{"event":…}`: a failure it handled, an admin change) are what an
    // operator reads in production; the tests provoke hundreds of them on purpose and assert the behaviour
    // behind each, so a green run does not print them. `TIERCEL_TEST_LOGS=1 npm test` shows them.
    onConsoleLog: (log) => process.env.TIERCEL_TEST_LOGS === "1" || !log.startsWith('{"event":'),
  },
});
