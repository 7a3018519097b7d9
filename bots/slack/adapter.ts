import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  App,
  type BlockAction,
  type ButtonAction,
  HTTPReceiver,
  LogLevel,
  type Receiver,
  type SlashCommand,
  SocketModeReceiver,
  webApi,
} from '@slack/bolt';
import type { Config } from '../../core/config.ts';
import { CodedError, ErrorCode, reportError } from '../../core/errors.ts';
import type { DeliveryContext } from '../../queue/index.ts';
import type { Logger } from '../logger.ts';
import type { ConversationService } from '../service.ts';
import type {
  Attachment,
  CancelledView,
  ChatSurface,
  ControlRows,
  FailureView,
  GridView,
  ImageView,
  InteractionReply,
  JobTarget,
  MessageRef,
  ProgressView,
  QueuedView,
} from '../surface.ts';
import { boltLogger, slackCall, slackErrorCode, toChatApiError } from './errors.ts';
import {
  ACTION_ID_PREFIX,
  fallbackText,
  messageBlocks,
  plainText,
  richTextBlock,
  SLACK_LIMITS,
  SLACK_MARKUP,
} from './render.ts';

/**
 * The Slack adapter: a thin layer between @slack/bolt and the conversation service. It acknowledges
 * every interaction on receipt (before any Redis round trip), turns Slack payloads into service
 * commands, and renders the service's views as Slack messages. It decides nothing about the flow.
 *
 * Where things go on Slack:
 * - `/imagine`: a public status message in the channel (queued → progress edits via chat.update);
 * - result: the grid uploaded with files.uploadV2 (caption as its comment), then a message with the
 *   Block Kit buttons right under it; the status message is then removed;
 * - button presses reply in the grid's thread (refinements, rerolls, full-size images);
 * - errors: ephemeral, through the interaction's response_url (chat.postEphemeral as fallback).
 */

/** The part of the conversation service the adapter uses. */
export type SlackConversation = Pick<ConversationService, 'imagine' | 'press' | 'attach'>;

export type SlackMode = 'socket' | 'http';

export interface SlackAdapterOptions {
  readonly service: SlackConversation;
  readonly log: Logger;
  /** Bot token (xoxb-…). */
  readonly botToken: string;
  /** @defaultValue `'socket'` */
  readonly mode?: SlackMode;
  /** App-level token (xapp-…, scope connections:write); required in socket mode. */
  readonly appToken?: string;
  /** Signing secret; required in http mode. */
  readonly signingSecret?: string;
  /** HTTP mode listen port (0: any free port). @defaultValue 3000 */
  readonly port?: number;
  /** HTTP mode listen address. @defaultValue all interfaces */
  readonly host?: string;
  /** HTTP mode path of the events/interactivity/commands endpoint. @defaultValue `'/slack/events'` */
  readonly path?: string;
  /** Web API base. @defaultValue `'https://slack.com/api/'` */
  readonly apiUrl?: string;
  /** @defaultValue `'/imagine'` */
  readonly command?: string;
  /** Timeout of one Web API call, ms. @defaultValue 30000 */
  readonly apiTimeoutMs?: number;
  /** Called after each acknowledgement with the time since the interaction was received (metrics, benchmarks). */
  readonly onAck?: (timing: AckTiming) => void;
}

export interface AckTiming {
  readonly kind: 'command' | 'action';
  /** From receipt (HTTP request arrival, or Socket Mode envelope arrival) to the ack sent. */
  readonly ms: number;
}

/** Arrival time stamped on each HTTP request before bolt reads it. */
const RECEIVED_AT = Symbol('receivedAt');
type StampedRequest = IncomingMessage & { [RECEIVED_AT]?: number };

/** Adapter settings from the validated config; undefined when Slack is off (no bot token). */
export function slackSettingsFrom(config: Config): Omit<SlackAdapterOptions, 'service' | 'log'> | undefined {
  if (config.SLACK_BOT_TOKEN === undefined) return undefined;
  return {
    botToken: config.SLACK_BOT_TOKEN,
    mode: config.SLACK_MODE,
    ...(config.SLACK_APP_TOKEN === undefined ? {} : { appToken: config.SLACK_APP_TOKEN }),
    ...(config.SLACK_SIGNING_SECRET === undefined ? {} : { signingSecret: config.SLACK_SIGNING_SECRET }),
    port: config.SLACK_PORT,
    apiUrl: config.SLACK_API_URL,
  };
}

const DEFAULTS = {
  mode: 'socket',
  port: 3000,
  path: '/slack/events',
  apiUrl: 'https://slack.com/api/',
  command: '/imagine',
  apiTimeoutMs: 30_000,
} as const satisfies Partial<SlackAdapterOptions>;

