import consoleCss from "./static/console.css.txt";
import consoleJs from "./static/console.js.txt";
import uplotJs from "./static/vendor/uplot.iife.min.js.txt";
import uplotCss from "./static/vendor/uplot.min.css.txt";

/**
 * The console's static files, served by the Worker itself (no second deployment): its script and stylesheet,
 * and uPlot (a small time-series chart library, MIT: static/vendor/LICENSE-uplot). Each path carries a digest
 * of the file, so a file can be cached for a year and a new version is a new path.
 *
 * All are .txt files, which wrangler bundles as text by default (no module rule, so `wrangler types` and the
 * bundle's consumers, such as the local world's loader, see plain text modules). uPlot's two files are copies
 * of the installed package's `dist/uPlot.iife.min.js` and `dist/uPlot.min.css`; test/e2e/console-browser.test.mjs
 * checks they still are (after an upgrade: `cp node_modules/uplot/dist/uPlot.iife.min.js
 * src/console/static/vendor/uplot.iife.min.js.txt`, and the same for the stylesheet).
 */
const FILES = {
  js: { name: "console", ext: "js", type: "text/javascript; charset=utf-8", body: consoleJs },
  css: { name: "console", ext: "css", type: "text/css; charset=utf-8", body: consoleCss },
  uplotJs: { name: "uplot", ext: "js", type: "text/javascript; charset=utf-8", body: uplotJs },
  uplotCss: { name: "uplot", ext: "css", type: "text/css; charset=utf-8", body: uplotCss },
} as const;

type AssetName = keyof typeof FILES;

/** FNV-1a (32 bits) of the text, in hex: a version for the file's path, not a security measure. */
function digest(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

const BY_PATH = new Map<string, (typeof FILES)[AssetName]>();
export const ASSET_PATHS = {} as Record<AssetName, string>;
for (const [key, file] of Object.entries(FILES) as [AssetName, (typeof FILES)[AssetName]][]) {
  const file_ = `${file.name}.${digest(file.body)}.${file.ext}`;
  ASSET_PATHS[key] = `/_tiercel/console/assets/${file_}`;
  BY_PATH.set(file_, file);
}

/** The response for `/_tiercel/console/assets/<file>`, or null when there is no such file. */
export function assetResponse(file: string): Response | null {
  const found = BY_PATH.get(file);
  if (!found) return null;
  return new Response(found.body, {
    headers: {
      "content-type": found.type,
      "cache-control": "public, max-age=31536000, immutable",
      "x-content-type-options": "nosniff",
    },
  });
}
