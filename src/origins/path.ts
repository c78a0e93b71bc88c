import { TiercelError } from "../core/errors";

/**
 * The object path of a request, as decoded segments. The URL parser has already resolved literal and
 * `%2e`-encoded dot segments (WHATWG URL §4.4); what it leaves, and what is refused here with 400
 * `bad_path`, is anything that could still climb out of a site's prefix or base path once an origin decodes
 * it: encoded separators (`%2f`, `%5c`), backslashes, NUL, malformed escapes and residual `.`/`..` segments.
 */
export function objectSegments(url: URL): string[] {
  // One read of the path (each is a new string from the runtime's URL).
  const path = url.pathname;
  const segments = path.split("/").slice(1);
  // Most paths have nothing escaped: the URL parser has already resolved "." and ".." segments, so there is
  // nothing to decode or refuse (every request checks its path; this keeps a hit from paying for it).
  if (!path.includes("%") && !path.includes("\\")) return segments;
  return segments.map((segment) => {
    if (/%(2f|5c|00)/i.test(segment) || segment.includes("\\")) throw badPath(url);
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw badPath(url);
    }
    if (decoded === "." || decoded === "..") throw badPath(url);
    return decoded;
  });
}

function badPath(url: URL): TiercelError {
  return new TiercelError("bad_path", 400, `The path ${JSON.stringify(url.pathname)} is not allowed`);
}
