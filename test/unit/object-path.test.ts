import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { objectSegments } from "../../src/origins/path";

function refused(url: string): string | undefined {
  try {
    objectSegments(new URL(url));
    return undefined;
  } catch (error) {
    return error instanceof TiercelError ? `${error.status} ${error.code}` : String(error);
  }
}

describe("objectSegments", () => {
  it("takes a plain path as the URL parser left it (dot segments already resolved)", () => {
    expect(objectSegments(new URL("https://a.test/media/v1/clip.mp4"))).toEqual(["media", "v1", "clip.mp4"]);
    expect(objectSegments(new URL("https://a.test/a/./b/../c"))).toEqual(["a", "c"]);
    expect(objectSegments(new URL("https://a.test/"))).toEqual([""]);
    expect(objectSegments(new URL("https://a.test/dir/"))).toEqual(["dir", ""]);
  });

  it("decodes escaped segments", () => {
    expect(objectSegments(new URL("https://a.test/caf%C3%A9/a%20b.txt"))).toEqual(["café", "a b.txt"]);
  });

  it("refuses what could climb out of a prefix once an origin decodes it", () => {
    for (const url of [
      "https://a.test/a%2f..%2fsecret",
      "https://a.test/a%5C..%5Csecret",
      "https://a.test/a%00b",
      "https://a.test/%E0%A4%A",
      "https://a.test/a/%2e%2e%2e/b",
    ]) {
      const outcome = refused(url);
      // `%2e%2e%2e` is "..." once decoded: allowed; everything else here is refused.
      if (url.endsWith("%2e%2e%2e/b")) expect(outcome).toBeUndefined();
      else expect(outcome, url).toBe("400 bad_path");
    }
  });
});
