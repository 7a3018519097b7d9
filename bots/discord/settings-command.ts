import {
  type ChatInputCommandInteraction,
  MessageFlags,
  PermissionFlagsBits,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  SlashCommandBuilder,
  type SlashCommandSubcommandBuilder,
} from 'discord.js';
import type { RequestLimits } from '../../core/config.ts';
import { NSFW_POLICIES } from '../../core/nsfw.ts';
import { MAX_PROMPT_CHARS } from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';
import { MAX_DAILY_QUOTA, type TeamSettingKey } from '../../core/team-settings.ts';
import {
  type SettingsAction,
  type SettingsAnswer,
  type SettingsRequest,
  settingsLines,
} from '../service/settings-command.ts';
import { ASPECT_CHOICES } from './commands.ts';
import { DISCORD_MARKUP, isAgeRestricted, NO_MENTIONS } from './render.ts';

/**
 * `/imagine-settings show|set|reset` on Discord. The guild scope needs Manage Server, the channel
 * scope Manage Channels (read from the interaction's member permissions, which Discord computes
 * for the channel); the service also lets listed bot admins in. Answers are ephemeral.
 */

export const SETTINGS_COMMAND = 'imagine-settings';

/** The service's handler (ConversationService.teamSettings). */
export type SettingsHandler = (request: SettingsRequest) => Promise<SettingsAnswer>;

/** Discord option names (snake case, Discord's habit) → setting keys. */
const OPTION_KEYS = {
  suffixes: 'suffixes',
  negative: 'negative',
  sampler: 'sampler',
  steps: 'steps',
  guidance: 'guidance',
  aspect: 'aspect',
  model: 'model',
  owner_only_buttons: 'ownerOnlyButtons',
  banned_words: 'bannedWords',
  daily_quota: 'dailyQuota',
  admins: 'admins',
  nsfw: 'nsfw',
} as const satisfies Record<string, TeamSettingKey>;

const scopeOption = (s: SlashCommandSubcommandBuilder, required: boolean) =>
  s.addStringOption((o) =>
    o
      .setName('scope')
      .setDescription('This server, or only this channel (default: channel)')
      .setRequired(required)
      .addChoices({ name: 'server', value: 'guild' }, { name: 'channel', value: 'channel' }),
  );

export function settingsCommandDefinition(
  limits: RequestLimits,
): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName(SETTINGS_COMMAND)
    .setDescription("Show or change the bot's settings for this server or channel")
    .setDMPermission(false)
    .addSubcommand((s) =>
      scopeOption(s.setName('show').setDescription('Show the settings that apply here'), false),
    )
    .addSubcommand((s) =>
      scopeOption(s.setName('set').setDescription('Change settings (Manage Server / Manage Channels)'), true)
        .addStringOption((o) =>
          o.setName('suffixes').setDescription('Refine suffixes, 1 to 4, separated by |').setMaxLength(410),
        )
        .addStringOption((o) =>
          o.setName('negative').setDescription('Default negative prompt').setMaxLength(MAX_PROMPT_CHARS),
        )
        .addStringOption((o) =>
          o
            .setName('sampler')
            .setDescription('Default sampler')
            .addChoices(...SAMPLERS.map((v) => ({ name: v, value: v }))),
        )
        .addIntegerOption((o) =>
          o.setName('steps').setDescription('Default steps').setMinValue(1).setMaxValue(limits.maxSteps),
        )
        .addNumberOption((o) =>
          o.setName('guidance').setDescription('Default guidance (CFG)').setMinValue(0).setMaxValue(30),
        )
        .addStringOption((o) =>
          o
            .setName('aspect')
            .setDescription('Default aspect ratio')
            .addChoices(...ASPECT_CHOICES.map((a) => ({ name: a, value: a }))),
        )
        .addStringOption((o) => o.setName('model').setDescription('Default model name').setMaxLength(100))
        .addBooleanOption((o) =>
          o.setName('owner_only_buttons').setDescription("Only a grid's requester may press its buttons"),
        )
        .addStringOption((o) =>
          o
            .setName('banned_words')
            .setDescription('Words refused in prompts, separated by commas (or "none")')
            .setMaxLength(2000),
        )
        .addIntegerOption((o) =>
          o
            .setName('daily_quota')
            .setDescription('Images per user per day (0 = no quota)')
            .setMinValue(0)
            .setMaxValue(MAX_DAILY_QUOTA),
        )
        .addStringOption((o) =>
          o
            .setName('admins')
            .setDescription(
              'Bot admins here: user mentions or ids, separated by commas or spaces (or "none")',
            )
            .setMaxLength(2000),
        )
        .addStringOption((o) =>
          o
            .setName('nsfw')
            .setDescription('Images the safety checker flags (allow: age-restricted channels only)')
            .addChoices(...NSFW_POLICIES.map((v) => ({ name: v, value: v }))),
        ),
    )
    .addSubcommand((s) =>
      scopeOption(
        s.setName('reset').setDescription('Drop settings so the defaults apply again'),
        true,
      ).addStringOption((o) =>
        o
          .setName('setting')
          .setDescription('Which one (default: all)')
          .addChoices(...Object.keys(OPTION_KEYS).map((k) => ({ name: k, value: k }))),
      ),
    )
    .toJSON();
}

