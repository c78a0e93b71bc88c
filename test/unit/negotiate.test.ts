import { describe, expect, it } from "vitest";
import { chooseFormat, formatField, formatFieldValue, isFormatField } from "../../src/optimize/negotiate";

describe("chooseFormat", () => {
  it("picks the smallest offered format the client lists explicitly", () => {
    const chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    expect(chooseFormat(["webp", "avif"], chrome)).toBe("avif");
    expect(chooseFormat(["webp"], chrome)).toBe("webp");
    expect(chooseFormat(["avif"], "image/webp,*/*")).toBeUndefined();
  });

  it("does not read wildcards as support, and honours q=0 as a refusal", () => {
    expect(chooseFormat(["webp"], "*/*")).toBeUndefined();
    expect(chooseFormat(["webp"], "image/*")).toBeUndefined();
    expect(chooseFormat(["webp"], "image/webp;q=0")).toBeUndefined();
    expect(chooseFormat(["webp"], "image/webp;q=0.0, */*")).toBeUndefined();
    expect(chooseFormat(["webp"], "IMAGE/WEBP ; q=0.5")).toBe("webp");
    expect(chooseFormat(["webp"], null)).toBeUndefined();
  });
});

describe("format pseudo-field", () => {
  it("is the same whatever the order the site lists its formats in, and cannot be a header name", () => {
    expect(formatField(["webp", "avif"])).toBe(formatField(["avif", "webp"]));
    expect(isFormatField(formatField(["webp"]))).toBe(true);
    expect(isFormatField("accept")).toBe(false);
    expect(formatField(["webp"])).toMatch(/^:/);
  });

  it("has the chosen format as its value", () => {
    expect(formatFieldValue(formatField(["webp"]), "image/webp")).toBe("webp");
    expect(formatFieldValue(formatField(["webp"]), "text/html")).toBe("original");
  });
});
