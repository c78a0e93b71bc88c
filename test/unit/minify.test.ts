// @ts-expect-error: csso ships without types; the parts used are typed by CssTree below.
import * as cssoUntyped from "csso/dist/csso.esm";
import { type MinifyOptions, minify as terserMinify } from "terser";
import { describe, expect, it } from "vitest";
import { MINIFY_MAX_INPUT_BYTES, type MinifyKind, minify, minifyKindOf } from "../../src/optimize/minify";
import { OptimizeError } from "../../src/optimize/types";
// The fixtures end in `.txt` so that tools leave their bytes alone: Biome would reformat (and "fix") the HTML and
// JS, and vitest replaces any `.css` import, even `?raw`, with an empty string.
import articleHtml from "../fixtures/minify/article.html.txt?raw";
import siteCss from "../fixtures/minify/site.css.txt?raw";
import widgetsJs from "../fixtures/minify/widgets.js.txt?raw";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);

async function minified(kind: MinifyKind, text: string): Promise<string> {
  const result = await minify(kind, encode(text));
  expect(result.changed).toBe(true);
  return decode(result.bytes);
}

/** The OptimizeError reason `promise` rejects with. */
async function reasonOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(OptimizeError);
  return (error as OptimizeError).reason;
}

const isAscii = (text: string) => /^\p{ASCII}*$/u.test(text);

// --- JavaScript helpers: workerd forbids eval and new Function, so behaviour is checked through the AST. ---

interface JsNode {
  TYPE: string;
  name?: { name: string };
  definitions?: { name: { name: string } }[];
}

/** Parses with terser (no compression, no mangling); throws if `code` does not parse. */
async function parseJs(code: string, module = false): Promise<JsNode[]> {
  const options = { module, compress: false, mangle: false, format: { ast: true, code: false, comments: false } };
  const result = (await terserMinify(code, options as MinifyOptions)) as { ast?: { body: JsNode[] } };
  if (result.ast === undefined) throw new Error("terser returned no AST");
  return result.ast.body;
}

/** Names a classic script declares at its top level: the globals it gives other scripts. */
async function topLevelNames(code: string): Promise<string[]> {
  const names: string[] = [];
  for (const node of await parseJs(code)) {
    if (node.definitions) names.push(...node.definitions.map((definition) => definition.name.name));
    else if (node.name && (node.TYPE === "Defun" || node.TYPE === "DefClass")) names.push(node.name.name);
  }
  return names.sort();
}

// --- CSS helpers: csso's own parser (css-tree), counting what a non-restructuring minify must keep. ---

interface CssNode {
  type: string;
}
interface CssTree {
  syntax: {
    parse(css: string, options: { onParseError(error: Error): void }): CssNode;
    walk(ast: CssNode, visit: (node: CssNode) => void): void;
  };
}
const cssTree = cssoUntyped as CssTree;

function cssCounts(css: string): { errors: string[]; counts: Record<string, number> } {
  const errors: string[] = [];
  const ast = cssTree.syntax.parse(css, { onParseError: (error) => errors.push(error.message) });
  const counts: Record<string, number> = { Rule: 0, Atrule: 0, Declaration: 0, Selector: 0 };
  cssTree.syntax.walk(ast, (node) => {
    if (node.type in counts) counts[node.type] = (counts[node.type] ?? 0) + 1;
  });
  return { errors, counts };
}

// --- HTML helpers: workerd's HTMLRewriter as an independent tokenizer. ---

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  nbsp: "\u00a0",
  mdash: "\u2014",
  middot: "\u00b7",
  thinsp: "\u2009",
  copy: "\u00a9",
};

