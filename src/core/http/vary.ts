/**
 * Vary (RFC 9110 §12.5.5; RFC 9111 §4.1).
 *
 * Deliberate deviation: `Accept-Encoding` is not treated as a selecting header. Every origin request
 * carries Tiercel's own Accept-Encoding, never the client's, and what is stored is the decoded identity
 * form (see content-coding.ts), so the representation Tiercel stores is the same whichever encoding the
 * client asked for.
 */
export type VaryFields = "*" | string[];

const NOT_SELECTING = new Set(["accept-encoding"]);

/** The selecting field names of a response, lower-cased, de-duplicated and sorted; "*" for Vary: *. */
export function parseVary(value: string | null): VaryFields {
  if (!value) return [];
  const names = new Set<string>();
  for (const token of value.split(",")) {
    const name = token.trim().toLowerCase();
    if (name === "*") return "*";
    if (name && !NOT_SELECTING.has(name)) names.add(name);
  }
  return [...names].sort();
}
