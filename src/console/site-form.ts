import type { Site } from "../sites/schema";

/**
 * The site form: which fields of the config it shows, how a submitted form becomes the body the admin API
 * validates (with the same schema as every write), and which field an API issue belongs to. Fields the form
 * does not show are kept from the current config on an edit, so the form never drops a setting it cannot
 * display. Values are sent as typed where they parse (numbers, booleans) and as typed text otherwise, so the
 * schema's own message lands next to the field.
 */

export type FieldKind = "text" | "lines" | "number" | "checkbox" | "select" | "checkboxes";

export interface Field {
  name: string;
  label: string;
  kind: FieldKind;
  options?: readonly string[];
  /** Only sent for this origin kind. */
  origin?: "http" | "s3";
  hint?: string;
}

export const FIELD_GROUPS: { legend: string; fields: Field[] }[] = [
  {
    legend: "Hosts",
    fields: [{ name: "hosts", label: "Hosts", kind: "lines", hint: "One host name per line, e.g. www.example.com" }],
  },
  {
    legend: "Origin",
    fields: [
      { name: "origin.kind", label: "Origin kind", kind: "select", options: ["http", "s3"] },
      { name: "origin.url", label: "Origin URL", kind: "text", origin: "http", hint: "http origins: https://…" },
      {
        name: "origin.connectTo",
        label: "Connect to (host:port)",
        kind: "text",
        origin: "http",
        hint: "Optional, http origins",
      },
      { name: "origin.endpoint", label: "S3 endpoint", kind: "text", origin: "s3", hint: "S3 origins: https://…" },
      { name: "origin.bucket", label: "Bucket", kind: "text", origin: "s3" },
      { name: "origin.region", label: "Region", kind: "text", origin: "s3", hint: "e.g. us-east-1 or auto" },
      { name: "origin.prefix", label: "Key prefix", kind: "text", origin: "s3" },
      { name: "origin.indexDocument", label: "Index document", kind: "text", origin: "s3" },
      {
        name: "origin.accessKeyIdSecret",
        label: "Access key id secret name",
        kind: "text",
        origin: "s3",
        hint: "The name of the Worker secret, never the key",
      },
      { name: "origin.secretAccessKeySecret", label: "Secret access key secret name", kind: "text", origin: "s3" },
      { name: "origin.allowPrivate", label: "Allow a private or loopback origin address", kind: "checkbox" },
    ],
  },
  {
    legend: "Cache",
    fields: [
      { name: "cache.edgeTtl", label: "Edge TTL (s)", kind: "number", hint: "Empty: the origin's freshness" },
      { name: "cache.browserTtl", label: "Browser TTL (s)", kind: "number", hint: "Empty: the origin's headers" },
      { name: "cache.staleWhileRevalidate", label: "stale-while-revalidate (s)", kind: "number" },
      { name: "cache.staleIfError", label: "stale-if-error (s)", kind: "number" },
    ],
  },
  {
    legend: "Optimize",
    fields: [
      { name: "optimize.polish", label: "Polish images", kind: "select", options: ["off", "lossless", "lossy"] },
      { name: "optimize.quality", label: "Lossy quality (40–95)", kind: "number" },
      { name: "optimize.formats", label: "Formats offered", kind: "checkboxes", options: ["webp", "avif"] },
      { name: "optimize.resize", label: "Resize URLs (/_tiercel/image/…)", kind: "checkbox" },
      { name: "optimize.minify.html", label: "Minify HTML", kind: "checkbox" },
      { name: "optimize.minify.css", label: "Minify CSS", kind: "checkbox" },
      { name: "optimize.minify.js", label: "Minify JavaScript", kind: "checkbox" },
    ],
  },
];

export const FIELDS: Field[] = FIELD_GROUPS.flatMap((group) => group.fields);
const FIELD_NAMES = new Set(FIELDS.map((field) => field.name));

/** What the form shows: text for text fields, booleans for checkboxes, lists for checkbox groups. */
export type FormValues = Record<string, string | boolean | string[]>;

/** Reads a submitted form (a FormData's entries) into values, unknown names ignored. */
export function formValues(form: FormData): FormValues {
  const values: FormValues = {};
  for (const field of FIELDS) {
    if (field.kind === "checkbox") values[field.name] = form.get(field.name) === "on";
    else if (field.kind === "checkboxes") values[field.name] = form.getAll(field.name).map(String);
    else values[field.name] = String(form.get(field.name) ?? "");
  }
  return values;
}