/** Decodes the character references the fixtures use (and the short forms minify-html writes). */
function decodeEntities(text: string): string {
  return text.replace(/&(#x[\da-f]+|#\d+|[a-z]+);?/gi, (whole, ref: string) => {
    if (ref.startsWith("#x") || ref.startsWith("#X")) return String.fromCodePoint(Number.parseInt(ref.slice(2), 16));
    if (ref.startsWith("#")) return String.fromCodePoint(Number.parseInt(ref.slice(1), 10));
    return ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

interface HtmlView {
  /** The body's text (raw-text elements excluded), entities decoded, whitespace runs collapsed to one space. */
  text: string;
  /** Every element in order: its tag name and attributes, values decoded. */
  elements: { tag: string; attributes: Record<string, string> }[];
  comments: string[];
  /** The contents of each <script> and <style>, in order. */
  scripts: { type: string | null; code: string }[];
  styles: string[];
}

async function viewHtml(html: string): Promise<HtmlView> {
  const view: HtmlView = { text: "", elements: [], comments: [], scripts: [], styles: [] };
  let inBody = false;
  let raw: "script" | "style" | "other" | undefined;
  await new HTMLRewriter()
    .onDocument({
      comments(comment) {
        view.comments.push(comment.text);
      },
      text(chunk) {
        if (raw === "script") (view.scripts.at(-1) as { code: string }).code += chunk.text;
        else if (raw === "style") view.styles[view.styles.length - 1] += chunk.text;
        else if (raw === undefined && inBody) view.text += chunk.text;
      },
    })
    .on("*", {
      element(element) {
        const tag = element.tagName;
        view.elements.push({
          tag,
          attributes: Object.fromEntries(
            [...element.attributes].map(([name = "", value = ""]) => [name, decodeEntities(value)]),
          ),
        });
        if (tag === "body") inBody = true;
        if (tag === "script") view.scripts.push({ type: element.getAttribute("type"), code: "" });
        if (tag === "style") view.styles.push("");
        if (["script", "style", "textarea", "title"].includes(tag)) {
          raw = tag === "script" || tag === "style" ? tag : "other";
          element.onEndTag(() => {
            raw = undefined;
          });
        }
      },
    })
    .transform(new Response(html))
    .text();
  view.text = decodeEntities(view.text).replace(/[\t\n\f\r ]+/g, " ");
  return view;
}

function between(html: string, pattern: RegExp): string {
  const match = pattern.exec(html);
  if (!match?.[1]) throw new Error(`${pattern} not found`);
  return match[1];
}

describe("minify: JavaScript (terser)", () => {
  it("makes a classic script smaller and keeps every global it declares", async () => {
    const out = await minified("js", widgetsJs);
    expect(out.length).toBeLessThan(widgetsJs.length * 0.7);
    expect(await topLevelNames(out)).toEqual(await topLevelNames(widgetsJs));
    expect(await topLevelNames(out)).toEqual([
      "CommentCounter",
      "EMAIL_PATTERN",
      "FIELD_NOTES_VERSION",
      "FieldNotes",
      "activeCounters",
      "debounce",
      "formatBytes",
      "isPlausibleEmail",
      "startCommentCounters",
    ]);
  });

  it("mangles only local names, and keeps function and class names, property names and strings", async () => {
    const out = await minified("js", widgetsJs);
    expect(out).not.toContain("timerId"); // a local: mangled
    expect(out).not.toContain("Debounces a function"); // an ordinary comment: dropped
    expect(out).toContain("function debounced("); // Function#name kept
    expect(out).toContain("function onReady(");
    expect(out).toContain("class CommentCounter");
    for (const kept of [
      "FieldNotes.formatBytes",
      "this.lastCount",
      '"/api/comments/count"',
      "[data-comment-counter]",
    ]) {
      expect(out).toContain(kept);
    }
  });

  it("keeps the license banner", async () => {
    expect(await minified("js", widgetsJs)).toMatch(
      /^\/\*!\n \* Field Notes widgets v1\.4\.0\n \* \(c\) 2026 Field Notes contributors\. Released under the MIT License\.\n \*\//,
    );
  });

  it("gives output that parses, and is stable: a second pass finds nothing to remove", async () => {
    const once = await minify("js", encode(widgetsJs));
    await expect(parseJs(decode(once.bytes))).resolves.toBeDefined();
    const twice = await minify("js", once.bytes);
    expect(twice.changed).toBe(false);
    expect(decode(twice.bytes)).toBe(decode(once.bytes));
  });

  it("keeps an ASCII script ASCII: terser would otherwise write escapes like \\u00a0 as raw characters", async () => {
    const out = await minified("js", widgetsJs);
    expect(isAscii(out)).toBe(true);
    expect(out).toContain('"\\xa0"');
    // Input that already has raw UTF-8 is served as UTF-8, so raw characters are fine there.
    expect(await minified("js", 'var greeting = "caf\u00e9";\nvar escaped = "\\u00e9";\n')).toBe(
      'var greeting="caf\u00e9",escaped="\u00e9";',
    );
  });

  it("leaves the top level of a script alone even when it has static imports", async () => {
    const source = 'import { a } from "./a.js";\nconst longLocalName = a * 2;\nexport { longLocalName as result };\n';
    const out = await minified("js", source);
    expect(out).toBe('import{a}from"./a.js";const longLocalName=2*a;export{longLocalName as result};');
    await expect(parseJs(out, true)).resolves.toHaveLength(3);
  });

  it("minifies module-only syntax (top-level await) as a module, whose top level is private", async () => {
    const out = await minified("js", 'const response = await fetch("/data.json");\nconsole.log(response.status);\n');
    expect(out).toMatch(/^const (\w)=await fetch\("\/data\.json"\);console\.log\(\1\.status\);$/);
    expect(out).not.toContain("response");
  });

  it('refuses JavaScript that does not parse ("minify-parse-error")', async () => {
    expect(await reasonOf(minify("js", encode("function (")))).toBe("minify-parse-error");
    expect(await reasonOf(minify("js", encode("var a = ;")))).toBe("minify-parse-error");
  });

  it("keeps a byte order mark, which also declares UTF-8", async () => {
    const out = await minify("js", encode('\uFEFFvar message = "\\u00e9t\\u00e9";\n'));
    expect(out.changed).toBe(true);
    expect([...out.bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(decode(out.bytes)).toBe('\uFEFFvar message="\u00e9t\u00e9";');
  });

  it("returns the input, unchanged, when minifying would not make it smaller", async () => {
    const source = encode("var a=1;");
    const result = await minify("js", source);
    expect(result).toEqual({ bytes: source, changed: false });
    expect(result.bytes).toBe(source);
  });
});

describe("minify: CSS (csso, no restructuring)", () => {
  it("makes a stylesheet smaller, and it still parses with the same rules, selectors and declarations", async () => {
    const out = await minified("css", siteCss);
    expect(out.length).toBeLessThan(siteCss.length * 0.7);
    const before = cssCounts(siteCss);
    const after = cssCounts(out);
    expect(before.errors).toEqual([]);
    expect(after.errors).toEqual([]);
    expect(after.counts).toEqual(before.counts);
    expect(before.counts).toEqual({ Rule: 29, Atrule: 4, Declaration: 78, Selector: 35 });
  });

  it("shortens values but keeps custom properties, calc() and !important as written", async () => {
    const out = await minified("css", siteCss);
    expect(out).toContain("body{margin:0;");
    expect(out).toContain("background-color:#fff}");
    expect(out).toContain("--space-unit:8px;");
    expect(out).toContain("width:calc(100% - 2*var(--space-unit))");
    expect(out).toContain("background-color:#048!important");
    expect(out).toContain("button[type=submit]:disabled{opacity:.5;cursor:not-allowed}");
  });

  it("keeps the /*! license comment and drops the others", async () => {
    const out = await minified("css", siteCss);
    expect(out.startsWith("/*! Field Notes theme v2.3.1 | MIT License | https://example.com/license */")).toBe(true);
    expect(out).not.toContain("Layout");
    expect(out).not.toContain("private use area");
  });

  it("keeps an ASCII stylesheet ASCII: csso would otherwise write \\f09e as a raw private-use character", async () => {
    const out = await minified("css", siteCss);
    expect(isAscii(out)).toBe(true);
    expect(out).toContain('content:"\\f09e"');
    expect(out).toContain('content:" \\2197"');
    expect(out).toContain('quotes:"\\201c""\\201d"');
  });

  it('writes raw characters when the stylesheet declares UTF-8 (@charset "utf-8")', async () => {
    expect(await minified("css", '@charset "utf-8";\n.icon::before { content: "\\f09e"; }\n')).toBe(
      '@charset "utf-8";.icon::before{content:"\uf09e"}',
    );
  });

  it("re-escapes with a separating space where the next character would extend the escape", async () => {
    expect(await minified("css", '.a::after { content: "\\e9 a\\e9 !"; }\n')).toBe('.a::after{content:"\\e9 a\\e9!"}');
  });

  it("is stable: a second pass finds nothing to remove", async () => {
    const once = await minify("css", encode(siteCss));
    const twice = await minify("css", once.bytes);
    expect(twice.changed).toBe(false);
    expect(decode(twice.bytes)).toBe(decode(once.bytes));
  });

  it("recovers from malformed CSS as a browser does instead of failing", async () => {
    // An unclosed block is closed at the end of the stylesheet.
    expect(await minified("css", ".a { color: #ff0000;\n  margin: 0px")).toBe(".a{color:red;margin:0}");
    // A string left open runs to the end of the stylesheet, and is closed there.
    expect(await minified("css", '.a { content: "open; }')).toBe('.a{content:"open; }"}');
    // A newline ends it as a bad string, which invalidates the declaration; csso keeps it as written.
    expect(await minified("css", '.a { content: "open;\n  color: red }')).toBe('.a{content:"open;\n  color: red}');
    // Stray braces swallow what follows into one invalid rule, which a browser drops: csso drops it too.
    expect(await minify("css", encode("}}} {{{ a { color: red; } .b { x: }"))).toEqual({
      bytes: new Uint8Array(0),
      changed: true,
    });
  });
});

describe("minify: HTML (minify-html, checked with HTMLRewriter)", () => {
  it("makes a page smaller and keeps its text, elements and every attribute", async () => {
    const out = await minified("html", articleHtml);
    expect(out.length).toBeLessThan(articleHtml.length * 0.85);
    const before = await viewHtml(articleHtml);
    const after = await viewHtml(out);
    expect(after.text).toBe(before.text);
    expect(after.text).toContain("Hit ratios were disappointing (about 40%)");
    expect(after.elements.map((element) => element.tag)).toEqual(before.elements.map((element) => element.tag));
    for (const [index, element] of after.elements.entries()) {
      const original = before.elements[index]?.attributes ?? {};
      expect(Object.keys(element.attributes).sort()).toEqual(Object.keys(original).sort());
      for (const [name, value] of Object.entries(original)) {
        // style= is minified CSS; the viewport's content loses its spaces (minify-html's one rewrite of a value).
        if (name === "style" || (element.tag === "meta" && original.name === "viewport")) continue;
        expect(element.attributes[name], `${element.tag} ${name}`).toBe(value);
      }
    }
    expect(out).toContain('<meta content="width=device-width,initial-scale=1" name=viewport>');
  });

  it("keeps attributes minify-html drops for holding their default value (type=submit, method=get…)", async () => {
    expect(await minified("html", articleHtml)).toMatch(/<button [^>]*type="submit"/);
    const out = await minified(
      "html",
      '<form method="get" action="/search">\n  <button type="submit">Go</button>\n  <a href="/x" target="_self">x</a>\n</form>\n',
    );
    expect(out).toContain('method="get"');
    expect(out).toContain('type="submit"');
    expect(out).toContain('target="_self"');
  });

  it("keeps <pre> and <textarea> contents byte for byte", async () => {
    const out = await minified("html", articleHtml);
    const pre = /<pre>([\s\S]*?)<\/pre>/;
    const textarea = /<textarea[^>]*>([\s\S]*?)<\/textarea>/;
    expect(between(out, pre)).toBe(between(articleHtml, pre));
    expect(between(out, textarea)).toBe("\n  Indented first line,\n    and a second one.\n");
  });

  it("keeps comments (hydration markers), <head>, <body> and closing tags", async () => {
    const out = await minified("html", articleHtml);
    expect((await viewHtml(out)).comments).toEqual((await viewHtml(articleHtml)).comments);
    expect(out).toContain("<!--$-->");
    expect(out).toContain("<!--/$-->");
    expect(out).toMatch(/^<!doctype html><html lang=en><head>/);
    expect(out).toMatch(/<\/p> <\/footer> .*<\/body><\/html>$/s);
    expect(out).toContain("<li><a href=/archive/>Archive</a></li>");
  });

  it("minifies inline <style> and <script>, leaves JSON-LD alone, and the script keeps its global", async () => {
    const before = await viewHtml(articleHtml);
    const after = await viewHtml(await minified("html", articleHtml));
    expect(after.styles).toHaveLength(1);
    expect(after.styles[0]).toBe(
      ".masthead{background-color:#fff;border-bottom:1px solid #e5e5e5;justify-content:space-between;align-items:center;padding:16px 24px;display:flex}.masthead__title{color:#333;font-size:1.25em;font-weight:700}",
    );
    expect(after.scripts.map((script) => script.type)).toEqual(["application/ld+json", null, "module"]);
    expect(after.scripts[0]).toEqual(before.scripts[0]);
    const [, classic, module] = after.scripts;
    expect(classic?.code.length).toBeLessThan((before.scripts[1]?.code.length ?? 0) * 0.7);
    expect(await topLevelNames(classic?.code ?? "")).toEqual(["validateComment"]);
    await expect(parseJs(module?.code ?? "", true)).resolves.toBeDefined();
    expect(module?.code.length).toBeLessThan(before.scripts[2]?.code.length ?? 0);
  });

  it("keeps whitespace between tags as one space, where minify-html would delete it", async () => {
    // minify-html alone gives <nav><a href=/>Home</a><a href=/about>About</a></nav>: "HomeAbout".
    expect(await minified("html", '<nav>\n  <a href="/">Home</a>\n  <a href="/about">About</a>\n</nav>\n')).toBe(
      "<nav> <a href=/>Home</a> <a href=/about>About</a> </nav>",
    );
    expect(await minified("html", "<div>\n  <span>a</span>   text  \n</div>")).toBe("<div> <span>a</span> text </div>");
    // Runs of whitespace in text are still collapsed.
    expect(await minified("html", "<p>\n  Some   <b>bold</b>\n\n  text\n</p>")).toBe("<p> Some <b>bold</b> text </p>");
  });

  it("is stable: a second pass finds nothing to remove", async () => {
    const once = await minify("html", encode(articleHtml));
    const twice = await minify("html", once.bytes);
    expect(twice.changed).toBe(false);
    expect(decode(twice.bytes)).toBe(decode(once.bytes));
  });

  it('refuses an inline script or style that would minify into markup ("minify-unsafe")', async () => {
    // oxc writes "\x3c!--<script>" as raw text, which would swallow the page after the script.
    const script = '<script>var marker = "\\x3c!--<script>";</script>\n<p>after</p>\n';
    expect(await reasonOf(minify("html", encode(script)))).toBe("minify-unsafe");
    // lightningcss writes "\3c/style>" as raw text, which would end the style element early.
    const style = '<style>.a::before { content: "\\3c/style><p>x</p>"; }</style>\n<p>after</p>\n';
    expect(await reasonOf(minify("html", encode(style)))).toBe("minify-unsafe");
  });

  it('refuses malformed HTML that minify-html would restructure ("minify-unsafe")', async () => {
    expect(await reasonOf(minify("html", encode("<p>broken <b>html <i>here</p></div>\n<p>next</p>\n")))).toBe(
      "minify-unsafe",
    );
  });

  it("only writes raw non-ASCII characters into a page that declares UTF-8", async () => {
    const body = "<p>\n  Caf&eacute; &mdash; open\n</p>\n";
    expect(await minified("html", `<meta charset="utf-8">\n${body}`)).toBe(
      "<meta charset=utf-8><p> Caf\u00e9 \u2014 open </p>",
    );
    expect(await reasonOf(minify("html", encode(body)))).toBe("minify-charset-unsafe");
    // ASCII in, ASCII out: a page that declares another charset is fine as long as nothing needs decoding.
    expect(await minified("html", '<meta charset="windows-1252">\n<p>\n  plain  text\n</p>\n')).toBe(
      "<meta charset=windows-1252><p> plain text </p>",
    );
  });

  it('refuses a page that declares another charset but is not ASCII ("minify-charset-unsafe")', async () => {
    const html = '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">\n<p>caf\u00e9</p>\n';
    expect(await reasonOf(minify("html", encode(html)))).toBe("minify-charset-unsafe");
  });
});

describe("minify: limits and encoding", () => {
  it.each(["html", "css", "js"] as const)('refuses %s that is not UTF-8 ("minify-not-utf8")', async (kind) => {
    const latin1 = new Uint8Array([...encode("/* caf"), 0xe9, ...encode(" */ a")]);
    expect(await reasonOf(minify(kind, latin1))).toBe("minify-not-utf8");
  });

  it.each(["html", "css", "js"] as const)('refuses %s over the size limit ("minify-too-large")', async (kind) => {
    const big = new Uint8Array(MINIFY_MAX_INPUT_BYTES + 1).fill(0x20);
    expect(await reasonOf(minify(kind, big))).toBe("minify-too-large");
    expect(MINIFY_MAX_INPUT_BYTES).toBe(1024 * 1024);
  });
});

describe("minifyKindOf", () => {
  it.each([
    ["text/html", "html"],
    ["text/html; charset=utf-8", "html"],
    ["TEXT/HTML;Charset=UTF-8", "html"],
    ['text/html; charset="utf-8"', "html"],
    ["text/css", "css"],
    ["text/css;charset=utf8", "css"],
    ["text/javascript", "js"],
    ["text/javascript; charset=utf-8", "js"],
    ["application/javascript", "js"],
    ["application/x-javascript", "js"],
    ["application/ecmascript", "js"],
    ["text/ecmascript", "js"],
    ["text/x-javascript", "js"],
    ["Application/JavaScript ; charset=UTF-8", "js"],
  ])("maps %j to %s", (contentType, kind) => {
    expect(minifyKindOf(contentType)).toBe(kind);
  });

  it.each([
    null,
    "",
    "image/png",
    "text/plain",
    "application/json",
    "application/ld+json",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/html-sandboxed",
    "text/css; charset=iso-8859-1",
    "text/html; charset=windows-1252",
    "application/javascript; charset=utf-16",
  ])("gives undefined for %j", (contentType) => {
    expect(minifyKindOf(contentType)).toBeUndefined();
  });
});
