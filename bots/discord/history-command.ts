import {
  type ChatInputCommandInteraction,
  MessageFlags,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  SlashCommandBuilder,
} from 'discord.js';
import { UserError } from '../../core/errors.ts';
import {
  HISTORY_DEFAULT_LIMIT,
  HISTORY_MAX_LIMIT,
  type HistoryHandler,
  type HistoryView,
} from '../service/history.ts';
import { componentRows, DISCORD_MARKUP, MESSAGE_FLAGS, NO_MENTIONS } from './render.ts';

/**
 * `/imagine-history` on Discord: the requester's last grids in this channel, only for them
 * (ephemeral): the heading as the answer, then one ephemeral follow-up per grid with its line and the
 * grid's usual buttons (five rows fit two grids, so one message each). `/imagine` can't take it as a
 * subcommand: its `prompt` option is required, and a command with subcommands can't have options.
 */

export const HISTORY_COMMAND = 'imagine-history';

export function historyCommandDefinition(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName(HISTORY_COMMAND)
    .setDescription('Your last grids in this channel, with their buttons (only you see them)')
    .addIntegerOption((o) =>
      o
        .setName('count')
        .setDescription(`How many (default ${HISTORY_DEFAULT_LIMIT})`)
        .setMinValue(1)
        .setMaxValue(HISTORY_MAX_LIMIT),
    )
    .toJSON();
}

const PRIVATE = MessageFlags.Ephemeral | MESSAGE_FLAGS;

export async function onHistoryCommand(
  interaction: ChatInputCommandInteraction,
  handler: HistoryHandler,
): Promise<void> {
  await interaction.deferReply({ flags: MessageFlags.Ephemeral });
  const count = interaction.options.getInteger('count');
  let view: HistoryView;
  try {
    view = await handler(
      {
        surface: 'discord',
        user: interaction.user.id,
        ...(interaction.guildId === null ? {} : { workspace: interaction.guildId }),
        channel: interaction.channelId,
        ...(count === null ? {} : { limit: count }),
      },
      DISCORD_MARKUP,
    );
  } catch (error) {
    const message =
      error instanceof UserError
        ? error.message
        : 'Your history cannot be read right now; try again shortly.';
    await interaction.editReply({ content: DISCORD_MARKUP.escape(message), allowedMentions: NO_MENTIONS });
    throw error;
  }
  await interaction.editReply({ content: view.text, allowedMentions: NO_MENTIONS });
  for (const entry of view.entries) {
    await interaction.followUp({
      content: entry.text,
      components: componentRows(entry.controls),
      flags: PRIVATE,
      allowedMentions: NO_MENTIONS,
    });
  }
}
