/**
 * HTTP-date parsing (RFC 9110 §5.6.7). Returns epoch milliseconds, or undefined for an absent or invalid
 * date: a recipient "MUST accept all three formats" and treats an invalid one as absent or in the past,
 * per the field's own rules.
 */
export function parseHttpDate(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}
