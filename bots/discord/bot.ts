import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  Client,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  type Interaction,
  REST,
  RESTJSONErrorCodes,
  type RESTOptions,
  type RESTPostAPIChannelMessageResult,
  Routes,
} from 'discord.js';
import type { RequestLimits } from '../../core/config.ts';
import { PermanentDeliveryError } from '../../queue/index.ts';
import type { HistoryHandler } from '../service/history.ts';
import type { Conversation, ServiceLog } from '../service.ts';
import type {
  CancelledView,
  ChatSurface,
  FailureView,
  GridView,
  JobTarget,
  ProgressView,
  SurfaceLimits,
} from '../surface.ts';
import { registerCommands } from './commands.ts';
import { HISTORY_COMMAND, historyCommandDefinition, onHistoryCommand } from './history-command.ts';
import {
  DISCORD_LIMITS,
  DISCORD_MARKUP,
  isAgeRestricted,
  NO_MENTIONS,
  type RestMessage,
  restMessage,
} from './render.ts';
import { DiscordReply, InteractionWebhooks } from './reply.ts';
import {
  onSettingsCommand,
  SETTINGS_COMMAND,
  type SettingsHandler,
  settingsCommandDefinition,
} from './settings-command.ts';

/**
 * The Discord adapter: discord.js in, the conversation service deciding, Discord messages out.
 *
 * - `/imagine` is acknowledged with `deferReply` before any Redis round trip, then the placeholder is
 *   edited with seeds and queue position. Buttons are acknowledged with `deferUpdate`; what they
 *   create is a follow-up message.
 * - Results go through the interaction webhook (editing the job's message) while the interaction
 *   token is valid (15 min, less a margin), and as a channel message after that or when the webhook
 *   is gone. discord.js handles 429s; other failures throw so the durable delivery is retried.
 *
 * messageRef keys (stored with the job): `app`, `token` (interaction), `at` (ms it arrived),
 * `kind` (`original`: the job lives in the interaction's own response; `followup`: in a follow-up
 * message, `message`), `message` (id of the job's message once shown).
 */

export interface DiscordBotOptions {
  /** The conversation service (or a wrapper with the same `imagine`/`press`/`attach`). */
  readonly service: Conversation;
  readonly token: string;
  readonly appId: string;
  /** Register commands in this guild only; unset: globally. */
  readonly guildId?: string | undefined;
  /** REST base including `/api` (`https://discord.com/api`); the gateway is discovered through it. */
  readonly apiUrl: string;
  /** Slash-command option ranges (max steps…). */
  readonly limits: RequestLimits;
  /** @defaultValue a silent logger */
  readonly log?: ServiceLog;
  /** @defaultValue true */
  readonly registerCommands?: boolean;
  /**
   * How long an interaction token is trusted for webhook posts. Discord's is 15 min; the margin covers
   * clock skew and a slow upload. @defaultValue 14 min
   */
  readonly interactionTokenTtlMs?: number;
  /** @defaultValue Date.now */
  readonly now?: () => number;
  /**
   * Largest attachment to send; bigger grids go as WebP/JPEG. Discord's base limit; boosted servers
   * accept more, but results may land in any channel. @defaultValue 10 MiB
   */
  readonly maxUploadBytes?: number;
  /** `/imagine-settings`: registered and answered only when given (ConversationService.teamSettings). */
  readonly teamSettings?: SettingsHandler;
  /** `/imagine-history`: registered and answered only when given (ConversationService.history). */
  readonly history?: HistoryHandler;
}

const DEFAULTS = {
  registerCommands: true,
  interactionTokenTtlMs: 14 * 60_000,
} as const satisfies Partial<DiscordBotOptions>;

/** The job's message or its webhook is gone (deleted, token expired): post in the channel instead. */
const GONE_CODES: ReadonlySet<number> = new Set([
  RESTJSONErrorCodes.UnknownMessage,
  RESTJSONErrorCodes.UnknownWebhook,
  RESTJSONErrorCodes.UnknownInteraction,
  RESTJSONErrorCodes.InvalidWebhookToken,
]);
/** No retry will post in that channel. */
const CHANNEL_LOST_CODES: ReadonlySet<number> = new Set([
  RESTJSONErrorCodes.UnknownChannel,
  RESTJSONErrorCodes.MissingAccess,
  RESTJSONErrorCodes.MissingPermissions,
]);

/** @discordjs/rest's `makeRequest` on Node's built-in fetch (its types differ only nominally). */
const fetchRequest = ((url: string, init: RequestInit) =>
  fetch(url, init)) as unknown as RESTOptions['makeRequest'];

const SILENT: ServiceLog = { debug() {}, info() {}, warn() {}, error() {} };

export class DiscordBot {
  readonly client: Client;
  readonly surface: DiscordSurface;
  /** REST for routes that carry an interaction token; see `interactionRest`. */
  readonly webhooks: InteractionWebhooks;
  readonly #options: DiscordBotOptions;
  readonly #log: ServiceLog;
  #detach: (() => Promise<void>) | undefined;

