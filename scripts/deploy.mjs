// `npm run deploy`: `wrangler deploy` of the optimizer Worker, then of the cache Worker, refused while wrangler.jsonc still holds the local placeholder KV ids
// (they name namespaces that exist only under wrangler dev). Extra arguments go to wrangler (`-- --env staging`).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PLACEHOLDER = /"id"\s*:\s*"(tiercel-[a-z]+-local)"/g;
const config = readFileSync(`${ROOT}wrangler.jsonc`, "utf8")
  .split("\n")
  .filter((line) => !line.trim().startsWith("//"))
  .join("\n");
const placeholders = [...config.matchAll(PLACEHOLDER)].map((match) => match[1]);
if (placeholders.length > 0) {
  console.error(
    `npm run deploy: wrangler.jsonc still has the local placeholder KV ids (${placeholders.join(", ")}).\n` +
      "Create the namespaces (npx wrangler kv namespace create SITES, and CACHE_KV) and put the ids they print\n" +
      "into kv_namespaces; or, for one bucket and no admin API, remove the SITES binding and set TIERCEL_SITE\n" +
      "(docs/deployment.md). Nothing was deployed.",
  );
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
