import { describe, expect, it } from "vitest";
import { contentRange, evaluateRange, type RangeValidators, sliceStream } from "../../src/core/http/range";
import { source } from "../support/streams";

const LAST_MODIFIED = "Sat, 29 Oct 1994 19:43:31 GMT";
const STORED: RangeValidators = { etag: '"v1"', lastModified: LAST_MODIFIED };

const decide = (range: string | null, length = 1000, stored = STORED, extra: Record<string, string> = {}) => {
  const headers = new Headers(extra);
  if (range !== null) headers.set("range", range);
  return evaluateRange(headers, length, stored);
};

const FULL = { kind: "full" };
const UNSATISFIABLE = { kind: "unsatisfiable" };
const partial = (start: number, end: number) => ({ kind: "partial", start, end });

describe("evaluateRange", () => {
  it("is full without a Range field (RFC 9110 §14.2)", () => {
    expect(decide(null)).toEqual(FULL);
  });

  describe("byte range specifiers (RFC 9110 §14.1.1, §14.1.2)", () => {
    it.each([
      ["bytes=0-499", partial(0, 499)],
      ["bytes=500-999", partial(500, 999)],
      ["bytes=0-0", partial(0, 0)],
      ["bytes=999-999", partial(999, 999)],
      ["bytes=007-010", partial(7, 10)],
    ])("selects an int-range %s", (range, expected) => {
      expect(decide(range)).toEqual(expected);
    });

    it.each([
      ["bytes=500-", partial(500, 999)],
      ["bytes=0-", partial(0, 999)],
    ])("runs an open-ended int-range %s to the last byte", (range, expected) => {
      expect(decide(range)).toEqual(expected);
    });

    it("clamps last-pos past the end to the last byte (§14.1.2)", () => {
      expect(decide("bytes=900-5000")).toEqual(partial(900, 999));
    });

    it.each([
      ["bytes=-1", partial(999, 999)],
      ["bytes=-500", partial(500, 999)],
      ["bytes=-1000", partial(0, 999)],
      ["bytes=-5000", partial(0, 999)],
    ])("selects the last bytes for a suffix-range %s, all of them when it is longer (§14.1.2)", (range, expected) => {
      expect(decide(range)).toEqual(expected);
    });

    it("matches the range unit case-insensitively (§14.1)", () => {
      expect(decide("BYTES=0-1")).toEqual(partial(0, 1));
    });

    it("tolerates whitespace around the field and OWS and empty members in the range-set (§5.6.1)", () => {
      expect(decide("bytes= , 0-1 ,")).toEqual(partial(0, 1));
      expect(evaluateRange(new Headers({ range: "  bytes=0-1\t" }), 1000, STORED)).toEqual(partial(0, 1));
    });
  });

  describe("unsatisfiable ranges (RFC 9110 §14.1.1, §15.5.17)", () => {
    it.each(["bytes=1000-", "bytes=1000-2000", "bytes=5000-5001"])(
      "rejects an int-range %s whose first-pos is not less than the length",
      (range) => {
        expect(decide(range)).toEqual(UNSATISFIABLE);
      },
    );

    it("rejects a suffix-range of zero length", () => {
      expect(decide("bytes=-0")).toEqual(UNSATISFIABLE);
    });

    it.each(["bytes=0-", "bytes=0-0", "bytes=-1"])("rejects any range %s of a zero-length representation", (range) => {
      expect(decide(range, 0)).toEqual(UNSATISFIABLE);
    });
  });

  describe("ignored Range fields (RFC 9110 §14.2)", () => {
    it.each([
      ["a unit other than bytes", "items=0-1"],
      ["no unit", "0-1"],
      ["no range-set", "bytes="],
      ["only empty members", "bytes=,,"],
      ["no dash", "bytes=5"],
      ["a bare dash", "bytes=-"],
      ["last-pos before first-pos", "bytes=5-4"],
      ["a negative position", "bytes=--5"],
      ["a second dash", "bytes=1-2-3"],
      ["a non-digit", "bytes=1x-2"],
      ["a decimal", "bytes=1.5-2"],
      ["an exponent", "bytes=1e3-"],
      ["a plus sign", "bytes=+1-2"],
      ["space inside a range", "bytes=1 -2"],
      ["space before the equals sign", "bytes =0-1"],
    ])("ignores an invalid ranges-specifier: %s", (_, range) => {
      expect(decide(range)).toEqual(FULL);
    });

    it.each([
      ["two ranges", "bytes=0-1,5-6"],
      ["overlapping ranges", "bytes=0-10,5-20"],
      ["a range and a suffix", "bytes=0-1,-1"],
      ["unsatisfiable ranges", "bytes=5000-,6000-"],
    ])("ignores more than one range, Tiercel's bound on many and overlapping ranges: %s", (_, range) => {
      expect(decide(range)).toEqual(FULL);
    });

    it("ignores a field longer than any single range needs, without parsing it", () => {
      expect(decide(`bytes=${" ".repeat(2000)}0-1`)).toEqual(FULL);
      expect(decide(`bytes=${"0-1,".repeat(5000)}`)).toEqual(FULL);
    });
  });

  describe("positions beyond Number.MAX_SAFE_INTEGER (RFC 9110 §14.1.1)", () => {
    it("treats a huge first-pos as past the end", () => {
      expect(decide("bytes=18446744073709551616-")).toEqual(UNSATISFIABLE);
      expect(decide(`bytes=${"9".repeat(400)}-`)).toEqual(UNSATISFIABLE);
    });

    it("clamps a huge last-pos to the last byte", () => {
      expect(decide("bytes=10-18446744073709551615")).toEqual(partial(10, 999));
    });

    it("selects everything for a huge suffix-length", () => {
      expect(decide("bytes=-18446744073709551615")).toEqual(partial(0, 999));
    });

    it("still rejects a huge first-pos before a small last-pos as invalid", () => {
      expect(decide("bytes=18446744073709551616-5")).toEqual(FULL);
    });
  });

  it.each([Number.NaN, -1, 1.5, Number.POSITIVE_INFINITY, 2 ** 53])(
    "is full when the representation length %s is not a usable byte count",
    (length) => {
      expect(decide("bytes=0-1", length)).toEqual(FULL);
    },
  );

  describe("If-Range (RFC 9110 §13.1.5, §13.2.2 step 5)", () => {
    it("applies the range when the entity-tag strongly matches", () => {
      expect(decide("bytes=0-1", 1000, STORED, { "if-range": '"v1"' })).toEqual(partial(0, 1));
    });

    it.each([
      ["a different entity-tag", '"v2"', STORED],
      ["a weak entity-tag", 'W/"v1"', STORED],
      ["a weak stored ETag", '"v1"', { ...STORED, etag: 'W/"v1"' }],
      ["no stored ETag", '"v1"', { lastModified: LAST_MODIFIED }],
      ["an entity-tag with trailing junk", '"v1" x', STORED],
    ])("ignores the range for %s", (_, ifRange, stored) => {
      expect(decide("bytes=0-1", 1000, stored, { "if-range": ifRange })).toEqual(FULL);
    });

    it("applies the range when the HTTP-date equals Last-Modified, in any of the three formats (§5.6.7)", () => {
      expect(decide("bytes=0-1", 1000, STORED, { "if-range": LAST_MODIFIED })).toEqual(partial(0, 1));
      expect(decide("bytes=0-1", 1000, STORED, { "if-range": "Saturday, 29-Oct-94 19:43:31 GMT" })).toEqual(
        partial(0, 1),
      );
    });

    it.each([
      ["a later date", "Sat, 29 Oct 1994 19:43:32 GMT", STORED],
      ["an earlier date", "Sat, 29 Oct 1994 19:43:30 GMT", STORED],
      ["an invalid date", "not a date", STORED],
      ["no stored Last-Modified", LAST_MODIFIED, { etag: '"v1"' }],
    ])("ignores the range for %s", (_, ifRange, stored) => {
      expect(decide("bytes=0-1", 1000, stored, { "if-range": ifRange })).toEqual(FULL);
    });

    it("treats Last-Modified as strong only when the stored Date is at least a second later (§8.8.2.2)", () => {
      const ifRange = { "if-range": LAST_MODIFIED };
      const dated = (date: string) => ({ ...STORED, date });
      expect(decide("bytes=0-1", 1000, dated("Sat, 29 Oct 1994 19:43:32 GMT"), ifRange)).toEqual(partial(0, 1));
      expect(decide("bytes=0-1", 1000, dated(LAST_MODIFIED), ifRange)).toEqual(FULL);
      expect(decide("bytes=0-1", 1000, dated("garbage"), ifRange)).toEqual(FULL);
    });

    it("answers full, not 416, when If-Range fails on an unsatisfiable range (§13.2.2 step 5)", () => {
      expect(decide("bytes=5000-", 1000, STORED, { "if-range": '"v2"' })).toEqual(FULL);
      expect(decide("bytes=5000-", 1000, STORED, { "if-range": '"v1"' })).toEqual(UNSATISFIABLE);
    });

    it("has no effect without a Range field (§13.1.5)", () => {
      expect(decide(null, 1000, STORED, { "if-range": '"v1"' })).toEqual(FULL);
    });
  });
});

