import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { ErrorCode, UserError } from '../../core/errors.ts';
import {
  checkImageBytes,
  type ImagePromptRef,
  type ImageSource,
  imageTooLarge,
  MAX_INIT_IMAGE_BYTES,
  MAX_INIT_IMAGE_PIXELS,
} from '../../core/image-prompt.ts';
import { type FilePolicy, fetchFile } from './fetch.ts';

/**
 * An image prompt's picture as an adapter found it, loaded by the service after the interaction is
 * acknowledged (a download can take longer than Discord's 3 s), and checked the same way everywhere.
 */
export interface ImageInput {
  /**
   * `attached`: given with this command (Discord's image option, a playground upload).
   * `recent`: Slack's latest picture of the user in the channel, used only when `--strength` asks for it.
   */
  readonly mode: 'attached' | 'recent';
  /** The bytes and where they came from. Throws a UserError that says what was wrong. */
  load(): Promise<LoadedImage>;
}

export interface LoadedImage {
  readonly bytes: Uint8Array;
  readonly source: ImageSource;
  /** Discord attachment id, Slack file id, upload file name. */
  readonly ref: string;
  readonly name?: string;
}

/** A picture ready to queue: its bytes, and what the job's record says about it. */
export interface CheckedImage {
  readonly bytes: Uint8Array;
  readonly ref: ImagePromptRef;
  readonly width: number;
  readonly height: number;
}

const WHAT: Readonly<Record<ImageSource, string>> = {
  discord: 'The attached image',
  slack: 'The shared image',
  upload: 'The uploaded image',
};

/**
 * Size, type (sniffed from the bytes) and pixel count, read from the header only (no decoding): the
 * same limits the worker applies (models/init-image.ts reads them from core), so a picture that
 * passes here is not refused later for them.
 */
export async function checkImage(image: LoadedImage): Promise<CheckedImage> {
  const what = WHAT[image.source];
  const type = checkImageBytes(image.bytes, what);
  let width: number | undefined;
  let height: number | undefined;
  try {
    ({ width, height } = await sharp(image.bytes, { limitInputPixels: false }).metadata());
  } catch {
    throw new UserError(ErrorCode.InvalidRequest, `${what} is damaged and could not be read as a picture.`);
  }
  if (width === undefined || height === undefined || width < 8 || height < 8) {
    throw new UserError(ErrorCode.InvalidRequest, `${what} is too small: each side needs 8 pixels or more.`);
  }
  if (width * height > MAX_INIT_IMAGE_PIXELS) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      `${what} is ${width}x${height}; at most ${MAX_INIT_IMAGE_PIXELS} pixels (4096x4096) are accepted.`,
    );
  }
  const sha256 = createHash('sha256').update(image.bytes).digest('hex');
  const ref: ImagePromptRef = {
    sha256,
    bytes: image.bytes.length,
    type,
    source: image.source,
    ref: image.ref,
    ...(image.name === undefined ? {} : { name: image.name }),
  };
  return { bytes: image.bytes, ref, width, height };
}

/** A playground upload: the bytes are already here. */
export function uploadedImage(bytes: Uint8Array, name: string | undefined): ImageInput {
  const ref = name ?? 'upload';
  return {
    mode: 'attached',
    load: async () => ({ bytes, source: 'upload', ref, ...(name === undefined ? {} : { name }) }),
  };
}

/** What Discord says about an attachment option's file. */
export interface DiscordAttachmentInfo {
  readonly id: string;
  readonly url: string;
  readonly name: string;
  /** As Discord reports it; a hint only, the download is limited on its own. */
  readonly size?: number;
}

/** A Discord attachment, fetched from Discord's CDN only (see `FilePolicy`). */
export function discordImage(attachment: DiscordAttachmentInfo, policy: FilePolicy): ImageInput {
  return {
    mode: 'attached',
    load: async () => {
      const what = WHAT.discord;
      // Discord says how big it is: no need to start a download that would be refused.
      if (attachment.size !== undefined && attachment.size > (policy.maxBytes ?? MAX_INIT_IMAGE_BYTES)) {
        throw imageTooLarge(what, attachment.size);
      }
      const bytes = await fetchFile(attachment.url, policy, what);
      return { bytes, source: 'discord', ref: attachment.id, name: attachment.name };
    },
  };
}
