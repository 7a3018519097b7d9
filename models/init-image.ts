import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { ErrorCode, UserError } from '../core/errors.ts';
import { MAX_INIT_IMAGE_BYTES, MAX_INIT_IMAGE_PIXELS } from '../core/image-prompt.ts';
import type { RgbImage } from './engine.ts';

/**
 * Image-to-image's starting picture, decoded and prepared the way diffusers' `VaeImageProcessor.preprocess`
 * does it: 8-bit RGB, resized only when the wanted size differs (diffusers' default size is the picture's
 * own, rounded down to a multiple of the VAE scale factor), then `2 * (x / 255) - 1` in float32, planar
 * [1, 3, H, W]. Decoding is sharp's; formats, bytes and pixels are limited before any pixel is decoded.
 *
 * Differences from diffusers, documented: (1) a resize uses sharp's Lanczos-3, not PIL's LANCZOS, so a
 * resized picture can differ by a level or so from what PIL makes (no resize happens when the size
 * already matches, as PIL returns a copy then); (2) the EXIF orientation is applied, as diffusers'
 * `load_image` does (`ImageOps.exif_transpose`); (3) alpha is dropped and grey is expanded to RGB, what
 * PIL's `convert("RGB")` does.
 */

// The limits are core's, so the chat side refuses the same pictures before queueing them.
export { MAX_INIT_IMAGE_BYTES, MAX_INIT_IMAGE_PIXELS };
/** The encodings accepted (sharp's format names). */
export const INIT_IMAGE_FORMATS = ['png', 'jpeg', 'webp'] as const;

const f = Math.fround;

function refuse(code: ErrorCode, message: string, context: Record<string, unknown> = {}): UserError {
  return new UserError(code, message, { context });
}

/** Width, height and format of an encoded picture, checked against the limits without decoding pixels. */
export async function inspectInitImage(
  bytes: Uint8Array,
): Promise<{ width: number; height: number; format: string }> {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw refuse(ErrorCode.InvalidRequest, 'The starting image is empty: send a PNG, JPEG or WebP file.');
  }
  if (bytes.length > MAX_INIT_IMAGE_BYTES) {
    throw refuse(
      ErrorCode.InvalidRequest,
      `The starting image is ${bytes.length} bytes; at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB) are accepted.`,
      { bytes: bytes.length, limit: MAX_INIT_IMAGE_BYTES },
    );
  }
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch {
    throw refuse(
      ErrorCode.InvalidRequest,
      'The starting image could not be read as a picture: send a PNG, JPEG or WebP file.',
    );
  }
  const format = meta.format ?? 'unknown';
  if (!(INIT_IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw refuse(
      ErrorCode.UnsupportedMediaType,
      `The starting image is ${format.toUpperCase()}; only PNG, JPEG and WebP are accepted.`,
      { format },
    );
  }
  const { width, height } = meta;
  if (width === undefined || height === undefined || width < 1 || height < 1) {
    throw refuse(ErrorCode.InvalidRequest, 'The starting image has no size: send a PNG, JPEG or WebP file.');
  }
  if (width * height > MAX_INIT_IMAGE_PIXELS) {
    throw refuse(
      ErrorCode.InvalidRequest,
      `The starting image is ${width}x${height}; at most ${MAX_INIT_IMAGE_PIXELS} pixels (4096x4096) are accepted.`,
      { width, height, limit: MAX_INIT_IMAGE_PIXELS },
    );
  }
  // EXIF orientations 5-8 swap the sides once applied.
  const swapped = (meta.orientation ?? 1) >= 5;
  return { width: swapped ? height : width, height: swapped ? width : height, format };
}

/**
 * diffusers' default output size for a picture (`get_default_height_width`): its own size, each side
 * rounded down to a multiple of `factor`; a side under `factor` is refused.
 */
export async function initImageSize(
  bytes: Uint8Array,
  factor: number,
): Promise<{ width: number; height: number }> {
  const { width, height } = await inspectInitImage(bytes);
  const w = width - (width % factor);
  const h = height - (height % factor);
  if (w === 0 || h === 0) {
    throw refuse(
      ErrorCode.InvalidRequest,
      `The starting image is ${width}x${height}; each side must be at least ${factor} pixels.`,
    );
  }
  return { width: w, height: h };
}

/** Decodes to 8-bit RGB at width x height (resized with Lanczos-3 only when the size differs). */
export async function decodeInitImage(bytes: Uint8Array, width: number, height: number): Promise<RgbImage> {
  const own = await inspectInitImage(bytes);
  let pipeline = sharp(bytes, { limitInputPixels: MAX_INIT_IMAGE_PIXELS }).rotate().removeAlpha();
  if (own.width !== width || own.height !== height) {
    pipeline = pipeline.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
  }
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch {
    throw refuse(ErrorCode.InvalidRequest, 'The starting image is damaged and could not be decoded.');
  }
  const { info, data } = raw;
  if (info.channels !== 3 || info.width !== width || info.height !== height) {
    throw refuse(ErrorCode.InvalidRequest, 'The starting image could not be converted to RGB.');
  }
  return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** RGB → the VAE encoder's planar [3, H, W] input: `2 * (x / 255) - 1` in float32, as diffusers does. */
export function rgbToVaeInput(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = f(f(2 * f(image.data[p * 3 + c]! / 255)) - 1);
  }
  return out;
}
