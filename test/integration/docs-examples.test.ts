import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import adminApi from "../../docs/admin-api.md?raw";
import architecture from "../../docs/architecture.md?raw";
import configuration from "../../docs/configuration.md?raw";
import deployment from "../../docs/deployment.md?raw";
import httpCaching from "../../docs/http-caching.md?raw";
import optimization from "../../docs/optimization.md?raw";
import readme from "../../README.md?raw";
import type { ErrorBody } from "../../src/core/errors";
import { checkConnectTarget, checkOriginUrl } from "../../src/origins/address";
import { parseSite, type Site } from "../../src/sites/schema";
import { ADMIN_TOKEN, send } from "../support/harness";

/**
 * Every site-config example in README.md and docs/ validates with the real schema, and every
 * `tiercel sites put --host …` example is accepted by the real admin API (origin address checks included):
 * a newcomer can run them as printed. The examples are extracted, not copied, so a doc edit is checked.
 */
const DOCS: Record<string, string> = {
  "README.md": readme,
  "docs/admin-api.md": adminApi,
  "docs/architecture.md": architecture,
  "docs/configuration.md": configuration,
  "docs/deployment.md": deployment,
  "docs/http-caching.md": httpCaching,
  "docs/optimization.md": optimization,
};

/** Fenced blocks of a language: `json` and `jsonc`. */
function blocks(text: string, lang: RegExp): string[] {
  return [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)]
    .filter((match) => lang.test(match[1] ?? ""))
    .map((match) => match[2] ?? "");
}

/** The object that starts at `text[start]` (`{`), by brace matching outside strings. */
function objectAt(text: string, start: number): string {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return text.slice(start, i + 1);
  }
  throw new Error(`unbalanced object at ${start}`);
}

/** A config example as a whole site: full configs as they are; an origin or an `"optimize": …` fragment wrapped. */
function asSite(example: unknown): unknown {
  const base = { id: "docs-example-1", origin: { kind: "http", url: "https://www.example.com" } };
  if (typeof example !== "object" || example === null) return example;
  if ("origin" in example) return { id: base.id, ...example };
  if ("kind" in example) return { ...base, origin: example };
  return { ...base, ...example };
}

/** A JSON example is a site config (or an origin, or a fragment of one) when it has one of these. */
const SITE_MARKERS = ["origin", "kind", "cache", "optimize", "bypass", "limits"];

interface Example {
  where: string;
  value: unknown;
}

function configExamples(): Example[] {
  const found: Example[] = [];
  for (const [where, text] of Object.entries(DOCS)) {
    for (const block of blocks(text, /^json$/)) {
      const trimmed = block.trim();
      // A bare `"field": value` fragment is a member of a site config.
      const json = trimmed.startsWith('"') ? `{${trimmed}}` : trimmed;
      const value: unknown = JSON.parse(json);
      // Request and answer bodies of the admin API (purge, stats, errors) are not site configs.
      if (typeof value !== "object" || value === null || !SITE_MARKERS.some((key) => key in value)) continue;
      found.push({ where, value });
    }
    // `wrangler kv key put … host:<host> '<config>'` lines.
    for (const match of text.matchAll(/kv key put [^\n]*host:\S+ \\\n\s*'(\{[^\n]*\})'/g)) {
      found.push({ where: `${where} (kv key put)`, value: JSON.parse(match[1] ?? "") });
    }
    // The TIERCEL_SITE variable in jsonc examples.
    for (const match of text.matchAll(/"TIERCEL_SITE": \{/g)) {
      const start = (match.index ?? 0) + match[0].length - 1;
      found.push({ where: `${where} (TIERCEL_SITE)`, value: JSON.parse(objectAt(text, start)) });
    }
  }
  return found;
}

/** `npx tiercel sites put --host … --origin-url …` lines, as the body the CLI would send. */
function sitesPutExamples(): { where: string; line: string; body: Record<string, unknown> }[] {
  const found = [];
  for (const [where, text] of Object.entries(DOCS)) {
    for (const match of text.matchAll(/npx tiercel sites put (--host [^\n#]*)/g)) {
      const line = (match[1] ?? "").trim();
      const words = line.split(/\s+/);
      const hosts: string[] = [];
      const origin: Record<string, unknown> = { kind: "http" };
      for (let i = 0; i < words.length; i += 2) {
        const [flag, value] = [words[i], words[i + 1]];
        if (flag === "--host") hosts.push(value ?? "");
        else if (flag === "--origin-url") origin.url = value;
        else if (flag === "--connect-to") origin.connectTo = value;
        else throw new Error(`${where}: the test does not know ${flag}; teach it`);
      }
      found.push({ where, line, body: { hosts, origin } });
    }
  }
  return found;
}

/** The checks the admin API makes when a site is written (reserved, private and metadata addresses). */
function checkAddresses(site: Site): void {
  const origin = site.origin;
  if (origin.kind === "s3") checkOriginUrl(origin.endpoint, origin);
  else {
    checkOriginUrl(origin.url, origin);
    if (origin.connectTo) checkConnectTarget(origin.connectTo, origin);
  }
}

describe("documentation examples", () => {
  const configs = configExamples();
  const puts = sitesPutExamples();

  it("finds the examples (README's CLI lines, configuration.md's configs, deployment.md's variable)", () => {
    expect(configs.length).toBeGreaterThanOrEqual(6);
    expect(configs.some((c) => c.where.includes("TIERCEL_SITE"))).toBe(true);
    expect(configs.some((c) => c.where.includes("kv key put"))).toBe(true);
    expect(puts.length).toBeGreaterThanOrEqual(1);
  });

  it("every site-config example validates with the real schema and passes the origin address checks", () => {
    for (const { where, value } of configs) {
      expect(() => checkAddresses(parseSite(asSite(value), where)), `${where}: ${JSON.stringify(value)}`).not.toThrow();
    }
  });

  it("every `tiercel sites put --host …` example is accepted by the admin API, address checks included", async () => {
    for (const { where, line, body } of puts) {
      // Hosts must be free: the same example may run again, so its hosts are released first.
      for (const host of body.hosts as string[]) await env.SITES.delete(`host:${host}`);
      const response = await send("http://admin.test/_tiercel/api/v1/sites", {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = (await response.json()) as ErrorBody & { site?: { id: string } };
      expect(response.status, `${where}: ${line}: ${JSON.stringify(answer)}`).toBe(201);
      await send(`http://admin.test/_tiercel/api/v1/sites/${answer.site?.id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
    }
  });
});
