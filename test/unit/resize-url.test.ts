import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { DEFAULT_WIDTHS, parseResizeUrl } from "../../src/optimize/resize-url";
import { siteSchema } from "../../src/sites/schema";

const options = (optimize: unknown) =>
  siteSchema.parse({ id: "site-0001", hosts: ["a.test"], origin: { kind: "http", url: "https://o.test" }, optimize })
    .optimize;
const rules = options({ resize: { widths: [320, 640], heights: [200], qualities: [60] } });

function codeOf(run: () => unknown): string {
  try {
    run();
    return "no error";
  } catch (error) {
    return error instanceof TiercelError ? `${error.status} ${error.code}` : String(error);
  }
}

describe("parseResizeUrl", () => {
  it("splits the options from the source path, keeping the query, in a canonical key form", () => {
    const { request, source } = parseResizeUrl(
      new URL("https://a.test/_tiercel/image/W=640,f=webp/p/cat.jpg?v=2"),
      rules,
    );
    expect(source.href).toBe("https://a.test/p/cat.jpg?v=2");
    expect(request).toEqual({
      width: 640,
      fit: "scale-down",
      quality: 80,
      format: "webp",
      canonical: "w=640,fit=scale-down,q=80,f=webp,engine=wasm,v=1",
    });
    // Long and short names, any order: the same canonical form, so the same cache key.
    const again = parseResizeUrl(new URL("https://a.test/_tiercel/image/format=webp,width=640/p/cat.jpg"), rules);
    expect(again.request.canonical).toBe(request.canonical);
  });

  it("takes an allowed quality and a cover box", () => {
    const { request } = parseResizeUrl(
      new URL("https://a.test/_tiercel/image/w=320,h=200,fit=cover,q=60/x.png"),
      rules,
    );
    expect(request).toMatchObject({ width: 320, height: 200, fit: "cover", quality: 60, format: "auto" });
  });

  it("refuses what is off the allow-lists or malformed, with stable codes", () => {
    const parse =
      (path: string, with_ = rules) =>
      () =>
        parseResizeUrl(new URL(`https://a.test${path}`), with_);
    expect(codeOf(parse("/_tiercel/image/w=333/x.png"))).toBe("400 resize_not_allowed");
    expect(codeOf(parse("/_tiercel/image/w=320,q=61/x.png"))).toBe("400 resize_not_allowed");
    expect(codeOf(parse("/_tiercel/image/w=320,f=gif/x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/w=320,fit=fill/x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/w=-1/x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/w=1e3/x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/fit=cover/x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image//x.png"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/w=320"))).toBe("400 bad_resize_options");
    expect(codeOf(parse("/_tiercel/image/w=320/x.png", options({})))).toBe("404 resize_not_enabled");
  });

  it("allows the default widths with resize: true, and no heights", () => {
    const open = options({ resize: true });
    for (const width of DEFAULT_WIDTHS) {
      expect(codeOf(() => parseResizeUrl(new URL(`https://a.test/_tiercel/image/w=${width}/x.png`), open))).toBe(
        "no error",
      );
    }
    expect(codeOf(() => parseResizeUrl(new URL("https://a.test/_tiercel/image/h=200/x.png"), open))).toBe(
      "400 resize_not_allowed",
    );
  });
});
