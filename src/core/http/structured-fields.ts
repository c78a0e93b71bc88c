/**
 * A strict parser for Structured Field Dictionaries (RFC 8941 §4.2.2), enough for targeted cache control
 * (RFC 9213 §2.1). It follows the parsing algorithms of RFC 8941 §4.2: anything that does not parse makes
 * the whole field fail (`undefined`), as §4.2 requires ("fail parsing" discards the field).
 */
export type BareItem =
  | { type: "integer"; value: number }
  | { type: "decimal"; value: number }
  | { type: "string"; value: string }
  | { type: "token"; value: string }
  | { type: "bytes"; value: string }
  | { type: "boolean"; value: boolean };

export type Parameters = Map<string, BareItem>;
export type Item = { item: BareItem; params: Parameters };
export type Member = Item | { inner: Item[]; params: Parameters };
export type Dictionary = Map<string, Member>;

class Fail extends Error {}

/** RFC 8941 §4.2.2; undefined when the value is not a valid Dictionary. */
export function parseDictionary(value: string): Dictionary | undefined {
  const p = new Parser(value);
  try {
    return p.dictionary();
  } catch (error) {
    if (error instanceof Fail) return undefined;
    throw error;
  }
}

const KEY_START = /[a-z*]/;
const KEY_CHAR = /[a-z0-9_\-.*]/;
const TOKEN_START = /[A-Za-z*]/;
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/;
const BASE64 = /[A-Za-z0-9+/=]/;

class Parser {
  private i = 0;
  private readonly s: string;

  constructor(value: string) {
    // §4.2: discard leading and trailing SP.
    this.s = value.replace(/^ +| +$/g, "");
  }

  private peek(): string | undefined {
    return this.s[this.i];
  }

  private fail(): never {
    throw new Fail();
  }

  dictionary(): Dictionary {
    const dict: Dictionary = new Map();
    while (this.i < this.s.length) {
      const key = this.key();
      let member: Member;
      if (this.peek() === "=") {
        this.i++;
        member = this.itemOrInnerList();
      } else {
        member = { item: { type: "boolean", value: true }, params: this.parameters() };
      }
      // §4.2.2: a later member with the same key overwrites the earlier one.
      dict.set(key, member);
      this.ows();
      if (this.i >= this.s.length) return dict;
      if (this.peek() !== ",") this.fail();
      this.i++;
      this.ows();
      if (this.i >= this.s.length) this.fail(); // a trailing comma
    }
    return dict;
  }

  private ows(): void {
    while (this.peek() === " " || this.peek() === "\t") this.i++;
  }

  private key(): string {
    const first = this.peek();
    if (first === undefined || !KEY_START.test(first)) this.fail();
    let key = "";
    while (this.peek() !== undefined && KEY_CHAR.test(this.peek() as string)) key += this.s[this.i++];
    return key;
  }

  private parameters(): Parameters {
    const params: Parameters = new Map();
    while (this.peek() === ";") {
      this.i++;
      while (this.peek() === " ") this.i++;
      const key = this.key();
      let value: BareItem = { type: "boolean", value: true };
      if (this.peek() === "=") {
        this.i++;
        value = this.bareItem();
      }
      params.set(key, value);
    }
    return params;
  }

  private itemOrInnerList(): Member {
    if (this.peek() !== "(") return { item: this.bareItem(), params: this.parameters() };
    this.i++;
    const inner: Item[] = [];
    for (;;) {
      while (this.peek() === " ") this.i++;
      if (this.peek() === ")") {
        this.i++;
        return { inner, params: this.parameters() };
      }
      inner.push({ item: this.bareItem(), params: this.parameters() });
      const next = this.peek();
      if (next !== " " && next !== ")") this.fail();
    }
  }

  private bareItem(): BareItem {
    const c = this.peek();
    if (c === undefined) this.fail();
    if (c === "-" || /[0-9]/.test(c)) return this.number();
    if (c === '"') return this.string();
    if (TOKEN_START.test(c)) return this.token();
    if (c === ":") return this.bytes();
    if (c === "?") return this.boolean();
    return this.fail();
  }

  /** §4.2.4: at most 15 integer digits; a decimal at most 12 before and 3 after the point. */
  private number(): BareItem {
    let sign = 1;
    if (this.peek() === "-") {
      sign = -1;
      this.i++;
    }
    let digits = "";
    let decimal = false;
    if (!/[0-9]/.test(this.peek() ?? "")) this.fail();
    for (;;) {
      const c = this.peek();
      if (c !== undefined && /[0-9]/.test(c)) digits += c;
      else if (c === "." && !decimal) {
        if (digits.length > 12) this.fail();
        decimal = true;
        digits += c;
      } else break;
      this.i++;
      if (!decimal && digits.length > 15) this.fail();
      if (decimal && digits.length > 16) this.fail();
    }
    if (!decimal) return { type: "integer", value: sign * Number(digits) };
    if (digits.endsWith(".") || (digits.split(".")[1]?.length ?? 0) > 3) this.fail();
    return { type: "decimal", value: sign * Number(digits) };
  }

  private string(): BareItem {
    this.i++;
    let out = "";
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) this.fail();
      if (c === '"') return { type: "string", value: out };
      if (c === "\\") {
        const next = this.s[this.i++];
        if (next !== '"' && next !== "\\") this.fail();
        out += next;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) this.fail();
      out += c;
    }
  }

  private token(): BareItem {
    let out = "";
    while (this.peek() !== undefined && TOKEN_CHAR.test(this.peek() as string)) out += this.s[this.i++];
    return { type: "token", value: out };
  }

  private bytes(): BareItem {
    this.i++;
    let out = "";
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) this.fail();
      if (c === ":") return { type: "bytes", value: out };
      if (!BASE64.test(c)) this.fail();
      out += c;
    }
  }

  private boolean(): BareItem {
    this.i++;
    const c = this.s[this.i++];
    if (c === "1") return { type: "boolean", value: true };
    if (c === "0") return { type: "boolean", value: false };
    return this.fail();
  }
}
