import { ErrorCode, UserError } from './errors.ts';

/**
 * Image prompts (`/imagine` with a starting picture): the limits every surface enforces before anything
 * is queued, the magic-byte sniff that picks the type (never a file name or a Content-Type), and
 * `--strength`. Pure: the downloads live in bots/attachments, the decoding in models/init-image.ts,
 * which reads these same limits.
 */

/** Encoded size limit of a starting picture (20 MiB). */
export const MAX_INIT_IMAGE_BYTES = 20 * 1024 * 1024;
/** Decoded size limit (width x height) of a starting picture: 4096 x 4096. */
export const MAX_INIT_IMAGE_PIXELS = 4096 * 4096;

/**
 * `--strength` when an image is given without one: 0.6 keeps the picture's composition and colours while
 * the prompt restyles it (the issue's "strong" variation). diffusers' own default, 0.8, mostly repaints.
 */
export const DEFAULT_IMAGE_STRENGTH = 0.6;

export const IMAGE_PROMPT_TYPES = ['image/png', 'image/jpeg', 'image/webp'] as const;
export type ImagePromptType = (typeof IMAGE_PROMPT_TYPES)[number];

/** Where a starting picture came from, as the job's record names it. */
export const IMAGE_SOURCES = ['discord', 'slack', 'upload'] as const;
export type ImageSource = (typeof IMAGE_SOURCES)[number];

/** The picture's type from its first bytes: PNG, JPEG or WebP, else undefined. */
export function sniffImageType(bytes: Uint8Array): ImagePromptType | undefined {
  const at = (i: number) => bytes[i];
  if (bytes.length >= 8 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => at(i) === b)) {
    return 'image/png';
  }
  if (bytes.length >= 3 && at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'image/jpeg';
  const ascii = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'image/webp';
  return undefined;
}

/** A refusal of a starting picture: what was wrong and what is accepted. `what` names it ("The attachment"). */
export function imageTooLarge(what: string, bytes?: number): UserError {
  const size = bytes === undefined ? 'larger than' : `${bytes} bytes; at most`;
  return new UserError(
    ErrorCode.InvalidRequest,
    `${what} is ${size} ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB); send a smaller PNG, JPEG or WebP picture.`,
    { context: bytes === undefined ? {} : { bytes } },
  );
}

export function notAnImage(what: string): UserError {
  return new UserError(
    ErrorCode.InvalidRequest,
    `${what} is not a PNG, JPEG or WebP picture; only those are accepted as image prompts.`,
  );
}

/** Checks size and type of received bytes (before any decoding); returns the sniffed type. */
export function checkImageBytes(bytes: Uint8Array, what: string): ImagePromptType {
  if (bytes.length === 0) {
    throw new UserError(ErrorCode.InvalidRequest, `${what} is empty: send a PNG, JPEG or WebP picture.`);
  }
  if (bytes.length > MAX_INIT_IMAGE_BYTES) throw imageTooLarge(what, bytes.length);
  const type = sniffImageType(bytes);
  if (type === undefined) throw notAnImage(what);
  return type;
}

/** Parses `--strength`: a number above 0 and at most 1 (`0.6`, `.35`, `1`). */
export function parseStrength(text: string): number | UserError {
  const trimmed = text.trim();
  const value = /^(?:\d+(?:\.\d+)?|\.\d+)$/u.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isFinite(value) || value <= 0 || value > 1) {
    return new UserError(
      ErrorCode.InvalidRequest,
      `Strength must be a number above 0 and at most 1 (how much of the image is repainted; ` +
        `default ${DEFAULT_IMAGE_STRENGTH}), got \`${text}\`.`,
    );
  }
  return value;
}

/**
 * Denoising steps an image prompt runs: diffusers' `min(int(steps * strength), steps)` (the engine's
 * `strengthStart`, models/pipeline/img2img.ts). Zero means the engine would refuse the job.
 */
export function imagePromptSteps(steps: number, strength: number): number {
  return Math.min(Math.trunc(steps * strength), steps);
}

/**
 * The fewest steps, at least `steps`, that run one denoising step or more at `strength`: Vary and
 * Upscale ×2 of a 1-step (Turbo) grid would otherwise run none (int(1 × 0.4) = 0).
 */
export function stepsForStrength(steps: number, strength: number): number {
  let at = steps;
  while (imagePromptSteps(at, strength) < 1) at++;
  return at;
}

/** The refusal of a strength too small for the steps, before anything is queued. */
export function strengthTooLow(steps: number, strength: number): UserError {
  return new UserError(
    ErrorCode.InvalidRequest,
    `Strength ${strength} with ${steps} steps runs no denoising step: use a strength of at least ` +
      `${(1 / steps).toPrecision(3)}, or more steps.`,
  );
}
