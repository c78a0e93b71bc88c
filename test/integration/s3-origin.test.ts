import { describe, expect, it } from "vitest";
import type { ErrorBody } from "../../src/core/errors";
import { objectUrl } from "../../src/origins/s3";
import { bucket, newBucketSite, send, unique } from "../support/harness";

/**
 * A bucket origin against a real S3-compatible server on loopback that recomputes every request's SigV4
 * signature with AWS's own signer and refuses the ones that do not match.
 */

async function code(response: Response): Promise<string> {
  return ((await response.json()) as ErrorBody).error.code;
}

describe("s3 origin", () => {
  it("serves an object from the bucket through the tiers, signed, without S3's internal headers", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("obj")}.css`;
    await bucket.put("test-bucket", key, "body { color: red }", {
      contentType: "text/css",
      cacheControl: "public, max-age=300",
    });
    const first = await send(`http://${host}/${key}`);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("body { color: red }");
    expect(first.headers.get("content-type")).toBe("text/css");
    expect(first.headers.get("etag")).toMatch(/^"[0-9a-f]{32}"$/);
    for (const name of ["x-amz-request-id", "x-amz-id-2", "server"]) expect(first.headers.get(name), name).toBeNull();
    const second = await send(`http://${host}/${key}`);
    expect(second.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
    const { hits, last } = await bucket.hits("test-bucket", key);
    expect(hits).toBe(1);
    expect(last?.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=tiercel-test\//);
  });

  it.each([["a b.txt"], ["c+d.txt"], ["100%.txt"], ["ünïcode/☃ snow.txt"], ["dir//double.txt"], ["(paren)!*'~.txt"]])(
    "signs the key %j exactly as SigV4 requires",
    async (key) => {
      const { host } = await newBucketSite();
      const unique_key = `${unique("k")}/${key}`;
      await bucket.put("test-bucket", unique_key, `content of ${key}`);
      const path = `/${unique_key.split("/").map(encodeURIComponent).join("/")}`;
      const response = await send(`http://${host}${path}`);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(`content of ${key}`);
    },
  );

  it("reads objects under the site's prefix only, and refuses a path that tries to climb out", async () => {
    const { host } = await newBucketSite({ prefix: "site-a/" });
    const key = `${unique("p")}.txt`;
    await bucket.put("test-bucket", `site-a/${key}`, "mine");
    await bucket.put("test-bucket", `secret-${key}`, "not mine");
    expect(await (await send(`http://${host}/${key}`)).text()).toBe("mine");
    const climbing = await send(`http://${host}/..%2fsecret-${key}`);
    expect(climbing.status).toBe(400);
    expect(await code(climbing)).toBe("bad_path");
    expect((await bucket.hits("test-bucket", `secret-${key}`)).hits).toBe(0);
  });

  it("answers wrong credentials with 502 origin_auth_failed, leaks no string to sign, and stores nothing", async () => {
    const { host } = await newBucketSite({ wrongSecret: true });
    const key = `${unique("creds")}.txt`;
    await bucket.put("test-bucket", key, "secret", { cacheControl: "public, max-age=300" });
    const response = await send(`http://${host}/${key}`);
    expect(response.status).toBe(502);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const text = await response.text();
    expect(text).toContain("origin_auth_failed");
    expect(text).not.toMatch(/StringToSign|CanonicalRequest|AWS4-HMAC-SHA256/);
    const before = (await bucket.hits("test-bucket", key)).rejected;
    await send(`http://${host}/${key}`);
    expect((await bucket.hits("test-bucket", key)).rejected).toBe(before + 1);
  });

  it("answers a missing key with a clean 404 not_found that is not stored", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("missing")}.txt`;
    const response = await send(`http://${host}/${key}`);
    expect(response.status).toBe(404);
    expect(await code(response)).toBe("not_found");
    await send(`http://${host}/${key}`);
    expect((await bucket.hits("test-bucket", key)).hits).toBe(2);
  });

  it("sends the bucket only allow-listed headers: never the client's Authorization, x-amz-* or cookies", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("hdrs")}.txt`;
    await bucket.put("test-bucket", key, "0123456789", { cacheControl: "public, max-age=300" });
    const response = await send(`http://${host}/${key}`, {
      headers: {
        authorization: "AWS4-HMAC-SHA256 Credential=attacker/20240101/us-east-1/s3/aws4_request",
        "x-amz-security-token": "stolen",
        "x-amz-meta-evil": "1",
        cookie: "session=abc",
        "x-forwarded-host": "evil.example",
      },
    });
    expect(response.status).toBe(200);
    const last = (await bucket.hits("test-bucket", key)).last?.headers ?? {};
    expect(last.authorization).toMatch(/Credential=tiercel-test\//);
    for (const name of ["x-amz-security-token", "x-amz-meta-evil", "cookie", "x-forwarded-host"]) {
      expect(last[name], name).toBeUndefined();
    }
  });

  it("is read-only: other methods get 405 with Allow, and never reach the bucket", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("ro")}.txt`;
    const response = await send(`http://${host}/${key}`, { method: "PUT", body: "overwrite" });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD");
    expect((await bucket.hits("test-bucket", key)).hits).toBe(0);
  });

  it("answers a range from the bucket's object and fills the cache with the whole object", async () => {
    const { host } = await newBucketSite();
    const key = `${unique("range")}.bin`;
    await bucket.put("test-bucket", key, "0123456789", { cacheControl: "public, max-age=300" });
    const partial = await send(`http://${host}/${key}`, { headers: { range: "bytes=3-5" } });
    expect(partial.status).toBe(206);
    expect(await partial.text()).toBe("345");
    expect((await bucket.hits("test-bucket", key)).last?.headers.range).toBeUndefined();
    const whole = await send(`http://${host}/${key}`);
    expect(await whole.text()).toBe("0123456789");
    expect(whole.headers.get("cache-status")).toMatch(/^Tiercel-Edge; hit/);
  });

  it("builds path-style and virtual-hosted URLs", () => {
    const endpoint = new URL("https://s3.eu-west-1.amazonaws.com");
    expect(objectUrl(endpoint, { bucket: "media", addressing: "path" }, "a b/c+d.jpg").href).toBe(
      "https://s3.eu-west-1.amazonaws.com/media/a%20b/c%2Bd.jpg",
    );
    expect(objectUrl(endpoint, { bucket: "media", addressing: "virtual" }, "x//ü.jpg").href).toBe(
      "https://media.s3.eu-west-1.amazonaws.com/x//%C3%BC.jpg",
    );
  });
});