/** Sub-steps of a multi-call render remembered across delivery retries (in this process). */
const STEP_MEMORY = 5000;

/** Where an interaction happened, for its replies. */
interface ReplyContext {
  readonly channel: string;
  readonly user: string;
  /** Thread to reply in: the pressed grid's thread (button presses only). */
  readonly thread?: string;
  readonly responseUrl?: string;
}

export class SlackAdapter implements ChatSurface {
  readonly surface = 'slack' as const;
  readonly markup = SLACK_MARKUP;
  readonly limits = SLACK_LIMITS;
  readonly mode: SlackMode;

  readonly #service: SlackConversation;
  readonly #log: Logger;
  readonly #client: webApi.WebClient;
  readonly #app: App;
  readonly #options: SlackAdapterOptions;
  readonly #steps = new Map<string, string>();
  readonly #receiverRef: Receiver;
  #detach: (() => Promise<void>) | undefined;
  #server: Server | undefined;
  /** Interactions handed to the service and not answered yet, so stop() can let them finish. */
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    this.#service = options.service;
    this.#log = options.log.child({ surface: 'slack' });
    this.mode = options.mode ?? DEFAULTS.mode;
    const logger = boltLogger(options.log);
    const logLevel = levelOf(options.log.level);
    logger.setLevel(logLevel);
    const apiUrl = options.apiUrl ?? DEFAULTS.apiUrl;
    // Fail fast on 429 and 5xx: the durable delivery retries (honouring Retry-After), not the client.
    const clientOptions: webApi.WebClientOptions = {
      slackApiUrl: apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: options.apiTimeoutMs ?? DEFAULTS.apiTimeoutMs,
      logger,
    };
    this.#client = new webApi.WebClient(options.botToken, clientOptions);
    this.#receiverRef = this.#receiver(logger, logLevel, apiUrl);
    this.#app = new App({
      token: options.botToken,
      receiver: this.#receiverRef,
      clientOptions,
      logger,
      logLevel,
      // auth.test runs once in start() (bad tokens fail there), not before every event.
      deferInitialization: true,
      convoStore: false,
    });
    // Ack first, on receipt, before any Redis or Slack call: Slack's deadline is 3 s. Pacing the
    // work that follows (acks first, a bounded number at once) is the service's (its ack gate).
    this.#app.command(options.command ?? DEFAULTS.command, async ({ ack, command, context }) => {
      await ack();
      this.#acked('command', context.receivedAt);
      await this.#work(() => this.#onCommand(command));
    });
    this.#app.action<BlockAction<ButtonAction>>(
      { type: 'block_actions', action_id: new RegExp(`^${ACTION_ID_PREFIX}`, 'u') },
      async ({ ack, body, action, context }) => {
        await ack();
        this.#acked('action', context.receivedAt);
        await this.#work(() => this.#onPress(body, action));
      },
    );
    this.#app.error(async (error) => {
      reportError(this.#log, error, { where: 'bolt' });
    });
  }

  /** Verifies the token (auth.test), attaches to the service, then listens (http) or connects (socket). */
  async start(): Promise<void> {
    await slackCall('auth.test', () => this.#app.init());
    this.#detach = this.#service.attach(this);
    try {
      if (this.mode === 'http') {
        this.#server = await this.#listen();
      } else {
        await this.#app.start();
      }
    } catch (error) {
      await this.#detach();
      this.#detach = undefined;
      throw error;
    }
    this.#log.info({ mode: this.mode, port: this.port }, 'slack adapter started');
  }

  /**
   * Stops receiving, lets interactions already acknowledged get their answer, then detaches from
   * the service (whose close waits for in-flight renders).
   */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Requests still being answered get a moment; then every socket is closed.
      const force = setTimeout(() => server.closeAllConnections(), 2000);
      await closed;
      clearTimeout(force);
    } else if (this.mode === 'socket') {
      await this.#app
        .stop()
        .catch((error: unknown) => this.#log.warn({ err: error }, 'stopping bolt failed'));
    }
    await Promise.allSettled(this.#inFlight);
    const detach = this.#detach;
    this.#detach = undefined;
    await detach?.();
  }

  /** HTTP mode: the port listened on (useful with port 0). */
  get port(): number | undefined {
    const address = this.#server?.address();
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : undefined;
  }

  /**
   * HTTP mode's server: bolt's request listener behind a server of ours, which stamps each
   * request's arrival so the ack time can be measured from receipt.
   */
  async #listen(): Promise<Server> {
    const receiver = this.#receiverRef as HTTPReceiver;
    const server = createServer((req: StampedRequest, res) => {
      req[RECEIVED_AT] = performance.now();
      try {
        receiver.requestListener(req, res);
      } catch {
        // bolt throws for paths it does not serve.
        res.writeHead(404);
        res.end();
      }
    });
    server.listen({
      port: this.#options.port ?? DEFAULTS.port,
      ...(this.#options.host === undefined ? {} : { host: this.#options.host }),
    });
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([error]) => Promise.reject(error as Error)),
    ]);
    return server;
  }

  /** Hands one acknowledged interaction to the service, tracked until it is answered. */
  async #work(run: () => Promise<void>): Promise<void> {
    const running = run();
    this.#inFlight.add(running);
    try {
      await running;
    } finally {
      this.#inFlight.delete(running);
    }
  }

  #acked(kind: AckTiming['kind'], receivedAt: unknown): void {
    if (this.#options.onAck === undefined || typeof receivedAt !== 'number') return;
    this.#options.onAck({ kind, ms: performance.now() - receivedAt });
  }

  // ——— ChatSurface: what arrives after the interaction ———

  async showProgress(target: JobTarget, view: ProgressView): Promise<void> {
    const ts = target.messageRef.ts;
    if (ts === undefined) return;
    await this.#update(target.channel, ts, view.text, view.controls);
  }

  /**
   * The grid file (caption as its comment), then the buttons right under it, then the status
   * message goes. Each visible step runs once, so a retry after a failure further on never posts
   * twice: through the delivery's `once` when the service passes it (survives restarts), else
   * remembered in this process.
   */
  async showGrid(target: JobTarget, view: GridView, steps?: Pick<DeliveryContext, 'once'>): Promise<string> {
    const once = (step: string, run: () => Promise<string>) =>
      steps !== undefined ? steps.once(`slack:${step}`, run) : this.#once(`${view.recordId}:${step}`, run);
    // Two steps, so a process killed between sharing the file and recording it can tell, when the
    // delivery resumes, whether the share happened: the bytes go up first (invisible; the file id is
    // recorded), then the share, skipped when files.info says the file is already in the channel.
    let uploadedNow = false;
    const fileId = await once('grid-upload', async () => {
      uploadedNow = true;
      return this.#uploadBytes(view.file, `Grid for ${view.recordId}`);
    });
    await once('grid-file', async () => {
      if (!uploadedNow && (await this.#isSharedIn(fileId, target.channel))) {
        this.#log.info(
          { recordId: view.recordId, fileId },
          'grid already shared before a restart; not sharing again',
        );
        return fileId;
      }
      return this.#share(target.channel, target.thread, fileId, view.file.name, view.text);
    });
    const controlsTs = await once('grid-controls', () =>
      this.#post(target.channel, target.thread, view.text, view.controls, { textInBlocks: false }),
    );
    const statusTs = target.messageRef.ts;
    if (statusTs !== undefined) await this.#deleteQuietly(target.channel, statusTs);
    return controlsTs;
  }

  async showFailure(target: JobTarget, view: FailureView): Promise<string> {
    return this.#replaceStatus(target, view.text);
  }

  async showCancelled(target: JobTarget, view: CancelledView): Promise<string> {
    return this.#replaceStatus(target, view.text);
  }

  // ——— interactions ———

  async #onCommand(command: SlashCommand): Promise<void> {
    const context: ReplyContext = {
      channel: command.channel_id,
      user: command.user_id,
      responseUrl: command.response_url,
    };
    await this.#service.imagine(
      {
        surface: 'slack',
        user: command.user_id,
        ...(command.user_name ? { userName: command.user_name } : {}),
        channel: command.channel_id,
        interactionId: command.trigger_id,
        text: command.text,
      },
      this.#reply(context),
    );
  }

  async #onPress(body: BlockAction<ButtonAction>, action: ButtonAction): Promise<void> {
    const container = body.container as { channel_id?: string; message_ts?: string; thread_ts?: string };
    const channel = body.channel?.id ?? container.channel_id;
    if (channel === undefined) {
      this.#log.warn({ actionId: action.action_id }, 'button press without a channel: ignored');
      return;
    }
    // Replies go in the grid's thread: its root when the grid is itself a thread reply.
    const thread = container.thread_ts ?? container.message_ts ?? body.message?.ts;
    const context: ReplyContext = {
      channel,
      user: body.user.id,
      ...(thread === undefined ? {} : { thread }),
      responseUrl: body.response_url,
    };
    const userName = body.user.username ?? body.user.name;
    await this.#service.press(
      {
        surface: 'slack',
        user: body.user.id,
        ...(userName ? { userName } : {}),
        channel,
        ...(thread === undefined ? {} : { thread }),
        interactionId: body.trigger_id || `${container.message_ts ?? ''}-${action.action_ts}-${body.user.id}`,
        controlId: action.value ?? '',
      },
      this.#reply(context),
    );
  }

  #reply(context: ReplyContext): InteractionReply {
    return {
      // bolt's ack() already ran on receipt; Slack shows nothing for it.
      accept: async () => {},
      privately: (text) => this.#ephemeral(context, text),
      queued: async (view: QueuedView): Promise<MessageRef> => {
        const ts = await this.#post(context.channel, context.thread, view.text, view.controls);
        return { ts };
      },
      image: async (view: ImageView) => {
        await this.#upload(context.channel, context.thread, view.file, view.text, view.text);
      },
    };
  }

  // ——— Slack calls ———

  #receiver(logger: ReturnType<typeof boltLogger>, logLevel: LogLevel, apiUrl: string): Receiver {
    if (this.mode === 'http') {
      if (this.#options.signingSecret === undefined) {
        throw new CodedError(
          ErrorCode.Config,
          'Slack http mode needs a signing secret (SLACK_SIGNING_SECRET)',
        );
      }
      // bolt verifies every request's v0 signature and refuses forged or stale (> 5 min) ones with 401.
      return new HTTPReceiver({
        signingSecret: this.#options.signingSecret,
        endpoints: this.#options.path ?? DEFAULTS.path,
        logger,
        logLevel,
        customPropertiesExtractor: (req) => ({ receivedAt: (req as StampedRequest)[RECEIVED_AT] }),
      });
    }
    if (this.#options.appToken === undefined) {
      throw new CodedError(ErrorCode.Config, 'Slack socket mode needs an app-level token (SLACK_APP_TOKEN)');
    }
    // apps.connections.open goes to the same API base; it keeps the socket client's own retries.
    return new SocketModeReceiver({
      appToken: this.#options.appToken,
      logger,
      logLevel,
      installerOptions: { clientOptions: { slackApiUrl: apiUrl } },
      // Called as the envelope arrives, before bolt processes it.
      customPropertiesExtractor: () => ({ receivedAt: performance.now() }),
    });
  }

  async #post(
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

  async #update(channel: string, ts: string, text: string, controls: ControlRows): Promise<void> {
    await slackCall('chat.update', () =>
      this.#client.chat.update({
        channel,
        ts,
        text: fallbackText(text),
        blocks: messageBlocks(text, controls),
      }),
    );
  }

  /** Failure/cancel: the status message says so (buttons removed); posted anew if there is none. */
  async #replaceStatus(target: JobTarget, text: string): Promise<string> {
    const ts = target.messageRef.ts;
    if (ts !== undefined) {
      try {
        await this.#update(target.channel, ts, text, []);
        return ts;
      } catch (error) {
        if (slackErrorCode((error as { cause?: unknown }).cause) !== 'message_not_found') throw error;
      }
    }
    return this.#once(`${target.recordId}:status`, () => this.#post(target.channel, target.thread, text, []));
  }

  async #upload(
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
  async #uploadBytes(file: Attachment, altText: string): Promise<string> {
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
      signal: AbortSignal.timeout(this.#options.apiTimeoutMs ?? DEFAULTS.apiTimeoutMs),
    }).catch((error: unknown) => {
      throw toChatApiError('files upload', error);
    });
    await response.arrayBuffer().catch(() => undefined);
    if (!response.ok) throw toChatApiError('files upload', new Error(`HTTP ${response.status}`));
    return url.file_id;
  }

  /** files.uploadV2's second half: shares the uploaded file into the channel (or thread) as one message. */
  async #share(
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
  async #isSharedIn(fileId: string, channel: string): Promise<boolean> {
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

  async #deleteQuietly(channel: string, ts: string): Promise<void> {
    try {
      await this.#client.chat.delete({ channel, ts });
    } catch (error) {
      // The placeholder is cosmetic: a failed delete must not fail (and repeat) the delivery.
      this.#log.debug({ err: error, channel, ts }, 'deleting the status message failed');
    }
  }

  /** Ephemeral to the acting user: through response_url (works without the bot in the channel), else chat.postEphemeral. */
  /** `text` is plain (an error or notice that may quote user input), shown literally. */
  async #ephemeral(context: ReplyContext, text: string): Promise<void> {
    const literal = SLACK_MARKUP.escape(text);
    const message = { text: fallbackText(literal), blocks: [richTextBlock(literal)] };
    if (context.responseUrl !== undefined) {
      try {
        const response = await fetch(context.responseUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, ...message }),
          signal: AbortSignal.timeout(this.#options.apiTimeoutMs ?? DEFAULTS.apiTimeoutMs),
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

  async #once(step: string, run: () => Promise<string>): Promise<string> {
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

function levelOf(pinoLevel: string): LogLevel {
  switch (pinoLevel) {
    case 'trace':
    case 'debug':
      return LogLevel.DEBUG;
    case 'info':
      return LogLevel.INFO;
    case 'warn':
      return LogLevel.WARN;
    default:
      return LogLevel.ERROR;
  }
}
