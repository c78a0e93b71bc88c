/**
 * HTML as escaped templates: `html\`<p>${value}</p>\`` escapes every interpolated value unless it is already
 * `Html` (made by this tag), so a site's host, a config value or an error message can never become markup.
 * Arrays are joined. `null`, `undefined` and `false` print nothing.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

export function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += render(values[i] as Value) + (strings[i + 1] ?? "");
  return new Html(out);
}

/**
 * JSON for a `<script type="application/json">` data block: `<` is escaped so no value can close the
 * element, and the block is never run (the CSP runs only the console's own script files).
 */
export function jsonData(value: unknown): Html {
  return new Html(
    JSON.stringify(value).replaceAll("<", "\\u003c").replaceAll("\u2028", "\\u2028").replaceAll("\u2029", "\\u2029"),
  );
}
