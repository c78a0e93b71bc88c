/**
 * Cache-Control parsing (RFC 9111 §5.2), once per message, into a typed value the rest of the code reads.
 * Unknown directives are ignored (§5.2.3). A delta-seconds that is not a non-negative integer is kept as
 * `NaN` so freshness treats it as stale (§4.2.1: "a max-age directive that has an invalid value ... ought
 * to [be considered] stale"); huge values are capped at 2^31 (§1.2.2).
 */
export interface CacheControl {
  maxAge?: number;
  sMaxAge?: number;
  noStore: boolean;
  /** `true` for bare no-cache; the listed field names for the qualified form (§5.2.2.4). */
  noCache: boolean | string[];
  /** `true` for bare private; the listed field names for the qualified form (§5.2.2.7). */
  private: boolean | string[];
  public: boolean;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  immutable: boolean;
  noTransform: boolean;
  onlyIfCached: boolean;
  maxStale?: number;
  minFresh?: number;
  /** RFC 5861 §3 */
  staleWhileRevalidate?: number;
  /** RFC 5861 §4 */
  staleIfError?: number;
  /**
   * Set when the directives come from a targeted field (RFC 9213), to its lower-case name: then Expires is
   * ignored too (§2.2).
   */
  targeted?: string;
}

const DELTA_CAP = 2 ** 31;

export function parseCacheControl(value: string | null | undefined): CacheControl {
  const cc: CacheControl = {
    noStore: false,
    noCache: false,
    private: false,
    public: false,
    mustRevalidate: false,
    proxyRevalidate: false,
    immutable: false,
    noTransform: false,
    onlyIfCached: false,
  };
  if (!value) return cc;
  for (const [name, arg] of directives(value)) {
    switch (name) {
      case "max-age":
        cc.maxAge ??= delta(arg);
        break;
      case "s-maxage":
        cc.sMaxAge ??= delta(arg);
        break;
      case "no-store":
        cc.noStore = true;
        break;
      case "no-cache":
        cc.noCache = qualified(cc.noCache, arg);
        break;
      case "private":
        cc.private = qualified(cc.private, arg);
        break;
      case "public":
        cc.public = true;
        break;
      case "must-revalidate":
        cc.mustRevalidate = true;
        break;
      case "proxy-revalidate":
        cc.proxyRevalidate = true;
        break;
      case "immutable":
        cc.immutable = true;
        break;
      case "no-transform":
        cc.noTransform = true;
        break;
      case "only-if-cached":
        cc.onlyIfCached = true;
        break;
      case "max-stale":
        // §5.2.1.2: max-stale without a value means any staleness is acceptable.
        cc.maxStale ??= arg === undefined ? Number.POSITIVE_INFINITY : delta(arg);
        break;
      case "min-fresh":
        cc.minFresh ??= delta(arg);
        break;
      case "stale-while-revalidate":
        cc.staleWhileRevalidate ??= delta(arg);
        break;
      case "stale-if-error":
        cc.staleIfError ??= delta(arg);
        break;
    }
  }
  return cc;
}

function* directives(value: string): Generator<[string, string | undefined]> {
  // Split on commas outside quoted strings; directive names are case-insensitive (§5.2).
  let i = 0;
  while (i < value.length) {
    let name = "";
    while (i < value.length && value[i] !== "," && value[i] !== "=") name += value[i++];
    let arg: string | undefined;
    if (value[i] === "=") {
      i++;
      while (value[i] === " " || value[i] === "\t") i++;
      if (value[i] === '"') {
        i++;
        arg = "";
        while (i < value.length && value[i] !== '"') {
          if (value[i] === "\\") i++;
          arg += value[i++] ?? "";
        }
        while (i < value.length && value[i] !== ",") i++;
      } else {
        arg = "";
        while (i < value.length && value[i] !== ",") arg += value[i++];
        arg = arg.trim();
      }
    }
    i++; // the comma
    const trimmed = name.trim().toLowerCase();
    if (trimmed) yield [trimmed, arg];
  }
}

function delta(arg: string | undefined): number {
  if (arg === undefined || !/^[0-9]+$/.test(arg)) return Number.NaN;
  return Math.min(Number(arg), DELTA_CAP);
}

function qualified(previous: boolean | string[], arg: string | undefined): boolean | string[] {
  if (previous === true || arg === undefined) return true;
  const names = arg
    .split(",")
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);
  return [...(previous === false ? [] : previous), ...names];
}
