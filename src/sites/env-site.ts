import { parseSite, type Site } from "./schema";
import type { ConfigCounters, SiteStore } from "./store";

/**
 * Zero-config mode: one site described by the Worker variable `TIERCEL_SITE` in wrangler.jsonc, used when the
 * Worker is deployed without a site store (no `SITES` KV binding). Every host is then that one site. The
 * value is a site config (docs/configuration.md) without `hosts`, validated by the same schema as a config
 * read from KV; an invalid one makes every request answer `502 site_config_invalid` naming the bad fields.
 * Nothing is cached per host and nothing is read from KV, so the counters stay at zero.
 */
export const ENV_SITE_VAR = "TIERCEL_SITE";

/** The zero-config site store, or undefined when `TIERCEL_SITE` is not set. */
export function envSiteStore(vars: Record<string, unknown>): SiteStore | undefined {
  const raw = vars[ENV_SITE_VAR];
  if (raw === undefined || raw === "") return undefined;
  const counters: ConfigCounters = { kvReads: 0, memoryHits: 0, cacheHits: 0, negativeHits: 0, lastKnownServed: 0 };
  let site: Site | undefined;
  return {
    counters,
    async siteForHost() {
      // Parsed on first use and kept for the isolate's life: the variables cannot change without a deploy.
      site ??= parseSite(typeof raw === "string" ? parseJson(raw) : raw, `the ${ENV_SITE_VAR} variable`);
      counters.memoryHits += 1;
      return site;
    },
    async forget() {},
    // No owner writes to it: the admin API is off without a site store.
    async prime() {},
  };
}

/** Wrangler passes an object var as an object; `--var`/secrets arrive as text, which must then be JSON. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