/** Turns the interaction's options into the service's action (raw values: the service validates). */
function actionOf(interaction: ChatInputCommandInteraction): SettingsAction | string {
  const sub = interaction.options.getSubcommand(false);
  if (sub === 'show') return { kind: 'show' };
  const given = new Map(interaction.options.data[0]?.options?.map((o) => [o.name, o.value]) ?? []);
  if (sub === 'reset') {
    const name = given.get('setting');
    if (name === undefined) return { kind: 'reset', keys: 'all' };
    const key = OPTION_KEYS[String(name) as keyof typeof OPTION_KEYS];
    return key === undefined ? `Unknown setting "${String(name)}".` : { kind: 'reset', keys: [key] };
  }
  if (sub !== 'set') return 'Use /imagine-settings show, set or reset.';
  const patch: Record<string, unknown> = {};
  for (const [option, key] of Object.entries(OPTION_KEYS)) {
    const value = given.get(option);
    if (value === undefined) continue;
    patch[key] =
      key === 'suffixes'
        ? String(value).split('|')
        : key === 'bannedWords'
          ? list(String(value), /,/u)
          : key === 'admins'
            ? list(String(value), /[\s,]+/u).map((id) => `discord:${id.replace(/^<@!?|>$/gu, '')}`)
            : value;
  }
  if (Object.keys(patch).length === 0) {
    return `Give at least one setting to change: ${Object.keys(OPTION_KEYS).join(', ')}.`;
  }
  return { kind: 'set', patch };
}

function list(text: string, separator: RegExp): string[] {
  if (text.trim().toLowerCase() === 'none') return [];
  return text
    .split(separator)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const MAX_CONTENT = 2000;

function render(answer: SettingsAnswer, scope: 'workspace' | 'channel', action: SettingsAction): string {
  if (!answer.ok) return DISCORD_MARKUP.escape(answer.message);
  const m = DISCORD_MARKUP;
  const head = action.kind === 'set' ? 'Saved. ' : action.kind === 'reset' ? 'Reset. ' : '';
  const lines = settingsLines(answer).map(
    (l) =>
      `${m.code(l.key)}: ${m.escape(l.value)}${l.here ? ` (set for this ${scope === 'workspace' ? 'server' : 'channel'})` : ''}`,
  );
  const text = `${head}${m.bold('Settings that apply in this channel')}\n${lines.join('\n')}`;
  return text.length <= MAX_CONTENT ? text : `${text.slice(0, MAX_CONTENT - 1)}…`;
}

export async function onSettingsCommand(
  interaction: ChatInputCommandInteraction,
  handler: SettingsHandler,
): Promise<void> {
  const reply = (content: string) =>
    interaction.deferred
      ? interaction.editReply({ content, allowedMentions: NO_MENTIONS })
      : interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
  if (!interaction.inGuild()) {
    await reply('Settings belong to a server: use /imagine-settings in a server channel.');
    return;
  }
  const action = actionOf(interaction);
  if (typeof action === 'string') {
    await reply(DISCORD_MARKUP.escape(action));
    return;
  }
  const scope = interaction.options.getString('scope') === 'guild' ? 'workspace' : 'channel';
  const permissions = interaction.memberPermissions;
  const platformAdmin =
    scope === 'workspace'
      ? permissions.has(PermissionFlagsBits.ManageGuild)
      : permissions.has(PermissionFlagsBits.ManageChannels);
  await interaction.deferReply({ flags: MessageFlags.Ephemeral });
  const answer = await handler({
    surface: 'discord',
    user: interaction.user.id,
    workspace: interaction.guildId,
    channel: interaction.channelId,
    ...(isAgeRestricted(interaction.channel) ? { ageRestricted: true } : {}),
    scope,
    platformAdmin,
    action,
  }).catch(
    (): SettingsAnswer => ({
      ok: false,
      message: 'The settings could not be read or saved right now; please try again.',
    }),
  );
  await reply(render(answer, scope, action));
}
