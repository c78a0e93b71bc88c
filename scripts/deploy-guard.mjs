// wrangler.jsonc's build hook: wrangler runs it before every dev, deploy and versions upload (with
// WRANGLER_COMMAND set), before it asks for credentials. It refuses a real deploy while wrangler.jsonc still
// holds the local placeholder KV ids, which name namespaces that exist only under wrangler dev. A dry run
// (`wrangler deploy --dry-run`, to measure the bundle) and everything else pass.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PLACEHOLDER = /"(?:id|bucket_name)"\s*:\s*"(tiercel-[a-z]+-local)"/g;

/** The placeholder KV ids and R2 bucket name still in wrangler.jsonc (comments ignored). */
export function placeholderIds() {
  const config = readFileSync(`${ROOT}wrangler.jsonc`, "utf8")
    .split("\n")
    .filter((line) => !line.trim().startsWith("//"))
    .join("\n");
  return [...config.matchAll(PLACEHOLDER)].map((match) => match[1]);
}

export function refusal(ids, command) {
  return (
    `${command}: wrangler.jsonc still has the local placeholders (${ids.join(", ")}).\n` +
    "Create the namespaces (npx wrangler kv namespace create SITES, and CACHE_KV) and put the ids they print\n" +
    "into kv_namespaces; or, for one bucket and no admin API, remove the SITES binding and set TIERCEL_SITE\n" +
    "(docs/deployment.md). For CACHE_R2, create a bucket (npx wrangler r2 bucket create tiercel-cache) and put\n" +
    "its name in r2_buckets, or remove the r2_buckets entry\n" +
    "(docs/deployment.md). Nothing was deployed."
  );
}

/** Whether the wrangler that runs this hook was asked for a dry run (Linux: read from its command line). */
function isDryRun() {
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth += 1) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("--dry-run")) return true;
      pid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
    } catch {
      // No /proc (macOS, Windows): the ids are still checked by `npm run deploy`.
      return process.platform !== "linux";
    }
  }
  return false;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const command = process.env.WRANGLER_COMMAND ?? "";
  const deploying = command === "deploy" || command.startsWith("versions");
  const ids = deploying ? placeholderIds() : [];
  if (ids.length > 0 && !isDryRun()) {
    console.error(refusal(ids, `wrangler ${command}`));
    process.exit(1);
  }
}
