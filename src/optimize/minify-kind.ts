/**
 * What kind of minification a response gets, decided in the cache Worker from its Content-Type, apart from
 * the minifiers themselves (src/optimize/minify.ts), which run in the optimizer Worker: the cache Worker's
 * bundle carries none of their code.
 */

export type MinifyKind = "html" | "css" | "js";

/**
 * Inputs larger than this are refused ("minify-too-large"). WebAssembly and terser run synchronously, so a
 * minification cannot be timed out once started; its cost is bounded here instead. Measured in local workerd:
 * terser takes 1–2 s for 250 KB of JavaScript (as long for input that is already minified), the HTML path
 * 1.4–2 s for 280 KB (mostly the HTMLRewriter check, ~10 µs per tag and per text node), csso 0.2–0.9 s for
 * 360 KB of CSS. So the worst case at this limit is several seconds of CPU, once per variant.
 */
export const MINIFY_MAX_INPUT_BYTES = 1024 * 1024;

/** Labels that mean UTF-8 (WHATWG Encoding Standard). */
export const UTF8_LABELS = new Set([
  "unicode-1-1-utf-8",
  "unicode11utf8",
  "unicode20utf8",
  "utf-8",
  "utf8",
  "x-unicode20utf8",
]);

/** MIME type essences minified, lower-case: HTML, CSS, and every JavaScript MIME type of the WHATWG MIME Sniffing standard. */
const KINDS = new Map<string, MinifyKind>([
  ["text/html", "html"],
  ["text/css", "css"],
  ...[
    "application/ecmascript",
    "application/javascript",
    "application/x-ecmascript",
    "application/x-javascript",
    "text/ecmascript",
    "text/javascript",
    "text/javascript1.0",
    "text/javascript1.1",
    "text/javascript1.2",
    "text/javascript1.3",
    "text/javascript1.4",
    "text/javascript1.5",
    "text/jscript",
    "text/livescript",
    "text/x-ecmascript",
    "text/x-javascript",
  ].map((type): [string, MinifyKind] => [type, "js"]),
]);

/**
 * Maps a Content-Type to the kind of minification it gets, or undefined. Case-insensitive; parameters are
 * ignored except `charset`: a body labelled with a charset other than UTF-8 is not minified, because the
 * engines read and write UTF-8 only. XHTML (`application/xhtml+xml`) is not HTML syntax and is left alone.
 */
export function minifyKindOf(contentType: string | null): MinifyKind | undefined {
  if (contentType === null) return undefined;
  const [essence = "", ...params] = contentType.split(";");
  const kind = KINDS.get(essence.trim().toLowerCase());
  if (kind === undefined) return undefined;
  for (const param of params) {
    const eq = param.indexOf("=");
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== "charset") continue;
    const charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, "$1")
      .toLowerCase();
    return UTF8_LABELS.has(charset) ? kind : undefined;
  }
  return kind;
}
