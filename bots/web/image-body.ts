import type { IncomingMessage } from 'node:http';
import { ErrorCode, UserError } from '../../core/errors.ts';
import { checkImageBytes, MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
import { HttpError } from '../ops/http.ts';

/**
 * `init_image` of `POST /api/imagine`: a base64 PNG, JPEG or WebP (a `data:image/…;base64,` URL is
 * accepted too, its declared type ignored: the bytes are sniffed), with an optional `init_image_name`.
 */

/** Room for the JSON around the image (prompt, flags, name). */
const JSON_MARGIN_BYTES = 64 * 1024;

/**
 * Body limit of `POST /api/imagine`: the largest image prompt base64-encoded (20 MiB → 27,962,028
 * characters) plus the rest of the body. Every other route keeps the small default.
 */
export const IMAGINE_BODY_LIMIT_BYTES = 4 * Math.ceil(MAX_INIT_IMAGE_BYTES / 3) + JSON_MARGIN_BYTES;

/**
 * Bodies that may be large (an image prompt) read and decoded at once, process-wide. Each is buffered
 * whole and copied while parsed and decoded (about 50 MB for the largest picture), so without a cap N
 * slow or concurrent uploads would hold N times that.
 */
export const MAX_UPLOADS_IN_FLIGHT = 4;

/** Counts the large bodies being read; past the cap a request is refused before its body is read. */
export class UploadSlots {
  #inFlight = 0;

  constructor(private readonly max: number = MAX_UPLOADS_IN_FLIGHT) {}

  /**
   * Runs `read` (reading and parsing the body), in a slot when the body may be large: declared over
   * `smallLimit` bytes, or of unknown length (chunked). All slots taken: a 503 with Retry-After.
   */
  async run<T>(req: IncomingMessage, smallLimit: number, read: () => Promise<T>): Promise<T> {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared <= smallLimit) return read();
    if (this.#inFlight >= this.max) {
      // Drained, not buffered, so the answer can still be written on this connection.
      req.resume();
      throw new HttpError(
        ErrorCode.Unavailable,
        `Too many pictures are being uploaded right now (at most ${this.max} at once); try again in a few seconds.`,
      );
    }
    this.#inFlight += 1;
    try {
      return await read();
    } finally {
      this.#inFlight -= 1;
    }
  }
}

export interface UploadedImageField {
  readonly bytes: Uint8Array;
  readonly name?: string;
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/u;
const DATA_URL_RE = /^data:[\w.+/-]*(?:;[\w=.+-]+)*;base64,/iu;

/** The decoded `init_image` (and its name), or undefined when absent or null. Throws a 400 naming the field. */
export function imageField(body: Record<string, unknown>): UploadedImageField | undefined {
  const value = body.init_image;
  const nameValue = body.init_image_name;
  if (value === undefined || value === null) {
    if (nameValue !== undefined && nameValue !== null) {
      throw new HttpError(ErrorCode.InvalidRequest, '"init_image_name" was sent without "init_image".');
    }
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      '"init_image" must be a string: a base64-encoded PNG, JPEG or WebP picture.',
    );
  }
  let name: string | undefined;
  if (nameValue !== undefined && nameValue !== null) {
    if (typeof nameValue !== 'string' || nameValue.length > 200) {
      throw new HttpError(
        ErrorCode.InvalidRequest,
        '"init_image_name" must be a file name of up to 200 characters.',
      );
    }
    // Shown in the result: no control characters, no path.
    name =
      nameValue
        .replace(/[\p{Cc}\p{Cf}]/gu, '')
        .split(/[\\/]/u)
        .pop()
        ?.trim() || undefined;
  }
  const base64 = value.replace(DATA_URL_RE, '').replace(/\s+/gu, '');
  if (base64.length === 0 || base64.length % 4 !== 0 || !BASE64_RE.test(base64)) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      '"init_image" is not valid base64: send the picture\'s bytes base64-encoded (A–Z, a–z, 0–9, +, /, = padding).',
    );
  }
  const bytes = new Uint8Array(Buffer.from(base64, 'base64'));
  try {
    checkImageBytes(bytes, '"init_image"');
  } catch (error) {
    if (error instanceof UserError) throw new HttpError(ErrorCode.InvalidRequest, error.message);
    throw error;
  }
  return name === undefined ? { bytes } : { bytes, name };
}
