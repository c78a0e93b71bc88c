import type { ImageFormat } from "./types";

/** What an image's first bytes say: its real format and dimensions, read before anything is decoded. */
export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
  /** Animated GIF or WebP, or APNG: transforming would keep only the first frame. */
  animated: boolean;
}

/**
 * Reads the format and dimensions from the headers of a PNG, JPEG, WebP, GIF or AVIF file, so an image
 * too large to decode within the memory budget is refused before a byte is decoded. Returns null for
 * anything else (the Content-Type is never trusted alone). Reads headers only; it does not validate.
 */
export function sniffImage(bytes: Uint8Array): ImageInfo | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = (offset: number, text: string) =>
    bytes.length >= offset + text.length && [...text].every((char, i) => bytes[offset + i] === char.charCodeAt(0));

  // PNG: signature, then IHDR (width, height: 32-bit big-endian). An acTL chunk before IDAT means APNG.
  if (at(0, "\x89PNG\r\n\x1a\n") && at(12, "IHDR") && bytes.length >= 24) {
    return { format: "png", width: view.getUint32(16), height: view.getUint32(20), animated: hasApngControl(bytes) };
  }
  // GIF: logical screen size (16-bit little-endian); more than one image descriptor means animation.
  if ((at(0, "GIF87a") || at(0, "GIF89a")) && bytes.length >= 10) {
    return { format: "gif", width: view.getUint16(6, true), height: view.getUint16(8, true), animated: true };
  }
  // WebP: RIFF container with a VP8 (lossy), VP8L (lossless) or VP8X (extended) first chunk.
  if (at(0, "RIFF") && at(8, "WEBP") && bytes.length >= 30) {
    if (at(12, "VP8 ")) {
      return {
        format: "webp",
        width: view.getUint16(26, true) & 0x3fff,
        height: view.getUint16(28, true) & 0x3fff,
        animated: false,
      };
    }
    if (at(12, "VP8L")) {
      const bits = view.getUint32(21, true);
      return { format: "webp", width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, animated: false };
    }
    if (at(12, "VP8X")) {
      const width = 1 + (view.getUint8(24) | (view.getUint8(25) << 8) | (view.getUint8(26) << 16));
      const height = 1 + (view.getUint8(27) | (view.getUint8(28) << 8) | (view.getUint8(29) << 16));
      return { format: "webp", width, height, animated: (view.getUint8(20) & 0x02) !== 0 };
    }
    return null;
  }
  // JPEG: walk the markers to the first start-of-frame (SOF0–SOF15 except DHT, JPG and DAC).
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return jpegInfo(bytes, view);
  // AVIF: an ISO-BMFF `ftyp` box with an AVIF brand; dimensions from the first `ispe` property.
  if (at(4, "ftyp") && (at(8, "avif") || at(8, "avis"))) return avifInfo(bytes, view, at(8, "avis"));
  return null;
}

function jpegInfo(bytes: Uint8Array, view: DataView): ImageInfo | null {
  let offset = 2;
  while (offset + 9 < bytes.length) {
    if (bytes[offset] !== 0xff) return null;
    const marker = view.getUint8(offset + 1);
    if (marker === 0xff) {
      offset += 1; // fill byte
      continue;
    }
    const length = view.getUint16(offset + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      return { format: "jpeg", height: view.getUint16(offset + 5), width: view.getUint16(offset + 7), animated: false };
    }
    if (length < 2) return null;
    offset += 2 + length;
  }
  return null;
}

function hasApngControl(bytes: Uint8Array): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === "acTL") return true;
    if (type === "IDAT") return false;
    offset += 12 + length;
  }
  return false;
}

function avifInfo(bytes: Uint8Array, view: DataView, animated: boolean): ImageInfo | null {
  // Find the first `ispe` (image spatial extents) box: 4 bytes version/flags, then width and height.
  for (let offset = 12; offset + 20 <= bytes.length && offset < 64 * 1024; offset += 1) {
    if (
      bytes[offset] === 0x69 &&
      bytes[offset + 1] === 0x73 &&
      bytes[offset + 2] === 0x70 &&
      bytes[offset + 3] === 0x65
    ) {
      return { format: "avif", width: view.getUint32(offset + 8), height: view.getUint32(offset + 12), animated };
    }
  }
  return null;
}

export const IMAGE_TYPES: Record<ImageFormat, string> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  avif: "image/avif",
};
