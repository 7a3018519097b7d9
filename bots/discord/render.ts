import {
  ActionRowBuilder,
  type APIActionRowComponent,
  type APIComponentInMessageActionRow,
  ButtonBuilder,
  ButtonStyle,
  MessageFlags,
} from 'discord.js';
import type { Attachment, ControlRows, Markup, SurfaceLimits } from '../surface.ts';

/** Discord's attachment limit for bots without boosts, and its message content limit. */
export const DISCORD_LIMITS: SurfaceLimits = {
  maxUploadBytes: 10 * 1024 * 1024,
  maxTextLength: 2000,
  progressPreviews: true,
};

/**
 * User text shown exactly as typed. Discord's markdown shows a backslash-escaped ASCII punctuation mark
 * as the mark itself, so escaping every one of them leaves nothing that can format (bold, headings,
 * quotes, spoilers, code), link (masked `[text](url)` or bare `https://`, which no longer parses), mention
 * (`<@id>`, `@everyone`), or turn into emoji and timestamps. discord.js's `escapeMarkdown` leaves
 * masked links, headings and mentions alone, hence this.
 */
export function literal(text: string): string {
  return text.replace(/[!-/:-@[-`{-~]/gu, '\\$&');
}

/**
 * Flags on every message the bot sends or edits: no link previews. Escaping already stops prompts from
 * forming links; this also keeps Discord's server-side unfurler from embedding anything it finds.
 * Attachments (the grid) are not embeds and still show.
 */
export const MESSAGE_FLAGS = MessageFlags.SuppressEmbeds;

/** Mentions parsed from nobody's text: a prompt's `@everyone`, `<@id>` or `<@&role>` never pings. */
export const NO_MENTIONS = { parse: [] as [] };

export const DISCORD_MARKUP: Markup = {
  bold: (text) => `**${text}**`,
  code: (text) => (text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``),
  mention: (user) => (/^\d+$/u.test(user) ? `<@${user}>` : `@${literal(user)}`),
  escape: literal,
};

const STYLES = {
  primary: ButtonStyle.Primary,
  secondary: ButtonStyle.Secondary,
  danger: ButtonStyle.Danger,
} as const;

export function componentRows(rows: ControlRows): APIActionRowComponent<APIComponentInMessageActionRow>[] {
  return rows
    .filter((row) => row.length > 0)
    .map((row) =>
      new ActionRowBuilder<ButtonBuilder>()
        .addComponents(
          row.map((c) => new ButtonBuilder().setCustomId(c.id).setLabel(c.label).setStyle(STYLES[c.style])),
        )
        .toJSON(),
    ) as APIActionRowComponent<APIComponentInMessageActionRow>[];
}

/** Discord hides an attachment behind a spoiler when its file name starts with `SPOILER_`. */
function fileName(file: Attachment): string {
  return file.spoiler === true ? `SPOILER_${file.name}` : file.name;
}

/** A message body for REST (webhook edits, channel posts) with its files, attachments replaced. */
export interface RestMessage {
  readonly body: {
    content: string;
    flags: number;
    components: APIActionRowComponent<APIComponentInMessageActionRow>[];
    attachments?: { id: number; filename: string }[];
    allowed_mentions: { parse: []; users: string[] };
    message_reference?: { message_id: string; fail_if_not_exists: false };
  };
  readonly files: { name: string; data: Buffer; contentType: string }[];
}

/**
 * Builds a message. `attachments` lists exactly the new files, so an edit replaces what the message
 * showed before (a progress preview by the grid). Only the named users can be pinged: prompts may
 * contain `@everyone` or role mentions, which must stay text.
 */
export function restMessage(
  content: string,
  rows: ControlRows,
  files: readonly Attachment[],
  mention: readonly string[],
): RestMessage {
  return {
    body: {
      content,
      flags: MESSAGE_FLAGS,
      components: componentRows(rows),
      attachments: files.map((f, id) => ({ id, filename: fileName(f) })),
      allowed_mentions: { ...NO_MENTIONS, users: mention.filter((u) => /^\d+$/u.test(u)) },
    },
    files: files.map((f) => ({ name: fileName(f), data: f.data, contentType: f.contentType })),
  };
}

/** A reply only its user sees, with the text shown exactly as given (no markup, no pings). */
export function privateMessage(text: string): RestMessage {
  const message = restMessage(literal(text), [], [], []);
  return { ...message, body: { ...message.body, flags: MessageFlags.Ephemeral | MESSAGE_FLAGS } };
}

/** Whether a channel is marked age-restricted on Discord (threads: their parent's flag). */
export function isAgeRestricted(channel: unknown): boolean {
  const c = channel as { nsfw?: unknown; parent?: { nsfw?: unknown } | null } | null | undefined;
  return c?.nsfw === true || c?.parent?.nsfw === true;
}