/** The form's values for a stored site (or the defaults of a new one). */
export function siteValues(site: Site | null): FormValues {
  const values: FormValues = {
    hosts: "",
    "origin.kind": "http",
    "origin.allowPrivate": false,
    "cache.staleWhileRevalidate": "0",
    "cache.staleIfError": "0",
    "optimize.polish": "off",
    "optimize.quality": "80",
    "optimize.formats": [],
  };
  if (!site) return values;
  values.hosts = site.hosts.join("\n");
  const origin = site.origin as Record<string, unknown>;
  for (const [key, value] of Object.entries(origin)) {
    if (typeof value === "string") values[`origin.${key}`] = value;
  }
  values["origin.allowPrivate"] = site.origin.allowPrivate;
  for (const key of ["edgeTtl", "browserTtl", "staleWhileRevalidate", "staleIfError"] as const) {
    const value = site.cache[key];
    values[`cache.${key}`] = value === undefined ? "" : String(value);
  }
  values["optimize.polish"] = site.optimize.polish;
  values["optimize.quality"] = String(site.optimize.quality);
  values["optimize.formats"] = [...site.optimize.formats];
  values["optimize.resize"] = site.optimize.resize !== false;
  for (const kind of ["html", "css", "js"] as const) values[`optimize.minify.${kind}`] = site.optimize.minify[kind];
  return values;
}

/**
 * The API body for a submitted form: the current config (on an edit) with the form's fields laid over it.
 * Generation and purge records are left out: the owner keeps them and never takes them from a body.
 */
export function siteBody(values: FormValues, current: Site | null): Record<string, unknown> {
  const { generation: _g, purges: _p, ...rest } = current ?? ({} as Partial<Site>);
  const body: Record<string, unknown> = structuredClone(rest);
  body.hosts = text(values.hosts)
    .split(/[\s,]+/)
    .filter((host) => host !== "");
  const kind = text(values["origin.kind"]);
  const origin: Record<string, unknown> =
    current && current.origin.kind === kind ? { ...(current.origin as Record<string, unknown>) } : {};
  origin.kind = kind;
  for (const field of FIELDS) {
    if (!field.origin) continue;
    const key = field.name.slice("origin.".length);
    const value = text(values[field.name]).trim();
    if (field.origin !== kind || value === "") delete origin[key];
    else origin[key] = value;
  }
  origin.allowPrivate = values["origin.allowPrivate"] === true;
  body.origin = origin;

  const cache: Record<string, unknown> = { ...(current?.cache ?? {}) };
  for (const key of ["edgeTtl", "browserTtl", "staleWhileRevalidate", "staleIfError"]) {
    const value = numberOrText(values[`cache.${key}`]);
    if (value === undefined) delete cache[key];
    else cache[key] = value;
  }
  body.cache = cache;

  const optimize: Record<string, unknown> = { ...(current?.optimize ?? {}) };
  optimize.polish = text(values["optimize.polish"]);
  const quality = numberOrText(values["optimize.quality"]);
  if (quality === undefined) delete optimize.quality;
  else optimize.quality = quality;
  optimize.formats = Array.isArray(values["optimize.formats"]) ? values["optimize.formats"] : [];
  // An allow-list set through the API stays as it is while the box stays ticked.
  const resize = current?.optimize.resize;
  optimize.resize = values["optimize.resize"] === true ? (typeof resize === "object" ? resize : true) : false;
  optimize.minify = {
    html: values["optimize.minify.html"] === true,
    css: values["optimize.minify.css"] === true,
    js: values["optimize.minify.js"] === true,
  };
  body.optimize = optimize;
  return body;
}

/**
 * Splits the API's issues (`{path, message}`) into those of a form field and the rest. An issue deeper than
 * a field (`hosts.1`) belongs to the field; `origin` alone (a wrong kind) belongs to `origin.kind`.
 */
export function issuesByField(issues: { path: string; message: string }[]): {
  fields: Record<string, string[]>;
  other: { path: string; message: string }[];
} {
  const fields: Record<string, string[]> = {};
  const other: { path: string; message: string }[] = [];
  for (const issue of issues) {
    const field = fieldOf(issue.path);
    if (!field) other.push(issue);
    else fields[field] = [...(fields[field] ?? []), issue.message];
  }
  return { fields, other };
}

function fieldOf(path: string): string | null {
  if (path === "origin") return "origin.kind";
  const parts = path.split(".");
  for (let n = parts.length; n > 0; n--) {
    const name = parts.slice(0, n).join(".");
    if (FIELD_NAMES.has(name)) return name;
  }
  return null;
}

function text(value: FormValues[string] | undefined): string {
  return typeof value === "string" ? value : "";
}

function numberOrText(value: FormValues[string] | undefined): number | string | undefined {
  const raw = text(value).trim();
  if (raw === "") return undefined;
  return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
}
