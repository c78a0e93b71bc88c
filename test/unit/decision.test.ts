import { describe, expect, it } from "vitest";
import { type DecisionInput, decide, type OriginOutcome, type StoredUse } from "../../src/core/http/decision";

/**
 * The decision function as a table (after undici's cache interceptor tests): each row is a request, what is
 * stored, the site's grace, the time and what the origin did, with the decision and the RFC section that
 * makes it so. Times are seconds after the response arrived at T.
 */
const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const DAY = 86_400;

/** A record received at T with this lifetime, no initial age and no stale windows unless given. */
function record(lifetime: number, overrides: Partial<StoredUse> = {}): StoredUse {
  return {
    lifetime,
    initialAge: 0,
    responseTime: T,
    swr: 0,
    sie: 0,
    grace: DAY,
    mustRevalidate: false,
    noCache: false,
    ...overrides,
  };
}

interface Row {
  rfc: string;
  case: string;
  method?: string;
  makesVariant?: boolean;
  stored?: StoredUse;
  purge?: "none" | "soft" | "purged";
  /** Seconds after T of the soft purge. */
  purgedAt?: number;
  grace?: number;
  at: number;
  origin?: OriginOutcome;
  expected: ReturnType<typeof decide>;
}

const unreachable: OriginOutcome = { kind: "failed", unreachable: true };
const refusedConfig: OriginOutcome = { kind: "failed", unreachable: false };
const answered = (status: number): OriginOutcome => ({ kind: "answered", status });

