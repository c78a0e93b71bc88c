#!/usr/bin/env node
// The `tiercel` command: manages a Tiercel Worker (sites, purges, stats) through its admin API
// (docs/admin-api.md). Plain Node ESM, no build step. `tiercel help` lists the commands.
import { runCli } from "./main.mjs";

/**
 * @returns {Promise<string>}
 */
async function readStdin() {
  let text = "";
  process.stdin.setEncoding("utf8");
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

// `tiercel sites list | head -1`: a reader that stops early is not worth a stack trace.
process.stdout.on("error", (error) => {
  if (/** @type {NodeJS.ErrnoException} */ (error).code !== "EPIPE") throw error;
  process.exit(process.exitCode ?? 0);
});

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  readStdin,
});
