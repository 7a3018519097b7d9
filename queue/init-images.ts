import { createHash } from 'node:crypto';
import { ErrorCode, UserError } from '../core/errors.ts';
import { type InitImageMime, type JobSpec, MAX_INIT_IMAGE_BYTES, type UploadInit } from '../core/jobspec.ts';
import { inspectInitImage } from '../models/init-image.ts';
import type { RedisClient } from './connection.ts';
import type { QueueKeys } from './keys.ts';

/**
 * Uploaded init images ("image prompts"): checked and described once (`describeInitImage`), stored as a
 * blob named by its SHA-256 before the job that uses it is queued, and read back by the worker. The spec
 * carries only the reference, so a 20 MiB picture never goes through BullMQ's job JSON.
 */

const MIME_OF: Readonly<Record<string, InitImageMime>> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
};

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function tooLarge(bytes: number): UserError {
  return new UserError(
    ErrorCode.BodyTooLarge,
    `The starting image is ${bytes} bytes; at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB) are accepted.`,
    { context: { bytes, limit: MAX_INIT_IMAGE_BYTES } },
  );
}

/**
 * The spec reference of an uploaded picture: its SHA-256, size and type, after the engine's own checks
 * (PNG, JPEG or WebP; at most 20 MiB and 4096x4096 pixels). Throws UserError naming what is wrong.
 * Only the header is read, so this is cheap on a large file.
 */
export async function describeInitImage(bytes: Uint8Array): Promise<UploadInit> {
  if (bytes.length > MAX_INIT_IMAGE_BYTES) throw tooLarge(bytes.length);
  const { width, height, format } = await inspectInitImage(bytes);
  const mime = MIME_OF[format];
  if (mime === undefined) {
    throw new UserError(
      ErrorCode.UnsupportedMediaType,
      `The starting image is ${format.toUpperCase()}; only PNG, JPEG and WebP are accepted.`,
    );
  }
  return { from: 'upload', sha256: sha256Hex(bytes), bytes: bytes.length, width, height, mime };
}

/**
 * Checks that `bytes` are the picture the spec's upload reference names (a caller that built the
 * reference with `describeInitImage` always passes), and that a spec without an upload gets no bytes.
 * The same check in the Redis-backed jobs and the test fake.
 */
export async function checkInitUpload(spec: JobSpec, bytes: Uint8Array | undefined): Promise<void> {
  const init = spec.init;
  if (bytes === undefined) return;
  if (init?.from !== 'upload') {
    throw new UserError(
      ErrorCode.InvalidRequest,
      'An init image was sent with a job that does not start from an uploaded picture.',
    );
  }
  if (bytes.length > MAX_INIT_IMAGE_BYTES) throw tooLarge(bytes.length);
  const described = await describeInitImage(bytes);
  for (const field of ['sha256', 'bytes', 'width', 'height', 'mime'] as const) {
    if (described[field] !== init[field]) {
      throw new UserError(
        ErrorCode.InvalidRequest,
        `The init image does not match the job's reference (its ${field} is ${String(described[field])}, the job says ${String(init[field])}).`,
      );
    }
  }
}

/** What submit says when a job names an uploaded picture that is no longer stored. */
export function initImageGoneError(sha256: string): UserError {
  return new UserError(
    ErrorCode.Expired,
    'The uploaded starting image of this job is no longer stored, so it cannot be made again. Upload the picture again.',
    { context: { sha256 } },
  );
}

/**
 * Before a job is queued: stores its uploaded picture once per SHA-256 (a picture already stored is not
 * written again) or, when the caller sent none (a reroll of an image prompt), requires the stored one;
 * either way it then lives at least `ttlMs` more. A spec without an upload touches nothing.
 */
export async function keepInitImage(
  client: RedisClient,
  keys: QueueKeys,
  spec: JobSpec,
  bytes: Uint8Array | undefined,
  ttlMs: number,
): Promise<void> {
  await checkInitUpload(spec, bytes);
  const init = spec.init;
  if (init?.from !== 'upload') return;
  const key = keys.initImage(init.sha256);
  const left = await client.pttl(key);
  // Stored already (the same SHA-256 is the same bytes): only its TTL may need lengthening, never shortening.
  if (left !== -2 && (left >= ttlMs || (await client.pexpire(key, ttlMs)) === 1)) return;
  if (bytes === undefined) throw initImageGoneError(init.sha256);
  await client.set(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'PX', ttlMs);
}
