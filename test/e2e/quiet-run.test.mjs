// A green run is quiet (issue 18): the workerd tests that provoke failures on purpose — an origin that hangs
// up or resets, a large body that breaks off on its way into the edge tier — pass without printing uncaught
// errors, workerd exception lines or stack traces. Run by `npm test` with `node --test test/e2e/`.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FILES = ["test/tiers/edge.test.ts", "test/integration/grace.test.ts"];

test("the failure-provoking workerd tests pass without uncaught errors or workerd stack traces", {
  timeout: 300_000,
}, async () => {
  const { code, output } = await new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("../../node_modules/vitest/vitest.mjs", import.meta.url)), "run", ...FILES],
      {
        cwd: ROOT,
        env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
      },
    );
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    child.on("close", (code) => resolve({ code, output }));
  });
  assert.equal(code, 0, output);
  const noisy = output
    .split("\n")
    .filter((line) => /uncaught exception|Uncaught \(in promise\)|^exception = |^stack: /.test(line));
  assert.deepEqual(noisy, [], "a green run printed workerd errors");
});
