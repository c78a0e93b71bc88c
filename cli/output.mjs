import { isObject } from "./json.mjs";

/**
 * What the API sends is shown as text, never interpreted: control characters (a terminal escape from a
 * broken or hostile server, a newline that would forge an output line) become U+FFFD.
 *
 * @param {unknown} value
 * @returns {string}
 */
export function printable(value) {
  let text = "";
  for (const char of String(value)) {
    const code = char.codePointAt(0) ?? 0;
    text += code < 0x20 || (code >= 0x7f && code <= 0x9f) ? "\uFFFD" : char;
  }
  return text;
}

/**
 * @typedef {object} Column
 * @property {string} title
 * @property {"left" | "right"} [align] numbers read best right-aligned
 */

/**
 * An aligned table: a header row, then one row per item, columns two spaces apart.
 *
 * @param {Column[]} columns
 * @param {unknown[][]} rows
 * @returns {string} lines ending in a newline
 */
export function formatTable(columns, rows) {
  const cells = [columns.map((column) => column.title), ...rows.map((row) => row.map(printable))];
  const widths = columns.map((_, index) => Math.max(...cells.map((row) => (row[index] ?? "").length)));
  const lines = cells.map((row) =>
    columns
      .map((column, index) => {
        const cell = row[index] ?? "";
        const width = widths[index] ?? 0;
        return column.align === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}

/**
 * `key: value` lines with the values aligned.
 *
 * @param {[string, unknown][]} fields
 * @returns {string}
 */
export function formatFields(fields) {
  const width = Math.max(0, ...fields.map(([key]) => key.length + 1));
  return fields.map(([key, value]) => `${`${printable(key)}:`.padEnd(width)}  ${printable(value ?? "")}\n`).join("");
}

/**
 * One site as `key: value` fields: `id` and `hosts` first, then every other field in the API's order, nested
 * objects flattened to dotted paths (`origin.url`, `cache.edgeTtl`). The purge records are summarized: they
 * are bookkeeping, keyed by cache key.
 *
 * @param {Record<string, any>} site
 * @returns {[string, unknown][]}
 */
export function siteFields(site) {
  const { id, hosts, purges, ...rest } = site;
  /** @type {[string, unknown][]} */
  const fields = [
    ["id", id],
    ["hosts", listOf(hosts)],
  ];
  flatten(rest, "", fields);
  if (isObject(purges)) fields.push(["purges", describePurges(purges)]);
  return fields;
}

/**
 * @param {Record<string, unknown>} value
 * @param {string} prefix
 * @param {[string, unknown][]} into
 */
function flatten(value, prefix, into) {
  for (const [key, member] of Object.entries(value)) {
    const path = `${prefix}${key}`;
    if (isObject(member)) flatten(member, `${path}.`, into);
    else if (Array.isArray(member)) into.push([path, listOf(member)]);
    else into.push([path, member]);
  }
}

/**
 * @param {Record<string, any>} purges
 * @returns {string}
 */
function describePurges(purges) {
  const count = (/** @type {unknown} */ record) => (isObject(record) ? Object.keys(record).length : 0);
  const counts = `${count(purges.urls)} url, ${count(purges.tags)} tag, ${count(purges.softTags)} soft tag recorded`;
  return typeof purges.softAll === "number"
    ? `${counts}; everything soft-purged at ${isoTime(purges.softAll)}`
    : counts;
}

/**
 * The origin in one cell: the kind, then the backend URL (and where it connects) or the bucket.
 *
 * @param {unknown} origin
 * @returns {{ kind: string, where: string }}
 */
export function describeOrigin(origin) {
  if (!isObject(origin)) return { kind: "?", where: "" };
  if (origin.kind === "http") {
    return { kind: "http", where: `${origin.url}${origin.connectTo ? ` via ${origin.connectTo}` : ""}` };
  }
  if (origin.kind === "s3") {
    return { kind: "s3", where: `${origin.bucket}/${origin.prefix ?? ""} at ${origin.endpoint}` };
  }
  return { kind: String(origin.kind), where: "" };
}

/**
 * @param {unknown} value
 * @returns {string}
 */
export function listOf(value) {
  if (!Array.isArray(value)) return value === undefined ? "" : String(value);
  return value.length === 0 ? "(none)" : value.join(", ");
}

/**
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * @param {number} epochMs
 * @returns {string}
 */
function isoTime(epochMs) {
  const date = new Date(epochMs);
  return Number.isNaN(date.getTime()) ? String(epochMs) : date.toISOString();
}

/**
 * `n thing` or `n things`.
 *
 * @param {number} count
 * @param {string} noun
 * @returns {string}
 */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * `tiercel: <message> (<code>)`, then the detail lines indented. Anything else thrown is a bug in the CLI,
 * printed with its message as `internal_error`.
 *
 * @param {unknown} error
 * @param {string} [about] what the error is about, put before the message (`site 2 (a.example)`)
 * @returns {string}
 */
export function formatError(error, about) {
  const cliError = /** @type {{ code?: unknown, message?: unknown, details?: unknown }} */ (error);
  const code = typeof cliError?.code === "string" && cliError.code !== "" ? cliError.code : "internal_error";
  const message = `${about === undefined ? "" : `${about}: `}${cliError?.message ?? String(error)}`;
  const details = Array.isArray(cliError?.details) ? cliError.details : [];
  return [`tiercel: ${printable(message)} (${printable(code)})`, ...details.map((line) => `  ${printable(line)}`)]
    .map((line) => `${line}\n`)
    .join("");
}
