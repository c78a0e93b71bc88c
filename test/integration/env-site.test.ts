import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { envSiteStore } from "../../src/sites/env-site";
import worker from "../../src/worker";
import { bucket, send, unique } from "../support/harness";

/** Zero-config mode: no SITES binding, one site from the TIERCEL_SITE variable (src/sites/env-site.ts). */

function bucketSite(id: string) {
  return {
    id,
    origin: {
      kind: "s3",
      endpoint: env.TEST_S3_ENDPOINT,
      bucket: "test-bucket",
      region: "us-east-1",
      accessKeyIdSecret: "TEST_S3_KEY_ID",
      secretAccessKeySecret: "TEST_S3_SECRET",
      allowPrivate: true,
    },
    cache: { edgeTtl: 120 },
  };
}

/** The Worker as deployed with these variables and without a site store. A new env is a new isolate. */
function deployedWithout(vars: Record<string, unknown>): Env {
  const { SITES: _, ...rest } = env as unknown as Record<string, unknown>;
  return { ...rest, ...vars } as unknown as Env;
}

async function fetchFrom(deployed: Env, url: string): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(url) as Request<unknown, IncomingRequestCfProperties>, deployed, ctx);
  const body = await response.arrayBuffer();
  await waitOnExecutionContext(ctx);
  return new Response(body, response);
}

describe("zero-config single bucket", () => {
  it("serves every host from the one bucket site, through the tiers", async () => {
    const deployed = deployedWithout({ TIERCEL_SITE: bucketSite(unique("env-site")) });
    const key = `${unique("env")}.css`;
    await bucket.put("test-bucket", key, "p { margin: 0 }", { contentType: "text/css" });
    const first = await fetchFrom(deployed, `http://${unique("any")}.example.com/${key}`);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("p { margin: 0 }");
    // Another host is the same site: the same cache key, so an edge hit (edgeTtl 120 from the variable).
    const second = await fetchFrom(deployed, `http://${unique("other")}.example.net/${key}`);
    expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit; ttl=1[0-9]{2}/);
    expect((await bucket.hits("test-bucket", key)).hits).toBe(1);
  });

  it("takes the variable as JSON text too, as `wrangler dev --var` passes it", async () => {
    const deployed = deployedWithout({ TIERCEL_SITE: JSON.stringify(bucketSite(unique("env-text"))) });
    const key = `${unique("text")}.txt`;
    await bucket.put("test-bucket", key, "hello");
    const response = await fetchFrom(deployed, `http://${unique("h")}.example.com/${key}`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("hello");
  });

  it("answers 502 site_config_invalid naming the bad fields when the variable does not validate", async () => {
    const site = bucketSite(unique("env-bad"));
    const deployed = deployedWithout({ TIERCEL_SITE: { ...site, origin: { ...site.origin, region: "Nope!" } } });
    const response = await fetchFrom(deployed, "http://a.example.com/x.css");
    expect(response.status).toBe(502);
    const error = ((await response.json()) as ErrorBody).error;
    expect(error.code).toBe("site_config_invalid");
    expect(error.message).toContain("origin.region");
  });

  it("answers the admin API with 503 admin_disabled: there is no store to manage", async () => {
    const deployed = deployedWithout({ TIERCEL_SITE: bucketSite(unique("env-adm")) });
    const response = await fetchFrom(deployed, "http://a.example.com/_tiercel/api/v1/sites");
    expect(response.status).toBe(503);
    expect(((await response.json()) as ErrorBody).error.code).toBe("admin_disabled");
  });

  it("changes nothing when a site store is bound: an unknown host is still 404", async () => {
    expect(envSiteStore({})).toBeUndefined();
    const response = await send(`http://${unique("unknown")}.test/x`);
    expect(response.status).toBe(404);
    const withVar = { ...(env as unknown as Record<string, unknown>), TIERCEL_SITE: bucketSite(unique("ignored")) };
    expect((await fetchFrom(withVar as unknown as Env, `http://${unique("unknown")}.test/x`)).status).toBe(404);
  });
});
