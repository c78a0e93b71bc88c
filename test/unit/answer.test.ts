import { describe, expect, it } from "vitest";
import { answerFromEntry } from "../../src/core/answer";
import { CacheStatus } from "../../src/core/cache-status";
import { ServerTiming } from "../../src/core/server-timing";
import { parseSite } from "../../src/sites/schema";
import { entryFor } from "../tiers/tier-contract";

const site = parseSite(
  { version: 1, id: "answer-test", hosts: ["answer.test"], origin: { kind: "http", url: "http://127.0.0.1:9" } },
  "test",
);

/** The answer to a plain GET for an entry of 10 bytes whose body gives 6. */
async function shortAnswer(readHere: boolean): Promise<string> {
  const entry = await entryFor(new Uint8Array(10));
  const T = entry.storedAt;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(6));
      controller.close();
    },
  });
  const context = {
    method: "GET",
    requestHeaders: new Headers(),
    now: T,
    status: new CacheStatus(),
    timing: new ServerTiming(() => T),
    policy: site.cache,
    ...(readHere ? { readHere } : {}),
  };
  const response = await answerFromEntry(entry, body, context);
  expect(response.headers.get("content-length")).toBe("10");
  return response.arrayBuffer().then(
    (bytes) => `${bytes.byteLength} bytes`,
    () => "error",
  );
}

describe("answerFromEntry", () => {
  it("holds a body sent to a client to the length it declares: a shorter one errors", async () => {
    expect(await shortAnswer(false)).toBe("error");
  });

  it("hands a body read in the isolate (the shield's fan-out, which checks its length) on as it is", async () => {
    expect(await shortAnswer(true)).toBe("6 bytes");
  });
});
