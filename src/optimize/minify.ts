// @ts-expect-error: index_bg.js ships without types; the two exports used are typed by HtmlBindings below.
import * as htmlBindingsUntyped from "@minify-html/wasm/index_bg.js";
import htmlWasm from "@minify-html/wasm/index_bg.wasm";
// @ts-expect-error: csso ships without types; the one export used is typed by Csso below.
import * as cssoUntyped from "csso/dist/csso.esm";
import { type MinifyOptions, minify as terserMinify } from "terser";
import { MINIFY_MAX_INPUT_BYTES, type MinifyKind, UTF8_LABELS } from "./minify-kind";
import { OptimizeError } from "./types";

export { MINIFY_MAX_INPUT_BYTES, type MinifyKind, minifyKindOf } from "./minify-kind";

/**
 * Minification of HTML, CSS and JavaScript, run once when a variant is filled (issue 7). Each kind uses an
 * established engine that runs in workerd without nodejs_compat:
 *
 * - HTML: minify-html (Rust, compiled to WebAssembly), which also minifies inline `<style>`/`style=` (lightningcss)
 *   and inline `<script>` (oxc); its output is checked and repaired with workerd's HTMLRewriter (see minifyHtml).
 * - CSS: csso, from its self-contained ESM bundle (`csso/dist/csso.esm`; the package's main entry pulls css-tree's
 *   data through `createRequire`, which workerd lacks).
 * - JS: terser.
 *
 * The options favour "never change what the page does" over the last few bytes; each choice is explained where
 * it is made. Engines only turn bytes into bytes: whether a response is minified is decided by the pipeline.
 *
 * Encoding. The bytes must be UTF-8 (a BOM is allowed and kept). All three engines decode escapes into raw
 * characters (`&eacute;` → `é`, CSS `"\f101"` → U+F101, JS `"\u00e9"` → `é`), which is only safe if the browser
 * also decodes the result as UTF-8. A document that is pure ASCII may be decoded with anything (a stylesheet or
 * classic script without a charset inherits the charset of the page that loads it; an HTML page without a
 * declaration gets a locale default such as windows-1252), so when nothing declares UTF-8 (a BOM, a
 * `<meta charset>`, an `@charset`) an ASCII input gives an ASCII output: terser writes escapes (`ascii_only`),
 * CSS output is re-escaped, and HTML that would gain raw non-ASCII characters is refused. Callers must not pass
 * bodies whose Content-Type names a charset other than UTF-8 (`minifyKindOf` gives undefined for those).
 */

interface HtmlBindings {
  __wbg_set_wasm(exports: WebAssembly.Exports): void;
  minify(code: Uint8Array, cfg: Record<string, boolean>): Uint8Array;
}
interface Csso {
  minify(source: string, options: Record<string, unknown>): { css: string };
}
const htmlBindings = htmlBindingsUntyped as HtmlBindings;
const csso = cssoUntyped as Csso;

/**
 * minify-html's configuration (every field not named is false). Fields left false keep the output
 * spec-compliant: attribute values are only unquoted where the spec allows, spaces between attributes and
 * entity forms that validators reject are kept, and the doctype is not shortened.
 */
const HTML_CFG: Record<string, boolean> = {
  // Optional closing tags (`</p>`, `</li>`, `</body>`, `</html>`) and the `<html>`/`<head>` start tags may be
  // omitted by the spec, and browsers rebuild the same tree, but streaming tools do not: HTMLRewriter (lol-html)
  // matches the tags that are in the source, so `on("head")` never fires and `append` to `body` has no end tag
  // to anchor on. Other Workers, scrapers and crawlers see this HTML too; about 3 % of size is not worth that.
  keep_closing_tags: true,
  keep_html_and_head_opening_tags: true,
  // Comments carry meaning for server-rendered frameworks: React's Suspense markers (`<!--$-->`), Vue's and
  // Svelte's fragment anchors (`<!--[-->`), Lit's part markers, Knockout's containerless bindings. Removing them
  // breaks hydration, so all comments are kept.
  keep_comments: true,
  // Dropping `type=text` changes which elements `input[type=text]` selectors match.
  keep_input_type_text_attr: true,
  minify_css: true,
  minify_js: true,
};

let htmlExports: WebAssembly.Exports | undefined;

/** Instantiates minify-html's WebAssembly once per isolate (workerd cannot use the package's ESM-integration entry). */
function htmlEngine(): HtmlBindings {
  if (!htmlExports) {
    const imports = { "./index_bg.js": htmlBindings as unknown as WebAssembly.ModuleImports };
    htmlExports = new WebAssembly.Instance(htmlWasm, imports).exports;
    htmlBindings.__wbg_set_wasm(htmlExports);
  }
  return htmlBindings;
}

