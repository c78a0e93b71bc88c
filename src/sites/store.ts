import { TiercelError } from "../core/errors";
import { parseSite, type Site } from "./schema";

/** Finds a site by its normalized host. `null` means no such site; a broken store throws. */
export interface SiteStore {
  siteForHost(host: string): Promise<Site | null>;
}

/** The KV key of a host's site config. */
export function siteKey(host: string): string {
  return `host:${host}`;
}

/** Site configs in Workers KV: one JSON value per host under `host:<host>`. */
export function kvSiteStore(kv: KVNamespace): SiteStore {
  return {
    async siteForHost(host: string): Promise<Site | null> {
      let raw: string | null;
      try {
        raw = await kv.get(siteKey(host), "text");
      } catch (cause) {
        throw new TiercelError("site_store_unavailable", 503, "The site config store is unavailable", {
          cause,
          headers: { "retry-after": "5" },
        });
      }
      if (raw === null) return null;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (cause) {
        throw new TiercelError("site_config_invalid", 502, `The site config for ${host} is not valid JSON`, { cause });
      }
      return parseSite(json, host);
    },
  };
}
