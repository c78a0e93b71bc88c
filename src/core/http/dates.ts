/**
 * HTTP-date parsing (RFC 9110 §5.6.7): the preferred IMF-fixdate and the two obsolete formats a recipient
 * "MUST accept" (RFC 850 and asctime), all in GMT, and nothing else. Returns epoch milliseconds, or
 * undefined for an absent or invalid date, which each field's rules then treat as absent or in the past
 * (RFC 9111 §5.3: an invalid Expires means "already expired"). `Date.parse` is not used: it accepts "2100",
 * ISO dates and other time zones, which would turn a malformed Expires into decades of freshness.
 * Names of days, months and GMT are matched without regard to case: the grammar's literals are
 * case-sensitive, but §5.6.7 lets a recipient be lenient, and `expires: sun, 06 nov 1994 08:49:37 gmt`
 * means exactly one instant (read strictly it would be invalid, i.e. already expired).
 */
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
const MONTH = `(${MONTHS.join("|")})`;
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";

/** Sun, 06 Nov 1994 08:49:37 GMT */
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`, "i");
/** Sunday, 06-Nov-94 08:49:37 GMT */
const RFC_850 = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`, "i");
/** Sun Nov  6 08:49:37 1994 */
const ASCTIME = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`, "i");

export function parseHttpDate(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  let match = IMF_FIXDATE.exec(text);
  if (match) return build(match[3], match[2], match[1], match[4], match[5], match[6]);
  match = RFC_850.exec(text);
  if (match) {
    // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future means the past century.
    const twoDigits = Number(match[3]);
    const thisYear = new Date().getUTCFullYear();
    let year = 2000 + twoDigits;
    if (year > thisYear + 50) year -= 100;
    return build(String(year), match[2], match[1], match[4], match[5], match[6]);
  }
  match = ASCTIME.exec(text);
  if (match) return build(match[6], match[1], match[2], match[3], match[4], match[5]);
  return undefined;
}

function build(
  year: string | undefined,
  month: string | undefined,
  day: string | undefined,
  hour: string | undefined,
  minute: string | undefined,
  second: string | undefined,
): number | undefined {
  const m = MONTHS.findIndex((name) => name.toLowerCase() === month?.toLowerCase());
  const [y, d, h, min, s] = [year, day, hour, minute, second].map((part) => Number(part?.trim()));
  if (m < 0 || [y, d, h, min, s].some((n) => n === undefined || Number.isNaN(n))) return undefined;
  const ms = Date.UTC(y as number, m, d as number, h as number, min as number, s as number);
  const check = new Date(ms);
  // Refuse impossible dates such as 31 Feb, which Date.UTC would roll over.
  if (check.getUTCDate() !== d || (h as number) > 23 || (min as number) > 59 || (s as number) > 60) return undefined;
  return ms;
}
