import type { RequestLimits } from '../../core/config.ts';
import { ErrorCode, UserError } from '../../core/errors.ts';
import {
  checkImageBytes,
  DEFAULT_IMAGE_STRENGTH,
  imagePromptSteps,
  strengthTooLow,
} from '../../core/image-prompt.ts';
import type { Surface, UploadInit } from '../../core/jobspec.ts';
import { choosesSize, type ImagineRequest, type Result, sizeForAspect } from '../../core/request.ts';
import { describeInitImage } from '../../queue/index.ts';
import { IMAGE_WHAT, type ImageInput } from '../attachments/image.ts';
import type { GridSettings, ImagineCommand, Markup } from '../surface.ts';

/**
 * Image prompts (`/imagine` with a starting picture), decided once for every surface: whether the
 * command has one, loading and checking it (type from the bytes, then the engine's own size and pixel
 * checks, before anything is queued), the size the grid is drawn at, and how its result names it.
 */

/** Where each surface takes the picture from, for "--strength without an image". */
const HOW_TO_ATTACH: Readonly<Record<Surface, string>> = {
  discord: 'attach one with the `image` option',
  slack: 'share one in this channel first',
  web: 'upload or paste one (or send `init_image`)',
  cli: 'pass --init-image',
};

/**
 * The command's picture, if it is to be used. Slack's (the user's latest shared picture) only when
 * `--strength` asks for it, so an ordinary `/imagine` never picks up an unrelated upload; `--strength`
 * without any picture is refused rather than ignored, since the user clearly expected one.
 */
export function imageOf(command: ImagineCommand, request: ImagineRequest): Result<ImageInput | undefined> {
  const image = command.image;
  if (image !== undefined && (image.mode === 'attached' || request.strength !== undefined)) {
    const strength = strengthOf(request);
    if (imagePromptSteps(request.steps, strength) < 1) {
      return { ok: false, error: strengthTooLow(request.steps, strength) };
    }
    return { ok: true, value: image };
  }
  if (request.strength !== undefined) {
    return {
      ok: false,
      error: new UserError(
        ErrorCode.InvalidRequest,
        `Strength applies to an image prompt, but no image came with this command: ` +
          `${HOW_TO_ATTACH[command.surface]} (PNG, JPEG or WebP, up to 20 MiB).`,
      ),
    };
  }
  return { ok: true, value: undefined };
}

export interface LoadedPrompt {
  readonly bytes: Uint8Array;
  /** The spec's reference: what the queue stores it under, and what the record says about it. */
  readonly init: UploadInit;
}

/** Downloads (where needed) and checks the picture; throws a UserError that says what was wrong. */
export async function loadImagePrompt(image: ImageInput): Promise<LoadedPrompt> {
  const loaded = await image.load();
  const what = IMAGE_WHAT[loaded.source];
  // The sniff first: "not a picture" reads better than a decoder's complaint.
  checkImageBytes(loaded.bytes, what);
  let described: UploadInit;
  try {
    described = await describeInitImage(loaded.bytes);
  } catch (error) {
    if (error instanceof UserError) {
      throw new UserError(error.code, error.message.replace(/^The starting image/u, what), { cause: error });
    }
    throw error;
  }
  const name = loaded.name?.slice(0, 200);
  return {
    bytes: loaded.bytes,
    init: {
      ...described,
      source: loaded.source,
      ref: loaded.ref.slice(0, 200),
      ...(name === undefined || name === '' ? {} : { name }),
    },
  };
}

/**
 * The grid's size: the one the user chose (`--ar`, `--size`), else the picture's aspect ratio at the
 * model's native area (the `--ar` mapping), so the picture is not stretched; the request's size when
 * that ratio is outside `--ar`'s range.
 */
export function imagePromptSize(
  command: ImagineCommand,
  request: ImagineRequest,
  init: UploadInit,
  limits: RequestLimits,
): { width: number; height: number } {
  const own = { width: request.width, height: request.height };
  const form = command.text !== undefined ? { text: command.text } : { options: command.options };
  if (choosesSize(form)) return own;
  const ratio = (init.width / init.height).toFixed(3);
  const size = sizeForAspect(`${ratio}:1`, limits);
  return size.ok ? size.value : own;
}

/** `strength` of a request with a picture. */
export function strengthOf(request: ImagineRequest): number {
  return request.strength ?? DEFAULT_IMAGE_STRENGTH;
}

/**
 * "image prompt “cat.png” (sha256 1a2b3c4d5e6f…, 123 KB)", for the grid's settings line; the strength is
 * in its header ("from your picture (strength 0.6)").
 */
export function imagePromptText(m: Markup, settings: GridSettings): string | undefined {
  const init = settings.init;
  if (init?.from !== 'upload') return undefined;
  const label = init.name ?? init.ref ?? 'upload';
  const kb = Math.max(1, Math.round(init.bytes / 1024));
  return `image prompt “${m.escape(label)}” (sha256 ${init.sha256.slice(0, 12)}…, ${kb} KB)`;
}