/**
 * Drops an instance that trapped (a stack overflow on deeply nested input leaves its memory broken for
 * every later call). The glue caches a view of the old memory; growing that memory by 0 pages detaches
 * the view's buffer, which makes the glue take a fresh view of the next instance's memory.
 */
function discardHtmlEngine(): void {
  const memory = htmlExports?.memory;
  if (memory instanceof WebAssembly.Memory) memory.grow(0);
  htmlExports = undefined;
}

/**
 * minify-html, then a second look with workerd's own HTML tokenizer (HTMLRewriter, i.e. lol-html) that undoes
 * the two things minify-html does which can change what a page does, and that it has no options for:
 *
 * - It drops attributes that hold their default value (`button type=submit`, `form method=get`, `a
 *   target=_self`, `canvas width=300`, `script type=text/javascript`, empty `class=""`…). The element behaves
 *   the same, but `button[type=submit]` in a stylesheet or `querySelector` no longer matches it. Every dropped
 *   attribute is put back.
 * - It deletes whitespace-only text between the children of "layout" elements (`div`, `nav`, `ul`, `td`…) and
 *   trims it at the edges of "content" elements, assuming they never hold inline content. They often do
 *   (`<nav><a>Home</a> <a>About</a></nav>` would read "HomeAbout"; inline-block buttons lose their gaps), so
 *   wherever the input had whitespace between two tags and the output has none, one space is put back
 *   (except in `<head>` and in raw text, where it cannot render). Whitespace is still collapsed to one space.
 *
 * The same pass checks that the output has exactly the input's tags, end tags and comments in the same order.
 * They can differ when minify-html repairs malformed HTML, or when an inline script or style minifies into
 * text that ends or escapes its element (oxc turns `"\x3c!--<script>"` into a raw `<!--<script>`, lightningcss
 * turns `"\3c/style>"` into `</style>`); the document is then refused ("minify-unsafe").
 */
async function minifyHtml(text: string): Promise<string> {
  let minified: string;
  try {
    minified = decoder().decode(htmlEngine().minify(new TextEncoder().encode(text), HTML_CFG));
  } catch (error) {
    discardHtmlEngine();
    throw new OptimizeError("minify-engine-error", `HTML minifier failed: ${messageOf(error)}`);
  }
  let input: HtmlWalk;
  let output: HtmlWalk;
  try {
    input = await walkHtml(text);
    output = await walkHtml(minified, input.shape);
  } catch (error) {
    throw new OptimizeError("minify-engine-error", `HTML check failed: ${messageOf(error)}`);
  }
  if (!output.aligned || output.shape.events.length !== input.shape.events.length) {
    throw new OptimizeError(
      "minify-unsafe",
      "The minified HTML's tags do not match the input's (malformed HTML, or an inline script or style that minifies into markup)",
    );
  }
  return output.html;
}

/** The text between two consecutive tags, comments or doctypes: whether it starts or ends with whitespace. */
interface Gap {
  lead: boolean;
  trail: boolean;
  /** Whether whitespace here can render: in the body, and not the content of a raw-text element. */
  significant: boolean;
}

/** What walkHtml records of a document, in source order. */
interface HtmlShape {
  /** "<name" for a start tag, "</name" for an end tag, "!" for a comment, "!doctype". */
  events: string[];
  /** `gaps[i]` is the text just before `events[i]`. */
  gaps: Gap[];
  /** Each start tag's attributes, as written (lol-html gives values undecoded). */
  attributes: string[][][];
}

