import { describe, expect, it } from "vitest";
import { TiercelError } from "../../src/core/errors";
import { closingOnError } from "../../src/core/shield-broadcast";
import { breakingOnOutcome } from "../../src/core/shield-client";
import { YIELD_EVERY_BYTES } from "../../src/core/streams";
import { chunkSizes, runtimeStream } from "../support/streams";

/**
 * The shield's body crosses RPC closed, never errored (an errored stream pumped over RPC prints an uncaught
 * exception no JavaScript can handle); the break travels beside it and the data center errors its own copy.
 */

/** `chunks` of 100 bytes, then `end`: a clean close, or an error. */
function source(chunks: number, end: Error | null): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (sent < chunks) {
          sent += 1;
          controller.enqueue(new Uint8Array(100).fill(sent));
        } else if (end) controller.error(end);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<{ bytes: number; error?: unknown }> {
  const reader = stream.getReader();
  let bytes = 0;
  try {
    for (let i = 0; i < 1_000; i++) {
      const { done, value } = await reader.read();
      if (done) return { bytes };
      bytes += value.byteLength;
    }
    throw new Error("the stream did not end");
  } catch (error) {
    return { bytes, error };
  }
}

describe("closingOnError", () => {
  it("passes a whole body on and says it ended", async () => {
    const { body, ended } = closingOnError(source(3, null));
    expect(await drain(body)).toEqual({ bytes: 300 });
    expect(await ended()).toBeNull();
  });

  it("closes a body that breaks off, and says what broke it", async () => {
    const cut = new TiercelError("origin_bad_response", 502, "The origin closed the connection before the end");
    const { body, ended } = closingOnError(source(2, cut));
    expect(await drain(body)).toEqual({ bytes: 200 });
    expect(await ended()).toEqual({ code: "origin_bad_response", status: 502, message: cut.message });
  });

  it("does not name an error twice when it crossed a native stream", async () => {
    const { body, ended } = closingOnError(source(0, new Error("TiercelError: cut short")));
    await drain(body);
    expect(await ended()).toEqual({ message: "cut short" });
  });

  it("counts a reader that went away as a break", async () => {
    const { body, ended } = closingOnError(source(5, null));
    await body.cancel("gone");
    expect((await ended())?.message).toBe("gone");
  });
});

describe("breakingOnOutcome (the data center's side)", () => {
  it("a whole body closes", async () => {
    const { body, ended } = closingOnError(source(4, null));
    expect(await drain(breakingOnOutcome(body, ended))).toEqual({ bytes: 400 });
  });

  it("reads the shield's body (a runtime stream over RPC) in large chunks, not a few KiB at a time", async () => {
    const ended = async () => null;
    const reader = breakingOnOutcome(runtimeStream(1024 * 1024, 256 * 1024), ended).getReader();
    const sizes = await chunkSizes(() => reader.read());
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1024 * 1024);
    expect(sizes.length).toBeLessThanOrEqual(8);
  });

  it("lets the event loop turn while the shield's body always has bytes ready", async () => {
    // 4 MiB in 100-byte chunks; without a turn, the timer would fire only after the last one.
    const { body, ended } = closingOnError(source(40_000, null));
    let read = 0;
    let readWhenTimerFired = -1;
    setTimeout(() => {
      readWhenTimerFired = read;
    }, 0);
    const reader = breakingOnOutcome(body, ended).getReader();
    for (let next = await reader.read(); !next.done; next = await reader.read()) read += next.value.byteLength;
    expect(read).toBe(4_000_000);
    expect(readWhenTimerFired).toBeGreaterThanOrEqual(0);
    expect(readWhenTimerFired).toBeLessThanOrEqual(YIELD_EVERY_BYTES);
  });

  it("a break errors the body with the shield's error, after the bytes read before it", async () => {
    const { body, ended } = closingOnError(source(2, new TiercelError("origin_timeout", 504, "too slow")));
    let disposed = 0;
    const stub = Object.assign(ended, {
      [Symbol.dispose]: () => {
        disposed += 1;
      },
    });
    const out = await drain(breakingOnOutcome(body, stub));
    expect(out.bytes).toBe(200);
    expect(out.error).toBeInstanceOf(TiercelError);
    expect(out.error).toMatchObject({ code: "origin_timeout", status: 504, message: "too slow" });
    expect(disposed).toBe(1);
  });

  it("a break without a code is a 502 origin_bad_response", async () => {
    const { body, ended } = closingOnError(source(1, new Error("TiercelError: cut short")));
    const out = await drain(breakingOnOutcome(body, ended));
    expect(out.error).toMatchObject({ code: "origin_bad_response", status: 502, message: "cut short" });
  });
});
