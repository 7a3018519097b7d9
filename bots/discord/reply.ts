import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  MessageFlags,
  type REST,
  type RESTPostAPIChannelMessageResult,
  Routes,
} from 'discord.js';
import type { ImageView, InteractionReply, MessageRef, QueuedView } from '../surface.ts';
import {
  literal,
  MESSAGE_FLAGS,
  NO_MENTIONS,
  privateMessage,
  type RestMessage,
  restMessage,
} from './render.ts';

/**
 * Stateless calls on an interaction's webhook: they work from a stored token after any restart.
 * Everything the bot sends with an interaction token (answers, queued messages, progress, results)
 * goes through this one client; see `interactionRest` in bot.ts for why it is separate.
 */
export class InteractionWebhooks {
  readonly rest: REST;

  constructor(rest: REST) {
    this.rest = rest;
  }

  async post(app: string, token: string, message: RestMessage): Promise<RESTPostAPIChannelMessageResult> {
    return (await this.rest.post(Routes.webhook(app, token), {
      body: message.body,
      files: message.files,
      auth: false,
    })) as RESTPostAPIChannelMessageResult;
  }

  async edit(
    app: string,
    token: string,
    messageId: string,
    message: RestMessage,
  ): Promise<RESTPostAPIChannelMessageResult> {
    return (await this.rest.patch(Routes.webhookMessage(app, token, messageId), {
      body: message.body,
      files: message.files,
      auth: false,
    })) as RESTPostAPIChannelMessageResult;
  }

  async delete(app: string, token: string, messageId: string): Promise<void> {
    await this.rest.delete(Routes.webhookMessage(app, token, messageId), { auth: false });
  }
}

/**
 * The interaction being answered, and where the job it starts is shown (the `kind` stored in its
 * messageRef): a command's job in the command's own response (`original`); a press's job in a
 * follow-up (`followup`), since the pressed message (a grid) must stay as it is.
 */
export type Answering =
  | { readonly kind: 'original'; readonly interaction: ChatInputCommandInteraction }
  | { readonly kind: 'followup'; readonly interaction: ButtonInteraction };

/**
 * Answers to one interaction: the acknowledgement (and a refusal before it) is discord.js's
 * interaction callback; everything after it goes through the webhook.
 */
export class DiscordReply implements InteractionReply {
  readonly #answering: Answering;
  readonly #webhooks: InteractionWebhooks;
  /** Whether the job's message was shown; until then a command's response is the "thinking…" placeholder. */
  #shown = false;

  constructor(answering: Answering, webhooks: InteractionWebhooks) {
    this.#answering = answering;
    this.#webhooks = webhooks;
  }

  async accept(): Promise<void> {
    const a = this.#answering;
    // A command's deferral shows a public placeholder for its response; a press's shows nothing.
    if (a.kind === 'original') await a.interaction.deferReply();
    else await a.interaction.deferUpdate();
  }

  async privately(text: string): Promise<void> {
    const { kind, interaction: i } = this.#answering;
    if (!i.deferred && !i.replied) {
      await i.reply({
        content: literal(text),
        flags: MessageFlags.Ephemeral | MESSAGE_FLAGS,
        allowedMentions: NO_MENTIONS,
      });
      return;
    }
    // The public "thinking…" placeholder would linger: remove it, then answer privately.
    if (kind === 'original' && !this.#shown)
      await this.#webhooks.delete(i.applicationId, i.token, '@original').catch(() => undefined);
    await this.#webhooks.post(i.applicationId, i.token, privateMessage(text));
  }

  async queued(view: QueuedView): Promise<MessageRef | undefined> {
    const { kind, interaction: i } = this.#answering;
    const message = restMessage(view.text, view.controls, [], []);
    const sent =
      kind === 'original'
        ? await this.#webhooks.edit(i.applicationId, i.token, '@original', message)
        : await this.#webhooks.post(i.applicationId, i.token, message);
    this.#shown = true;
    return { message: sent.id };
  }

  async image(view: ImageView): Promise<void> {
    const i = this.#answering.interaction;
    await this.#webhooks.post(
      i.applicationId,
      i.token,
      restMessage(view.text, view.controls, [view.file], []),
    );
  }
}
