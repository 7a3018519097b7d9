import type { webApi } from '@slack/bolt';
import type { Logger } from '../logger.ts';
import type { Attachment, ControlRows } from '../surface.ts';
import { slackCall, slackErrorCode, toChatApiError } from './errors.ts';
import {
  fallbackText,
  messageBlocks,
  plainText,
  richTextBlock,
  SLACK_MARKUP,
  type SlackBlock,
} from './render.ts';

/**
 * The Slack Web API calls the adapter makes: posting, updating and deleting messages, uploading and
 * sharing files, ephemeral replies (response_url, chat.postEphemeral as fallback), joining a public
 * channel when needed, and the in-process memory of steps already done.
 */

/** Sub-steps of a multi-call render remembered across delivery retries (in this process). */
const STEP_MEMORY = 5000;

/** Where an interaction happened, for its replies. */
export interface ReplyContext {
  readonly channel: string;
  readonly user: string;
  /** Thread to reply in: the pressed grid's thread (button presses only). */
  readonly thread?: string;
  readonly responseUrl?: string;
}

export class SlackWebApi {
  readonly #client: webApi.WebClient;
  readonly #log: Logger;
  readonly #apiTimeoutMs: number;
  readonly #steps = new Map<string, string>();

  constructor(client: webApi.WebClient, log: Logger, apiTimeoutMs: number) {
    this.#client = client;
    this.#log = log;
    this.#apiTimeoutMs = apiTimeoutMs;
  }

