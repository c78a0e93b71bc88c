import { describe, expect, it } from "vitest";
import { answerFromEntry } from "../../src/core/answer";
import { CacheStatus } from "../../src/core/cache-status";
import type { StoredEntry } from "../../src/core/entry";
import { ServerTiming } from "../../src/core/server-timing";
import { parseSite } from "../../src/sites/schema";

const T = Date.UTC(2026, 11, 6);
const entry: StoredEntry = {
  v: 1,
  status: 200,
  headers: [["content-type", "application/octet-stream"]],
  requestTime: T,
  responseTime: T,
  storedAt: T,
  initialAge: 0,
  lifetime: 60,
  swr: 0,
  sie: 0,
  mustRevalidate: false,
  noCache: false,
  vary: [],
  tags: [],
  length: 10,
  digest: "",
};

const site = parseSite(
  { version: 1, id: "answer-test", hosts: ["answer.test"], origin: { kind: "http", url: "http://127.0.0.1:9" } },
  "test",
);

/** The answer to a plain GET for `entry` whose body gives 6 of its 10 bytes. */
async function shortAnswer(readHere: boolean): Promise<string> {
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
