import type { webApi } from '@slack/bolt';
import { ErrorCode, UserError } from '../../core/errors.ts';
import { imageTooLarge, MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
import { fetchFile } from '../attachments/fetch.ts';
import { IMAGE_WHAT, type ImageInput } from '../attachments/image.ts';
import { slackCall } from './errors.ts';

/**
 * Image prompts on Slack. A slash command carries no files, so the picture is the newest image the
 * user shared in the channel within the window (files.list, scope files:read). It is looked up only
 * when the command asks for one with `--strength`, and downloaded from Slack's file host with the bot
 * token, which goes nowhere else (see bots/attachments/fetch.ts).
 */

export interface SlackImageOptions {
  readonly client: webApi.WebClient;
  /** Sent as Bearer to the file host only. */
  readonly botToken: string;
  /** Slack's file host (tests: the fake's origin). */
  readonly origins: readonly string[];
  /** How far back a shared picture counts, ms. */
  readonly windowMs: number;
  readonly now: () => number;
}

interface ListedFile {
  readonly id?: string;
  readonly name?: string;
  readonly mimetype?: string;
  readonly size?: number;
  readonly created?: number;
  readonly url_private_download?: string;
  readonly url_private?: string;
  readonly user?: string;
  readonly channels?: readonly string[];
  readonly groups?: readonly string[];
  readonly ims?: readonly string[];
  readonly shares?: { readonly public?: object; readonly private?: object };
}

/**
 * Whether a listed file is the user's and was shared in the channel. files.list is asked for just
 * those, but its answer is checked too: another person's picture must never become this user's prompt.
 * A listing that names no channel at all (Slack leaves them out at times) is taken at the filter's word.
 */
function sharedHereBy(file: ListedFile, channel: string, user: string): boolean {
  if (file.user !== user) return false;
  const named = [
    ...(file.channels ?? []),
    ...(file.groups ?? []),
    ...(file.ims ?? []),
    ...Object.keys(file.shares?.public ?? {}),
    ...Object.keys(file.shares?.private ?? {}),
  ];
  const says = ['channels', 'groups', 'ims', 'shares'].some((k) => k in file);
  return !says || named.includes(channel);
}

export function recentSlackImage(channel: string, user: string, options: SlackImageOptions): ImageInput {
  return {
    mode: 'recent',
    load: async () => {
      const minutes = Math.round(options.windowMs / 60_000);
      const since = Math.floor((options.now() - options.windowMs) / 1000);
      const listed = await slackCall('files.list', () =>
        options.client.files.list({ channel, user, ts_from: String(since), types: 'images', count: 20 }),
      );
      const files = ((listed as { files?: ListedFile[] }).files ?? [])
        .filter((f) => (f.created ?? 0) >= since && sharedHereBy(f, channel, user))
        .sort((a, b) => (b.created ?? 0) - (a.created ?? 0));
      const file = files[0];
      const url = file?.url_private_download ?? file?.url_private;
      if (file?.id === undefined || url === undefined) {
        throw new UserError(
          ErrorCode.InvalidRequest,
          `No picture of yours was shared in this channel in the last ${minutes} minutes. Upload a PNG, ` +
            'JPEG or WebP picture here, then run /imagine again with --strength.',
        );
      }
      const what = IMAGE_WHAT.slack;
      if (file.size !== undefined && file.size > MAX_INIT_IMAGE_BYTES) throw imageTooLarge(what, file.size);
      const bytes = await fetchFile(
        url,
        { origins: options.origins, headers: { authorization: `Bearer ${options.botToken}` } },
        what,
      );
      return {
        bytes,
        source: 'slack',
        ref: file.id,
        ...(file.name === undefined ? {} : { name: file.name }),
      };
    },
  };
}
