import type { Origin } from "../core/origin";
import type { Site } from "../sites/schema";
import { httpOrigin } from "./http";
import { s3Origin } from "./s3";
import type { UpstreamOptions } from "./upstream";

export interface OriginFactoryOptions extends UpstreamOptions {
  secret(name: string): string | undefined;
  connectMode?: "direct" | "resolve-override";
}

/**
 * Builds (and remembers, per site id and origin config) the origin of a site. Origin settings are checked
 * again here, when used: an address the schema let through but the address rules refuse is an error.
 */
export function originFactory(options: OriginFactoryOptions): (site: Site) => Origin {
  const built = new Map<string, { config: string; origin: Origin }>();
  return (site) => {
    const config = JSON.stringify(site.origin);
    const known = built.get(site.id);
    if (known && known.config === config) return known.origin;
    const origin =
      site.origin.kind === "s3"
        ? s3Origin({ ...options, config: site.origin })
        : httpOrigin({ ...options, config: site.origin });
    if (built.size > 10_000) built.clear();
    built.set(site.id, { config, origin });
    return origin;
  };
}
