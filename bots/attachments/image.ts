import { type ImageSource, imageTooLarge, MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
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

/** How refusals name the picture, by where it came from. */
export const IMAGE_WHAT: Readonly<Record<ImageSource, string>> = {
  discord: 'The attached image',
  slack: 'The shared image',
  upload: 'The uploaded image',
};

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
      const what = IMAGE_WHAT.discord;
      // Discord says how big it is: no need to start a download that would be refused.
      if (attachment.size !== undefined && attachment.size > (policy.maxBytes ?? MAX_INIT_IMAGE_BYTES)) {
        throw imageTooLarge(what, attachment.size);
      }
      const bytes = await fetchFile(attachment.url, policy, what);
      return { bytes, source: 'discord', ref: attachment.id, name: attachment.name };
    },
  };
}
