import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  App,
  type BlockAction,
  type ButtonAction,
  type HTTPReceiver,
  type Receiver,
  webApi,
} from '@slack/bolt';
import { reportError } from '../../core/errors.ts';
import type { DeliveryContext } from '../../queue/index.ts';
import type { Logger } from '../logger.ts';
import { isHistoryRequest } from '../service/history.ts';
import type {
  CancelledView,
  ChatSurface,
  FailureView,
  GridView,
  ImageView,
  InteractionReply,
  JobTarget,
  MessageRef,
  ProgressView,
  QueuedView,
} from '../surface.ts';
import { boltLogger, slackCall, slackErrorCode } from './errors.ts';
import { onHistoryCommand } from './history.ts';
import {
  type AckTiming,
  DEFAULTS,
  type SlackAdapterOptions,
  type SlackConversation,
  type SlackMode,
} from './options.ts';
import { createReceiver, levelOf, listenHttp, onCommand, onPress } from './receive.ts';
import { ACTION_ID_PREFIX, SLACK_LIMITS, SLACK_MARKUP } from './render.ts';
import { registerSettings } from './settings-modal.ts';
import { type ReplyContext, SlackWebApi } from './web-api.ts';

export type { AckTiming, SlackAdapterOptions, SlackConversation, SlackMode } from './options.ts';
export { slackSettingsFrom } from './options.ts';

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

export class SlackAdapter implements ChatSurface {
  readonly surface = 'slack' as const;
  readonly markup = SLACK_MARKUP;
  readonly limits = SLACK_LIMITS;
  readonly mode: SlackMode;

  readonly #service: SlackConversation;
  readonly #log: Logger;
  readonly #api: SlackWebApi;
  readonly #app: App;
  readonly #options: SlackAdapterOptions;
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
    this.#api = new SlackWebApi(
      new webApi.WebClient(options.botToken, clientOptions),
      this.#log,
      options.apiTimeoutMs ?? DEFAULTS.apiTimeoutMs,
    );
    this.#receiverRef = createReceiver(options, this.mode, logger, logLevel, apiUrl);
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
      await this.#work(() =>
        // `/imagine history` (the word alone); anything else, "history of rome" too, is a prompt.
        isHistoryRequest(command.text)
          ? onHistoryCommand(command, options.history, this.#api, this.#log)
          : onCommand(this.#service, command, (where) => this.#reply(where)),
      );
    });
    this.#app.action<BlockAction<ButtonAction>>(
      { type: 'block_actions', action_id: new RegExp(`^${ACTION_ID_PREFIX}`, 'u') },
      async ({ ack, body, action, context }) => {
        await ack();
        this.#acked('action', context.receivedAt);
        await this.#work(() =>
          onPress(this.#service, this.#log, body, action, (where) => this.#reply(where)),
        );
      },
    );
    if (options.teamSettings !== undefined) {
      registerSettings(this.#app, {
        command: options.settingsCommand ?? '/imagine-settings',
        handler: options.teamSettings,
        log: this.#log,
      });
    }
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
        this.#server = await listenHttp(this.#receiverRef as HTTPReceiver, this.#options);
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
    await this.#api.update(target.channel, ts, view.text, view.controls);
  }

  /**
   * The grid file (caption as its comment), then the buttons right under it, then the status
   * message goes. Each visible step runs once, so a retry after a failure further on never posts
   * twice: through the delivery's `once` when the service passes it (survives restarts), else
   * remembered in this process.
   */
  async showGrid(target: JobTarget, view: GridView, steps?: Pick<DeliveryContext, 'once'>): Promise<string> {
    const once = (step: string, run: () => Promise<string>) =>
      steps !== undefined
        ? steps.once(`slack:${step}`, run)
        : this.#api.once(`${view.recordId}:${step}`, run);
    // Two steps, so a process killed between sharing the file and recording it can tell, when the
    // delivery resumes, whether the share happened: the bytes go up first (invisible; the file id is
    // recorded), then the share, skipped when files.info says the file is already in the channel.
    let uploadedNow = false;
    const fileId = await once('grid-upload', async () => {
      uploadedNow = true;
      return this.#api.uploadBytes(view.file, `Grid for ${view.recordId}`);
    });
    await once('grid-file', async () => {
      if (!uploadedNow && (await this.#api.isSharedIn(fileId, target.channel))) {
        this.#log.info(
          { recordId: view.recordId, fileId },
          'grid already shared before a restart; not sharing again',
        );
        return fileId;
      }
      return this.#api.share(target.channel, target.thread, fileId, view.file.name, view.text);
    });
    const controlsTs = await once('grid-controls', () =>
      this.#api.post(target.channel, target.thread, view.text, view.controls, { textInBlocks: false }),
    );
    const statusTs = target.messageRef.ts;
    if (statusTs !== undefined) await this.#api.deleteQuietly(target.channel, statusTs);
    return controlsTs;
  }

  async showFailure(target: JobTarget, view: FailureView): Promise<string> {
    return this.#replaceStatus(target, view.text);
  }

  async showCancelled(target: JobTarget, view: CancelledView): Promise<string> {
    return this.#replaceStatus(target, view.text);
  }

  #reply(context: ReplyContext): InteractionReply {
    return {
      // bolt's ack() already ran on receipt; Slack shows nothing for it.
      accept: async () => {},
      privately: (text) => this.#api.ephemeral(context, text),
      queued: async (view: QueuedView): Promise<MessageRef> => {
        const ts = await this.#api.post(context.channel, context.thread, view.text, view.controls);
        return { ts };
      },
      image: async (view: ImageView) => {
        await this.#api.upload(context.channel, context.thread, view.file, view.text, view.text);
      },
    };
  }

  /** Failure/cancel: the status message says so (buttons removed); posted anew if there is none. */
  async #replaceStatus(target: JobTarget, text: string): Promise<string> {
    const ts = target.messageRef.ts;
    if (ts !== undefined) {
      try {
        await this.#api.update(target.channel, ts, text, []);
        return ts;
      } catch (error) {
        if (slackErrorCode((error as { cause?: unknown }).cause) !== 'message_not_found') throw error;
      }
    }
    return this.#api.once(`${target.recordId}:status`, () =>
      this.#api.post(target.channel, target.thread, text, []),
    );
  }
}