const rows: Row[] = [
  // Before the origin: what the tiers found.
  { rfc: "—", case: "nothing stored", at: 0, expected: { action: "fetch", reason: "miss" } },
  {
    rfc: "RFC 9110 §9.3.2",
    case: "HEAD with nothing stored goes to the origin as HEAD",
    method: "HEAD",
    at: 0,
    expected: { action: "forward", reason: "head-miss" },
  },
  {
    rfc: "—",
    case: "HEAD of a resize URL makes the variant",
    method: "HEAD",
    makesVariant: true,
    at: 0,
    expected: { action: "fetch", reason: "miss" },
  },
  {
    rfc: "RFC 9111 §4.2",
    case: "fresh: age below lifetime",
    stored: record(60),
    at: 59,
    expected: { action: "serve", reason: "fresh" },
  },
  {
    rfc: "RFC 9111 §4.2",
    case: "HEAD of a fresh entry is served",
    method: "HEAD",
    stored: record(60),
    at: 10,
    expected: { action: "serve", reason: "fresh" },
  },
  {
    rfc: "RFC 9111 §4.2",
    case: "stale once age reaches lifetime",
    stored: record(60),
    at: 60,
    expected: { action: "revalidate", reason: "stale" },
  },
  {
    rfc: "RFC 9111 §4.2.3",
    case: "an initial age past the lifetime is stale from the start",
    stored: record(60, { initialAge: 90 }),
    at: 0,
    expected: { action: "revalidate", reason: "stale" },
  },
  {
    rfc: "RFC 9111 §5.2.2.4",
    case: "no-cache is validated even while fresh",
    stored: record(600, { noCache: true }),
    at: 1,
    expected: { action: "revalidate", reason: "no-cache" },
  },
  {
    rfc: "RFC 5861 §3",
    case: "within stale-while-revalidate: serve and refresh",
    stored: record(60, { swr: 30 }),
    at: 80,
    expected: { action: "serve-stale-and-refresh", reason: "stale-while-revalidate" },
  },
  {
    rfc: "RFC 5861 §3",
    case: "past stale-while-revalidate: revalidate",
    stored: record(60, { swr: 30 }),
    at: 90,
    expected: { action: "revalidate", reason: "stale" },
  },
  {
    rfc: "RFC 9111 §5.2.2.2",
    case: "must-revalidate forbids stale-while-revalidate",
    stored: record(60, { swr: 30, mustRevalidate: true }),
    at: 70,
    expected: { action: "revalidate", reason: "stale" },
  },
  {
    rfc: "RFC 9110 §9.3.2",
    case: "HEAD of a stale entry goes to the origin as HEAD",
    method: "HEAD",
    stored: record(60),
    at: 70,
    expected: { action: "forward", reason: "head-miss" },
  },
  {
    rfc: "—",
    case: "a purged entry is as good as absent",
    stored: record(600),
    purge: "purged",
    at: 1,
    expected: { action: "fetch", reason: "purged" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "soft-purged, within grace from the purge: serve and refresh",
    stored: record(600),
    purge: "soft",
    purgedAt: 10,
    at: 20,
    expected: { action: "serve-stale-and-refresh", reason: "soft-purged" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "soft-purged, past grace from the purge: revalidate",
    stored: record(600),
    purge: "soft",
    purgedAt: 10,
    grace: 5,
    at: 20,
    expected: { action: "revalidate", reason: "soft-purged" },
  },
  {
    rfc: "RFC 9111 §5.2.2.2",
    case: "soft-purged with must-revalidate: revalidate at once",
    stored: record(600, { mustRevalidate: true }),
    purge: "soft",
    purgedAt: 10,
    at: 11,
    expected: { action: "revalidate", reason: "soft-purged" },
  },
  {
    rfc: "RFC 5861 §3",
    case: "soft-purged, grace off, within swr from the purge",
    stored: record(600, { swr: 30 }),
    purge: "soft",
    purgedAt: 10,
    grace: 0,
    at: 30,
    expected: { action: "serve-stale-and-refresh", reason: "soft-purged" },
  },
  // After the origin failed or answered an error.
  {
    rfc: "—",
    case: "origin unreachable, nothing stored",
    at: 0,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "nothing-stored" },
  },
  {
    rfc: "RFC 5861 §4",
    case: "5xx within stale-if-error",
    stored: record(60, { sie: 100 }),
    at: 150,
    origin: answered(503),
    expected: { action: "serve-stale", reason: "stale-if-error" },
  },
  {
    rfc: "RFC 5861 §4",
    case: "5xx past stale-if-error, grace does not cover an answering origin",
    stored: record(60, { sie: 10 }),
    at: 150,
    origin: answered(503),
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 5861 §4",
    case: "a failure within stale-if-error",
    stored: record(60, { sie: 100 }),
    at: 150,
    origin: refusedConfig,
    expected: { action: "serve-stale", reason: "stale-if-error" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "unreachable origin within grace",
    stored: record(60),
    at: 3600,
    origin: unreachable,
    expected: { action: "serve-stale", reason: "origin-unreachable" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "unreachable origin past grace",
    stored: record(60),
    at: 60 + DAY,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "the site's lower grace wins over the stored one",
    stored: record(60),
    grace: 30,
    at: 100,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "a record from before grace has none",
    stored: record(60, { grace: undefined }),
    at: 61,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 9111 §4.2.4",
    case: "a refused config (auth, forbidden address) is no outage",
    stored: record(60),
    at: 61,
    origin: refusedConfig,
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 9111 §5.2.2.2",
    case: "must-revalidate: never stale, not even on error",
    stored: record(60, { sie: 100, mustRevalidate: true }),
    at: 61,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "stale-forbidden" },
  },
  {
    rfc: "RFC 9111 §5.2.2.4",
    case: "no-cache: never stale, not even on error",
    stored: record(60, { sie: 100, noCache: true }),
    at: 61,
    origin: answered(502),
    expected: { action: "pass-origin-outcome", reason: "stale-forbidden" },
  },
  {
    rfc: "RFC 5861 §4",
    case: "a 4xx answer is no error to cover",
    stored: record(60, { sie: 100 }),
    at: 61,
    origin: answered(404),
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "RFC 5861 §4",
    case: "stale-if-error counts from a soft purge before expiry",
    stored: record(3600, { sie: 100, grace: 0 }),
    purge: "soft",
    purgedAt: 20,
    at: 150,
    origin: answered(500),
    expected: { action: "pass-origin-outcome", reason: "outside-windows" },
  },
  {
    rfc: "—",
    case: "a purged entry never stands in",
    stored: record(60, { sie: 100 }),
    purge: "purged",
    at: 61,
    origin: unreachable,
    expected: { action: "pass-origin-outcome", reason: "nothing-stored" },
  },
];

function inputOf(row: Row): DecisionInput {
  const input: DecisionInput = {
    request: { method: row.method ?? "GET", makesVariant: row.makesVariant ?? false },
    policy: { grace: row.grace ?? DAY },
    now: T + row.at * 1000,
  };
  if (row.stored) {
    input.stored = { record: row.stored, purge: row.purge ?? "none" };
    if (row.purgedAt !== undefined) input.stored.softPurgedAt = T + row.purgedAt * 1000;
  }
  if (row.origin) input.origin = row.origin;
  return input;
}

describe("decide: serve, serve stale and refresh, revalidate, fetch, or stand in for a failed origin", () => {
  it.each(rows.map((row) => [`${row.rfc}: ${row.case}`, row] as const))("%s", (_, row) => {
    expect(decide(inputOf(row))).toEqual(row.expected);
  });
});
