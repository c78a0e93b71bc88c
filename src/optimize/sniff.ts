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
  // GIF: logical screen size (16-bit little-endian). Frames are not counted: every GIF is taken for an
  // animation and served as it is (the WASM codecs cannot read GIF anyway).
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

/** What a re-encode by the WASM codecs would lose: they drop EXIF orientation and colour profiles. */
export interface PixelMeaning {
  /** EXIF orientation (1 = as stored; 2–8 = the viewer flips or rotates it). */
  orientation: number;
  /** An embedded colour profile other than sRGB (Display P3, Adobe RGB…): its colours need the profile. */
  foreignProfile: boolean;
}

/**
 * Reads a JPEG's EXIF orientation and ICC profile, a PNG's iCCP chunk and a WebP's ICCP chunk. A profile
 * counts as sRGB when its bytes (JPEG, WebP) or its name (PNG, whose profile is compressed) say "sRGB".
 */
export function pixelMeaning(bytes: Uint8Array, format: ImageFormat): PixelMeaning {
  const meaning: PixelMeaning = { orientation: 1, foreignProfile: false };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, Math.min(to, bytes.length)));
  if (format === "jpeg") {
    let offset = 2;
    let sawExif = false;
    let sawProfile = false;
    let sawSrgb = false;
    while (offset + 4 <= bytes.length && view.getUint8(offset) === 0xff) {
      const marker = view.getUint8(offset + 1);
      if (marker === 0xda || marker === 0xd9) break; // start of scan: no metadata after it
      const length = view.getUint16(offset + 2);
      const body = offset + 4;
      // The first EXIF segment is the one viewers read.
      if (marker === 0xe1 && !sawExif && text(body, body + 6) === "Exif\0\0") {
        sawExif = true;
        meaning.orientation = exifOrientation(view, body + 6, offset + 2 + length);
      }
      if (marker === 0xe2 && text(body, body + 12) === "ICC_PROFILE\0") {
        sawProfile = true;
        if (text(body, offset + 2 + length).includes("sRGB")) sawSrgb = true;
      }
      offset += 2 + length;
    }
    meaning.foreignProfile = sawProfile && !sawSrgb;
  } else if (format === "png") {
    let offset = 8;
    while (offset + 8 <= bytes.length) {
      const length = view.getUint32(offset);
      const type = text(offset + 4, offset + 8);
      if (type === "IDAT") break;
      if (type === "iCCP")
        meaning.foreignProfile = !text(offset + 8, offset + 8 + Math.min(length, 80)).includes("sRGB");
      offset += 12 + length;
    }
  } else if (format === "webp") {
    let offset = 12;
    while (offset + 8 <= bytes.length) {
      const type = text(offset, offset + 4);
      const length = view.getUint32(offset + 4, true);
      if (type === "ICCP") meaning.foreignProfile = !text(offset + 8, offset + 8 + length).includes("sRGB");
      if (type === "VP8 " || type === "VP8L") break;
      offset += 8 + length + (length % 2);
    }
  }
  return meaning;
}

/** The Orientation tag (0x0112) of IFD0 in an EXIF TIFF block starting at `tiff`; 1 when absent or unreadable. */
function exifOrientation(view: DataView, tiff: number, end: number): number {
  if (tiff + 8 > end || end > view.byteLength) return 1;
  const little = view.getUint16(tiff) === 0x4949;
  const ifd = tiff + view.getUint32(tiff + 4, little);
  if (ifd + 2 > end) return 1;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count && ifd + 2 + (i + 1) * 12 <= end; i += 1) {
    const entry = ifd + 2 + i * 12;
    if (view.getUint16(entry, little) === 0x0112) {
      const value = view.getUint16(entry + 8, little);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}