  constructor(options: DiscordBotOptions) {
    this.#options = options;
    this.#log = options.log ?? SILENT;
    this.client = new Client({
      intents: [GatewayIntentBits.Guilds],
      // Node's fetch, not @discordjs/rest's bundled undici: importing @slack/bolt loads undici 7, which
      // replaces the process-wide dispatcher and breaks the bundled client's multipart uploads.
      rest: { api: options.apiUrl, makeRequest: fetchRequest },
      // The default for anything discord.js sends itself; each message also says so explicitly.
      allowedMentions: NO_MENTIONS,
    });
    this.webhooks = new InteractionWebhooks(interactionRest(options.apiUrl));
    this.surface = new DiscordSurface(this.client, this.webhooks, {
      ttlMs: options.interactionTokenTtlMs ?? DEFAULTS.interactionTokenTtlMs,
      now: options.now ?? Date.now,
      log: this.#log,
      limits: { ...DISCORD_LIMITS, maxUploadBytes: options.maxUploadBytes ?? DISCORD_LIMITS.maxUploadBytes },
    });
    this.client.on(Events.InteractionCreate, (interaction) => this.#onInteraction(interaction));
    this.client.on(Events.Error, (error) => this.#log.error({ err: error }, 'discord client error'));
    this.client.on(Events.ShardDisconnect, (event, shard) =>
      this.#log.warn({ code: event.code, shard }, 'discord gateway disconnected'),
    );
  }

  /** Registers commands (idempotent), subscribes to deliveries, logs in and waits until ready. */
  async start(): Promise<void> {
    this.client.rest.setToken(this.#options.token);
    if (this.#options.registerCommands ?? DEFAULTS.registerCommands) {
      const commands = await registerCommands(
        this.client.rest,
        this.#options.appId,
        this.#options.guildId,
        this.#options.limits,
        [
          ...(this.#options.teamSettings === undefined
            ? []
            : [settingsCommandDefinition(this.#options.limits)]),
          ...(this.#options.history === undefined ? [] : [historyCommandDefinition()]),
        ],
      );
      this.#log.info(
        { commands: commands.map((c) => c.name), guild: this.#options.guildId ?? 'global' },
        'discord commands registered',
      );
    }
    // Deliveries only need REST, so they may start before the gateway is up.
    this.#detach = this.#options.service.attach(this.surface);
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(this.#options.token);
    await ready;
    this.#log.info({ user: this.client.user?.tag }, 'discord bot ready');
  }

  async stop(): Promise<void> {
    const detach = this.#detach;
    this.#detach = undefined;
    await detach?.();
    await this.client.destroy();
    this.webhooks.rest.clearHashSweeper();
    this.webhooks.rest.clearHandlerSweeper();
  }

  #onInteraction(interaction: Interaction): void {
    const settings = this.#options.teamSettings;
    const history = this.#options.history;
    const handled =
      interaction.isChatInputCommand() && interaction.commandName === HISTORY_COMMAND && history !== undefined
        ? onHistoryCommand(interaction, history)
        : interaction.isChatInputCommand() && interaction.commandName === 'imagine'
          ? this.#onImagine(interaction)
          : interaction.isChatInputCommand() &&
              interaction.commandName === SETTINGS_COMMAND &&
              settings !== undefined
            ? onSettingsCommand(interaction, settings)
            : interaction.isButton()
              ? this.#onButton(interaction)
              : undefined;
    handled?.catch((error: unknown) =>
      this.#log.error({ err: error, interactionId: interaction.id }, 'discord interaction handler failed'),
    );
  }

  async #onImagine(interaction: ChatInputCommandInteraction): Promise<void> {
    // Raw values, whatever type an older registration gave an option: the service validates them all
    // (discord.js' typed getters would throw on a type mismatch instead of telling the user).
    const raw = new Map(interaction.options.data.map((o) => [o.name, o.value]));
    const value = (name: string): string | number | undefined => {
      const v = raw.get(name);
      return typeof v === 'string' || typeof v === 'number' ? v : undefined;
    };
    const text = (name: string): string | undefined => {
      const v = value(name);
      return v === undefined ? undefined : String(v);
    };
    const options = {
      prompt: text('prompt') ?? '',
      negative: text('negative'),
      seed: value('seed'),
      steps: value('steps'),
      guidance: value('guidance'),
      sampler: text('sampler'),
      aspect: text('aspect'),
      size: text('size'),
      model: text('model'),
    };
    await this.#options.service.imagine(
      { ...this.#actionBase(interaction, 'original'), options },
      new DiscordReply({ kind: 'original', interaction }, this.webhooks),
    );
  }

  async #onButton(interaction: ButtonInteraction): Promise<void> {
    await this.#options.service.press(
      { ...this.#actionBase(interaction, 'followup'), controlId: interaction.customId },
      new DiscordReply({ kind: 'followup', interaction }, this.webhooks),
    );
  }

  #actionBase(interaction: ChatInputCommandInteraction | ButtonInteraction, kind: 'original' | 'followup') {
    const now = (this.#options.now ?? Date.now)();
    return {
      surface: 'discord' as const,
      user: interaction.user.id,
      userName: interaction.user.globalName ?? interaction.user.username,
      channel: interaction.channelId,
      ...(interaction.guildId === null ? {} : { workspace: interaction.guildId }),
      // Age-restricted (NSFW) channel, from the channel the interaction carries: the NSFW policy depends on it.
      ...(isAgeRestricted(interaction.channel) ? { ageRestricted: true } : {}),
      interactionId: interaction.id,
      messageRef: { app: interaction.applicationId, token: interaction.token, at: String(now), kind },
    };
  }
}

/**
 * A REST client for the interaction-token routes (follow-ups, edits of responses): Discord does not
 * count interaction endpoints against the bot's 50 requests/s global limit, but discord.js counts
 * every non-callback route. A separate client keeps a burst of queued-message edits from delaying
 * channel traffic and results; per-route buckets (per token) still come from Discord's headers.
 */
function interactionRest(apiUrl: string): REST {
  return new REST({ api: apiUrl, globalRequestsPerSecond: 1_000_000, makeRequest: fetchRequest });
}

/** Deliveries, through stateless REST calls: they work after a restart from the stored messageRef alone. */
export class DiscordSurface implements ChatSurface {
  readonly surface = 'discord' as const;
  readonly markup = DISCORD_MARKUP;
  readonly limits: SurfaceLimits;
  readonly #client: Client;
  readonly #webhooks: InteractionWebhooks;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #log: ServiceLog;

  constructor(
    client: Client,
    webhooks: InteractionWebhooks,
    options: { ttlMs: number; now: () => number; log: ServiceLog; limits: SurfaceLimits },
  ) {
    this.limits = options.limits;
    this.#client = client;
    this.#webhooks = webhooks;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now;
    this.#log = options.log;
  }

  async showProgress(target: JobTarget, view: ProgressView): Promise<void> {
    const webhook = this.#webhook(target);
    // After the token expires the job's message can't be edited; progress is not worth a new message.
    if (webhook === undefined || webhook.messageId === undefined) return;
    const preview = view.preview === undefined ? [] : [view.preview];
    await this.#webhooks.edit(
      webhook.app,
      webhook.token,
      webhook.messageId,
      restMessage(view.text, view.controls, preview, []),
    );
  }

  showGrid(target: JobTarget, view: GridView): Promise<string> {
    return this.#show(target, restMessage(view.text, view.controls, [view.file], [view.owner]));
  }

  showFailure(target: JobTarget, view: FailureView): Promise<string> {
    return this.#show(target, restMessage(view.text, [], [], [target.owner]));
  }

  showCancelled(target: JobTarget, view: CancelledView): Promise<string> {
    return this.#show(target, restMessage(view.text, [], [], []));
  }

  /** Replaces the job's message through the webhook, or posts in the channel when that is no longer possible. */
  async #show(target: JobTarget, message: RestMessage): Promise<string> {
    const webhook = this.#webhook(target);
    if (webhook !== undefined) {
      try {
        const sent =
          webhook.messageId === undefined
            ? await this.#webhooks.post(webhook.app, webhook.token, message)
            : await this.#webhooks.edit(webhook.app, webhook.token, webhook.messageId, message);
        return sent.id;
      } catch (error) {
        if (!(error instanceof DiscordAPIError && GONE_CODES.has(Number(error.code)))) throw error;
        this.#log.info(
          { code: error.code, recordId: target.recordId },
          'interaction webhook gone; posting in the channel',
        );
      }
    }
    const reference = target.messageRef.message;
    const body =
      reference === undefined
        ? message.body
        : {
            ...message.body,
            message_reference: { message_id: reference, fail_if_not_exists: false as const },
          };
    // Not an interaction route: a channel post needs the bot's token, so it goes through the client's
    // REST, which counts it against the bot's global limit as Discord does.
    try {
      const sent = (await this.#client.rest.post(Routes.channelMessages(target.channel), {
        body,
        files: message.files,
      })) as RESTPostAPIChannelMessageResult;
      return sent.id;
    } catch (error) {
      if (error instanceof DiscordAPIError && CHANNEL_LOST_CODES.has(Number(error.code))) {
        throw new PermanentDeliveryError(`${error.name}: ${error.message}`, { cause: error });
      }
      throw error;
    }
  }

  /** The interaction webhook, while its token is still trusted; and which message of it is the job's. */
  #webhook(target: JobTarget): { app: string; token: string; messageId: string | undefined } | undefined {
    const { app, token, at, kind, message } = target.messageRef;
    if (app === undefined || token === undefined) return undefined;
    const since = Number(at ?? target.requestedAt);
    if (!Number.isFinite(since) || this.#now() - since > this.#ttlMs) return undefined;
    // A command's job lives in the interaction's own response. A button's job lives in its follow-up;
    // never '@original' there, which is the grid whose button was pressed.
    const messageId = message ?? (kind === 'original' ? '@original' : undefined);
    return { app, token, messageId };
  }
}