/** Elements whose content is raw text or RCDATA: whitespace in it is not HTML whitespace. */
const RAW_TEXT = new Set(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"]);
/** Start tags that do not by themselves start the body. */
const BEFORE_BODY = new Set([
  "html",
  "head",
  "base",
  "basefont",
  "bgsound",
  "link",
  "meta",
  "noscript",
  "script",
  "style",
  "template",
  "title",
]);
const HTML_WHITESPACE = /^[\t\n\f\r ]$/;

interface HtmlWalk {
  shape: HtmlShape;
  /** The document as HTMLRewriter passed it through (with the repairs, when given a reference). */
  html: string;
  /** Whether the events matched the reference's, one for one, so far as they went. */
  aligned: boolean;
}

/**
 * Tokenizes `html` with HTMLRewriter and records its shape. With a `reference` (the shape of the input), it
 * also rewrites `html` (the output) to put back the attributes and whitespace the reference has and `html`
 * lacks, and reports whether the events line up.
 */
async function walkHtml(html: string, reference?: HtmlShape): Promise<HtmlWalk> {
  const shape: HtmlShape = { events: [], gaps: [], attributes: [] };
  let aligned = true;
  let first = ""; // first and last character of the text since the last event
  let last = "";
  let inBody = false;
  let rawText = false;

  const event = (id: string, node?: { before(content: string): unknown }) => {
    const index = shape.events.length;
    const gap: Gap = {
      lead: HTML_WHITESPACE.test(first),
      trail: HTML_WHITESPACE.test(last),
      significant: inBody && !rawText,
    };
    shape.events.push(id);
    shape.gaps.push(gap);
    first = last = "";
    if (reference === undefined) return;
    if (reference.events[index] !== id) aligned = false;
    const want = reference.gaps[index];
    if (aligned && node && want?.significant && want.trail && !gap.trail) node.before(" ");
  };

  const rewriter = new HTMLRewriter()
    .onDocument({
      doctype() {
        event("!doctype");
      },
      comments(comment) {
        event("!", comment);
      },
      text(chunk) {
        const text = chunk.text;
        if (text === "") return;
        if (first === "") {
          first = text.charAt(0);
          const want = reference?.gaps[shape.events.length];
          if (aligned && want?.significant && want.lead && !HTML_WHITESPACE.test(first)) chunk.before(" ");
        }
        last = text.charAt(text.length - 1);
      },
    })
    .on("*", {
      element(element) {
        const name = element.tagName.toLowerCase();
        event(`<${name}`, element);
        const attributes = [...element.attributes];
        shape.attributes.push(attributes);
        const wanted = reference?.attributes[shape.attributes.length - 1];
        if (aligned && wanted) {
          for (const [attribute = "", value = ""] of wanted) {
            if (!element.hasAttribute(attribute)) element.setAttribute(attribute, value);
          }
        }
        if (!BEFORE_BODY.has(name)) inBody = true;
        if (RAW_TEXT.has(name)) rawText = true;
        try {
          element.onEndTag((end) => {
            // lol-html also calls this for an element closed implicitly, at the end tag that closed it and
            // with that tag's name; only the element's own end tag is an event.
            if (end.name.toLowerCase() !== name) return;
            event(`</${name}`, end);
            if (RAW_TEXT.has(name)) rawText = false;
            if (name === "body" || name === "html") inBody = false;
          });
        } catch {
          // A void or self-closing element has no end tag.
        }
      },
    });
  const out = await rewriter.transform(new Response(html)).text();
  return { shape, html: out, aligned };
}

/**
 * csso without restructuring: it still drops comments (except `/*!` ones) and whitespace, shortens colours,
 * numbers and units, and removes empty rules, but it does not merge or move rules across the stylesheet.
 * Restructuring changes rule order and merges selectors, which is where csso's cascade bugs have been (hacks,
 * vendor prefixes, selectors a browser rejects taking valid ones down with them); it saves a few more percent.
 */
function minifyCss(text: string, asciiOnly: boolean): string {
  let out: string;
  try {
    out = csso.minify(text, { restructure: false, comments: "exclamation" }).css;
  } catch (error) {
    // csso recovers from malformed CSS the way browsers do; a throw here is unexpected.
    throw new OptimizeError("minify-engine-error", `CSS minifier failed: ${messageOf(error)}`);
  }
  return asciiOnly ? escapeCssNonAscii(out) : out;
}

/** Writes every non-ASCII code point as a CSS escape (valid in strings, identifiers and url()). */
function escapeCssNonAscii(css: string): string {
  return css.replace(/[^\p{ASCII}]/gu, (char: string, offset: number) => {
    const hex = (char.codePointAt(0) ?? 0).toString(16);
    // An escape ends at the first non-hex character and swallows one whitespace: add a space if the next
    // character would otherwise be read as part of it.
    const next = css.charAt(offset + char.length);
    return `\\${hex}${/^[\da-fA-F \t\n\r\f]$/.test(next) ? " " : ""}`;
  });
}

/**
 * Terser, for a classic script unless the source only parses as a module. A classic script's top-level
 * declarations are globals that other scripts and inline handlers use, so the top level is neither mangled nor
 * pruned (`toplevel: false`); only local names are mangled. `keep_fnames`/`keep_classnames` keep
 * `Function#name` and `constructor.name`, which code uses for registries, serialisation and messages.
 * Compress options stay at terser's defaults, which exclude every `unsafe*` transform, and the output uses
 * only syntax the input used (`ecma` 5 output). Comments that matter are kept: `/*!`, @license, @preserve,
 * @copyright and @cc_on ("some").
 */
async function minifyJs(text: string, asciiOnly: boolean): Promise<string> {
  const options = (module: boolean): MinifyOptions => ({
    module,
    toplevel: module,
    keep_fnames: true,
    keep_classnames: true,
    format: { comments: "some", ascii_only: asciiOnly },
  });
  try {
    return (await terserMinify(text, options(false))).code ?? "";
  } catch (scriptError) {
    if (!isParseError(scriptError)) {
      throw new OptimizeError("minify-engine-error", `JS minifier failed: ${messageOf(scriptError)}`);
    }
    // Source that is not a valid script but is a valid module can only be a module, whose top level is
    // private to it and may be mangled. (Terser accepts static import/export in script mode, where the top
    // level is simply left alone; this is for module-only syntax such as top-level await.)
    try {
      return (await terserMinify(text, options(true))).code ?? "";
    } catch {
      const { line, col } = scriptError as { line?: number; col?: number };
      throw new OptimizeError(
        "minify-parse-error",
        `JS does not parse: ${messageOf(scriptError)}${line === undefined ? "" : ` (line ${line}, column ${col})`}`,
      );
    }
  }
}

function isParseError(error: unknown): boolean {
  return error instanceof Error && error.name === "SyntaxError";
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function decoder(fatal = false): TextDecoder {
  return new TextDecoder("utf-8", { fatal, ignoreBOM: false });
}

/** Labels of UTF-16, which HTML's `<meta>` prescan and CSS's `@charset` read as UTF-8 (the text could be read to find them). */
const UTF16_LABELS = new Set([
  "csunicode",
  "iso-10646-ucs-2",
  "ucs-2",
  "unicode",
  "unicodefeff",
  "unicodefffe",
  "utf-16",
  "utf-16be",
  "utf-16le",
]);

/** Which encoding the content itself declares: "utf-8", "other", or undefined when it declares none. */
function declaredEncoding(kind: MinifyKind, text: string, bom: boolean): "utf-8" | "other" | undefined {
  if (bom) return "utf-8"; // a BOM overrides every other declaration, even the Content-Type's
  let label: string | undefined;
  if (kind === "html") {
    // The spec's prescan looks at the first 1024 bytes for <meta charset> or <meta http-equiv content>.
    label = /<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([^\s"'/>;]+)/i.exec(text.slice(0, 1024))?.[1];
  } else if (kind === "css") {
    label = /^@charset "([^"]*)";/.exec(text)?.[1];
  }
  if (label === undefined) return undefined;
  label = label.toLowerCase();
  return UTF8_LABELS.has(label) || UTF16_LABELS.has(label) ? "utf-8" : "other";
}

function isAscii(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte > 0x7f) return false;
  return true;
}

/**
 * Minifies one text asset. Never returns output that is not smaller than the input: then the input itself
 * comes back with `changed: false`. Throws OptimizeError with a stable reason:
 * - "minify-too-large": over MINIFY_MAX_INPUT_BYTES;
 * - "minify-not-utf8": not valid UTF-8;
 * - "minify-parse-error": JavaScript that does not parse (the HTML and CSS engines recover from malformed
 *   input the way browsers do);
 * - "minify-unsafe": HTML whose tags would not survive minification unchanged (see minifyHtml);
 * - "minify-charset-unsafe": content that declares a charset other than UTF-8 and is not ASCII, or ASCII HTML
 *   that would gain non-ASCII characters while nothing declares UTF-8;
 * - "minify-engine-error": an engine failed unexpectedly.
 */
export async function minify(kind: MinifyKind, source: Uint8Array): Promise<{ bytes: Uint8Array; changed: boolean }> {
  if (source.byteLength > MINIFY_MAX_INPUT_BYTES) {
    throw new OptimizeError(
      "minify-too-large",
      `${source.byteLength} bytes is over the ${MINIFY_MAX_INPUT_BYTES}-byte minify limit`,
    );
  }
  let text: string;
  try {
    text = decoder(true).decode(source); // strips a leading BOM
  } catch {
    throw new OptimizeError("minify-not-utf8", `The ${kind} is not valid UTF-8`);
  }
  const bom = source[0] === 0xef && source[1] === 0xbb && source[2] === 0xbf;
  const ascii = isAscii(source);
  const declared = declaredEncoding(kind, text, bom);
  if (declared === "other" && !ascii) {
    throw new OptimizeError("minify-charset-unsafe", `The ${kind} declares a charset other than UTF-8`);
  }
  const asciiOnly = ascii && declared !== "utf-8";

  let out: string;
  if (kind === "html") {
    out = await minifyHtml(text);
  } else if (kind === "css") {
    out = minifyCss(text, asciiOnly);
  } else {
    out = await minifyJs(text, asciiOnly);
  }

  const bytes = new TextEncoder().encode(bom ? `\uFEFF${out}` : out);
  if (asciiOnly && !isAscii(bytes)) {
    throw new OptimizeError(
      "minify-charset-unsafe",
      `Minifying would add non-ASCII characters to ASCII ${kind} that does not declare UTF-8`,
    );
  }
  if (bytes.byteLength >= source.byteLength) return { bytes: source, changed: false };
  return { bytes, changed: true };
}
