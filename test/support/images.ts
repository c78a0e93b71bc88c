import { origin } from "./harness";

/** Test images built at test time. */

/** A JPEG with an APP1 EXIF segment (Orientation = `orientation`) and an APP2 ICC segment saying `profile`. */
export function withMetadata(jpeg: Uint8Array, orientation: number, profile?: string): Uint8Array {
  // "Exif\0\0", a big-endian TIFF header, IFD0 with one entry: 0x0112 Orientation, SHORT, count 1.
  const exif = [0x45, 0x78, 0x69, 0x66, 0, 0, 0x4d, 0x4d, 0, 0x2a, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1];
  const segments = [segment(0xe1, [...exif, 0, orientation, 0, 0, 0, 0, 0, 0])];
  if (profile !== undefined) {
    const icc = new TextEncoder().encode(`ICC_PROFILE\0\x01\x01${"\0".repeat(40)}desc ${profile}${"\0".repeat(40)}`);
    segments.push(segment(0xe2, [...icc]));
  }
  const head = jpeg.subarray(0, 2);
  return new Uint8Array([...head, ...segments.flat(), ...jpeg.subarray(2)]);
}

function segment(marker: number, body: number[]): number[] {
  const length = body.length + 2;
  return [0xff, marker, length >> 8, length & 0xff, ...body];
}

/** Makes `path` answer exactly these bytes (any binary body), as a cacheable `type`. */
export async function rawImageRoute(path: string, type: string, body: Uint8Array): Promise<void> {
  let latin1 = "";
  for (let i = 0; i < body.length; i += 4096) latin1 += String.fromCharCode(...body.subarray(i, i + 4096));
  const head =
    `HTTP/1.1 200 OK\r\ncontent-type: ${type}\r\ncontent-length: ${body.byteLength}\r\n` +
    "cache-control: public, max-age=3600\r\nconnection: close\r\n\r\n";
  await origin.route(path, { raw: head + latin1 });
}