describe("contentRange", () => {
  it("describes a partial response as bytes first-last/length (RFC 9110 §14.4)", () => {
    expect(contentRange({ kind: "partial", start: 0, end: 499 }, 1000)).toBe("bytes 0-499/1000");
  });

  it("describes an unsatisfiable range as bytes */length (RFC 9110 §14.4)", () => {
    expect(contentRange({ kind: "unsatisfiable" }, 1000)).toBe("bytes */1000");
  });
});

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of stream) out.push(...chunk);
  return out;
}

/** Ten chunks of ten bytes: byte i has value i. */
const HUNDRED = Array.from({ length: 10 }, (_, c) => Array.from({ length: 10 }, (_, i) => c * 10 + i));
const span = (start: number, end: number) => Array.from({ length: end - start + 1 }, (_, i) => start + i);

describe("sliceStream (RFC 9110 §14.1.2)", () => {
  it("delivers bytes start..end inclusive across chunk boundaries", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 15, 34))).toEqual(span(15, 34));
  });

  it("starts in the middle of a chunk and ends in the middle of the same chunk", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 42, 47))).toEqual(span(42, 47));
  });

  it("starts at byte 0", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 0, 12))).toEqual(span(0, 12));
  });

  it("ends at the last byte", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 95, 99))).toEqual(span(95, 99));
  });

  it("delivers the whole source for 0..last", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 0, 99))).toEqual(span(0, 99));
  });

  it("delivers a single byte on a chunk boundary", async () => {
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 30, 30))).toEqual([30]);
    expect(await bytesOf(sliceStream(source(HUNDRED).stream, 29, 29))).toEqual([29]);
  });

  it("skips empty chunks without stalling", async () => {
    const chunks = [[0, 1], [], [2, 3], [], [], [4, 5]];
    expect(await bytesOf(sliceStream(source(chunks).stream, 1, 4))).toEqual([1, 2, 3, 4]);
  });

  it("hands on subarrays of the source's chunks, one piece per chunk, without copying whole chunks", async () => {
    const pieces: number[][] = [];
    for await (const chunk of sliceStream(source(HUNDRED).stream, 5, 24)) pieces.push([...chunk]);
    expect(pieces).toEqual([span(5, 9), span(10, 19), span(20, 24)]);
  });

  it("cancels the source as soon as end has been passed, leaving the rest unread", async () => {
    const src = source(HUNDRED);
    expect(await bytesOf(sliceStream(src.stream, 3, 14))).toEqual(span(3, 14));
    expect(src.pulls()).toBe(2);
    expect(src.cancelled()).toBeDefined();
  });

  it("reads nothing before the consumer asks", async () => {
    const src = source(HUNDRED);
    const slice = sliceStream(src.stream, 50, 59);
    await Promise.resolve();
    expect(src.pulls()).toBe(0);
    await bytesOf(slice);
    expect(src.pulls()).toBe(6);
  });

  it("cancels the source when the consumer cancels the slice", async () => {
    const src = source(HUNDRED);
    const reader = sliceStream(src.stream, 0, 99).getReader();
    await reader.read();
    await reader.cancel("client went away");
    expect(src.cancelled()).toBe("client went away");
  });

  it("errors when the source ends before end, so a short body never passes for the range", async () => {
    await expect(bytesOf(sliceStream(source([[0, 1, 2]]).stream, 1, 5))).rejects.toThrow(/before range end 5/);
    await expect(bytesOf(sliceStream(source([[0, 1, 2]]).stream, 7, 9))).rejects.toThrow(/before range end 9/);
  });

  it("passes on an error from the source", async () => {
    await expect(bytesOf(sliceStream(source([[0, 1]], new Error("origin reset")).stream, 0, 5))).rejects.toThrow(
      "origin reset",
    );
  });

  describe("with readToEnd (a stored body that checks itself as it ends)", () => {
    it("reads the source to its end before closing, and delivers the same bytes", async () => {
      const src = source(HUNDRED);
      expect(await bytesOf(sliceStream(src.stream, 3, 14, { readToEnd: true }))).toEqual(span(3, 14));
      expect(src.pulls()).toBe(11);
      expect(src.cancelled()).toBeUndefined();
    });

    it("errors, without the range's last piece, when the source fails after the range", async () => {
      const src = source(HUNDRED.slice(0, 4), new Error("digest mismatch"));
      const reader = sliceStream(src.stream, 3, 14, { readToEnd: true }).getReader();
      const received: number[] = [];
      const failure = (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          received.push(...value);
        }
      })();
      await expect(failure).rejects.toThrow("digest mismatch");
      // Bytes 3..9 went out; 10..14, the piece holding the range's end, never did.
      expect(received).toEqual(span(3, 9));
    });

    it("without it, the same failing source after the range ends the slice cleanly (nothing read past it)", async () => {
      const src = source(HUNDRED.slice(0, 4), new Error("digest mismatch"));
      expect(await bytesOf(sliceStream(src.stream, 3, 14))).toEqual(span(3, 14));
    });
  });

  it.each([
    [-1, 5],
    [5, 4],
    [0.5, 4],
    [0, Number.POSITIVE_INFINITY],
  ])("refuses the impossible range %s..%s", (start, end) => {
    expect(() => sliceStream(source(HUNDRED).stream, start, end)).toThrow(RangeError);
  });
});
