// `npm run deploy`: `wrangler deploy` of the optimizer Worker, then of the cache Worker, refused while wrangler.jsonc still holds the local placeholder KV ids
// (they name namespaces that exist only under wrangler dev). Extra arguments go to wrangler (`-- --env staging`).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { placeholderIds, refusal } from "./deploy-guard.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const placeholders = placeholderIds();
if (placeholders.length > 0) {
  console.error(refusal(placeholders, "npm run deploy"));
  process.exit(1);
}
// The optimizer Worker first: the cache Worker's OPTIMIZER service binding names it (docs/optimization.md).
for (const config of ["wrangler.optimizer.jsonc", "wrangler.jsonc"]) {
  const result = spawnSync("npx", ["wrangler", "deploy", "-c", config, ...process.argv.slice(2)], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
