/**
 * The contract between the pipeline and an origin. An origin builds its own upstream request from the
 * client's (it decides which headers and bodies may pass) and answers with the upstream response or a
 * `TiercelError` (502/504) when it cannot.
 */
export interface OriginRequest {
  method: string;
  /** The client's URL: its path and query select the object. */
  url: URL;
  /** The client's request headers, untouched; the origin filters them. */
  headers: Headers;
  /** The client's body, for methods that have one; never sent with GET or HEAD. */
  body: ReadableStream<Uint8Array> | null;
}

export interface Origin {
  fetch(request: OriginRequest): Promise<Response>;
}