  async post(
    channel: string,
    thread: string | undefined,
    text: string,
    controls: ControlRows,
    options: { textInBlocks?: boolean } = {},
  ): Promise<string> {
    // Without the section, `text` is only the notification/screen-reader fallback for the buttons.
    const blocks = messageBlocks(text, controls);
    const shown = options.textInBlocks === false ? blocks.filter((b) => b.type === 'actions') : blocks;
    const result = await this.#inChannel(channel, 'chat.postMessage', () =>
      this.#client.chat.postMessage({
        channel,
        text: fallbackText(text),
        blocks: shown.length > 0 ? shown : blocks,
        unfurl_links: false,
        unfurl_media: false,
        ...(thread === undefined ? {} : { thread_ts: thread }),
      }),
    );
    if (result.ts === undefined) throw toChatApiError('chat.postMessage', new Error('no ts in the answer'));
    return result.ts;
  }

  async update(channel: string, ts: string, text: string, controls: ControlRows): Promise<void> {
    await slackCall('chat.update', () =>
      this.#client.chat.update({
        channel,
        ts,
        text: fallbackText(text),
        blocks: messageBlocks(text, controls),
      }),
    );
  }

  async upload(
    channel: string,
    thread: string | undefined,
    file: Attachment,
    comment: string,
    altText: string,
  ): Promise<string> {
    const common = {
      file: file.data,
      filename: file.name,
      title: file.name,
      alt_text: plainText(altText).slice(0, 1000),
      // Blocks, not initial_comment (always mrkdwn): the caption's user text stays literal.
      blocks: [richTextBlock(comment)],
    };
    const result = await this.#inChannel(channel, 'files.uploadV2', () =>
      this.#client.filesUploadV2(
        thread === undefined
          ? { ...common, channel_id: channel }
          : { ...common, channel_id: channel, thread_ts: thread },
      ),
    );
    const files = (result as { files?: { files?: { id?: string }[] }[] }).files;
    return files?.[0]?.files?.[0]?.id ?? '';
  }

  /** files.uploadV2's first half: the upload URL and the bytes; the file is not visible anywhere yet. */
  async uploadBytes(file: Attachment, altText: string): Promise<string> {
    const url = await slackCall('files.getUploadURLExternal', () =>
      this.#client.files.getUploadURLExternal({
        filename: file.name,
        length: file.data.length,
        alt_text: altText.slice(0, 1000),
      }),
    );
    if (typeof url.upload_url !== 'string' || typeof url.file_id !== 'string') {
      throw toChatApiError('files.getUploadURLExternal', new Error('no upload_url or file_id in the answer'));
    }
    const response = await fetch(url.upload_url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(file.data),
      signal: AbortSignal.timeout(this.#apiTimeoutMs),
    }).catch((error: unknown) => {
      throw toChatApiError('files upload', error);
    });
    await response.arrayBuffer().catch(() => undefined);
    if (!response.ok) throw toChatApiError('files upload', new Error(`HTTP ${response.status}`));
    return url.file_id;
  }

  /** files.uploadV2's second half: shares the uploaded file into the channel (or thread) as one message. */
  async share(
    channel: string,
    thread: string | undefined,
    fileId: string,
    title: string,
    comment: string,
  ): Promise<string> {
    const files: [{ id: string; title: string }] = [{ id: fileId, title }];
    // Blocks, not initial_comment (always mrkdwn): the caption's user text stays literal.
    const blocks = [richTextBlock(comment)];
    await this.#inChannel(channel, 'files.completeUploadExternal', () =>
      this.#client.files.completeUploadExternal(
        thread === undefined
          ? { files, channel_id: channel, blocks }
          : { files, channel_id: channel, thread_ts: thread, blocks },
      ),
    );
    return fileId;
  }

  /**
   * Whether a file is already shared in a channel (files.info, scope files:read). Unknown (no scope,
   * an error) counts as not shared: the grid may then show twice, but is never lost.
   */
  async isSharedIn(fileId: string, channel: string): Promise<boolean> {
    try {
      const info = await this.#client.files.info({ file: fileId });
      const file = info.file;
      if (file === undefined) return false;
      const lists = [file.channels, file.groups, file.ims];
      if (lists.some((list) => list?.includes(channel) === true)) return true;
      const shares = file.shares as
        | { public?: Record<string, unknown>; private?: Record<string, unknown> }
        | undefined;
      return shares?.public?.[channel] !== undefined || shares?.private?.[channel] !== undefined;
    } catch (error) {
      this.#log.warn(
        { err: error, fileId },
        'files.info failed; sharing the grid again to be sure it is shown',
      );
      return false;
    }
  }

  async deleteQuietly(channel: string, ts: string): Promise<void> {
    try {
      await this.#client.chat.delete({ channel, ts });
    } catch (error) {
      // The placeholder is cosmetic: a failed delete must not fail (and repeat) the delivery.
      this.#log.debug({ err: error, channel, ts }, 'deleting the status message failed');
    }
  }

  /** Ephemeral to the acting user: through response_url (works without the bot in the channel), else chat.postEphemeral. */
  /** `text` is plain (an error or notice that may quote user input), shown literally. */
  async ephemeral(context: ReplyContext, text: string): Promise<void> {
    const literal = SLACK_MARKUP.escape(text);
    await this.ephemeralBlocks(context, literal, [richTextBlock(literal)]);
  }

  /** An ephemeral message of blocks; `marked` (SLACK_MARKUP) is its notification fallback. */
  async ephemeralBlocks(context: ReplyContext, marked: string, blocks: readonly SlackBlock[]): Promise<void> {
    const message = { text: fallbackText(marked), blocks };
    if (context.responseUrl !== undefined) {
      try {
        const response = await fetch(context.responseUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, ...message }),
          signal: AbortSignal.timeout(this.#apiTimeoutMs),
        });
        if (response.ok) return;
        this.#log.debug(
          { status: response.status },
          'response_url refused; falling back to chat.postEphemeral',
        );
      } catch (error) {
        this.#log.debug({ err: error }, 'response_url failed; falling back to chat.postEphemeral');
      }
    }
    await slackCall('chat.postEphemeral', () =>
      this.#client.chat.postEphemeral({ channel: context.channel, user: context.user, ...message }),
    );
  }

  /** Runs a channel call; in a public channel the bot is not in yet, joins it and tries once more. */
  async #inChannel<T>(channel: string, method: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (slackErrorCode(error) !== 'not_in_channel' || !channel.startsWith('C'))
        throw toChatApiError(method, error);
      this.#log.info({ channel }, 'joining the public channel to post there');
      await slackCall('conversations.join', () => this.#client.conversations.join({ channel }));
      return slackCall(method, run);
    }
  }

  async once(step: string, run: () => Promise<string>): Promise<string> {
    const done = this.#steps.get(step);
    if (done !== undefined) return done;
    const result = await run();
    this.#steps.set(step, result);
    if (this.#steps.size > STEP_MEMORY) {
      const oldest = this.#steps.keys().next().value;
      if (oldest !== undefined) this.#steps.delete(oldest);
    }
    return result;
  }
}
