import {
  type REST,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  Routes,
  SlashCommandBuilder,
} from 'discord.js';
import type { RequestLimits } from '../../core/config.ts';
import { DEFAULT_IMAGE_STRENGTH } from '../../core/image-prompt.ts';
import { MAX_PROMPT_CHARS, servedModels } from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';
import { MAX_SEED } from '../../core/seeds.ts';

/** Aspect ratios offered as choices; `--ar`-style free text stays available on Slack and the web. */
export const ASPECT_CHOICES = ['1:1', '3:2', '2:3', '4:3', '3:4', '16:9', '9:16'] as const;

/** The `/imagine` slash command. Validation beyond types and ranges is the service's (same rules everywhere). */
export function imagineCommand(limits: RequestLimits): RESTPostAPIChatInputApplicationCommandsJSONBody {
  // Registered once for every model and channel: only a deployment-wide DEFAULT_* is one number.
  const env = limits.envDefaults ?? {};
  const byDefault = (value: string | number | undefined) =>
    value === undefined ? 'set by the channel or the model' : String(value);
  const command = new SlashCommandBuilder()
    .setName('imagine')
    .setDescription('Draw a 2×2 grid of images from a prompt')
    .addStringOption((o) =>
      o.setName('prompt').setDescription('What to draw').setRequired(true).setMaxLength(MAX_PROMPT_CHARS),
    )
    .addStringOption((o) =>
      o.setName('negative').setDescription('What to keep out of the image').setMaxLength(MAX_PROMPT_CHARS),
    )
    .addIntegerOption((o) =>
      o
        .setName('seed')
        .setDescription('Base seed; image k uses seed + k')
        .setMinValue(0)
        .setMaxValue(MAX_SEED),
    )
    .addIntegerOption((o) =>
      o
        .setName('steps')
        .setDescription(`Denoising steps (default ${byDefault(env.steps)})`)
        .setMinValue(1)
        .setMaxValue(limits.maxSteps),
    )
    .addNumberOption((o) =>
      o
        .setName('guidance')
        .setDescription(`How closely to follow the prompt (CFG, default ${byDefault(env.guidance)})`)
        .setMinValue(0)
        .setMaxValue(30),
    )
    .addStringOption((o) =>
      o
        .setName('sampler')
        .setDescription(`Sampler (default ${byDefault(env.sampler)})`)
        .addChoices(...SAMPLERS.map((s) => ({ name: s, value: s }))),
    )
    .addStringOption((o) =>
      o
        .setName('aspect')
        .setDescription('Aspect ratio width:height')
        .addChoices(...ASPECT_CHOICES.map((a) => ({ name: a, value: a }))),
    )
    .addStringOption((o) =>
      o
        .setName('size')
        .setDescription(
          `Size WxH, multiples of 8 (default ${byDefault(env.width === undefined ? undefined : `${env.width}x${env.height}`)})`,
        )
        .setMaxLength(11),
    )
    .addAttachmentOption((o) =>
      o.setName('image').setDescription('Start from this picture (PNG, JPEG or WebP, up to 20 MiB)'),
    )
    .addNumberOption((o) =>
      o
        .setName('strength')
        .setDescription(`With an image: how much of it to repaint (default ${DEFAULT_IMAGE_STRENGTH})`)
        .setMinValue(0.01)
        .setMaxValue(1),
    );
  // Offered only when there is a choice; the first model is the default (25 at most, MODELS allows no more).
  const models = servedModels(limits);
  if (models.length > 1) {
    command.addStringOption((o) =>
      o
        .setName('model')
        .setDescription(`Model (default ${models[0]})`)
        .addChoices(...models.map((m) => ({ name: m, value: m }))),
    );
  }
  return command.toJSON();
}

/**
 * Registers the commands with a bulk overwrite (PUT), which is idempotent: running it at every start
 * leaves one `/imagine`. Guild commands update instantly; global ones can take a while to show.
 */
export async function registerCommands(
  rest: REST,
  appId: string,
  guildId: string | undefined,
  limits: RequestLimits,
  /** More commands to register with `/imagine` (e.g. `/imagine-settings`). */
  extra: readonly RESTPostAPIChatInputApplicationCommandsJSONBody[] = [],
): Promise<{ id: string; name: string }[]> {
  const route =
    guildId === undefined
      ? Routes.applicationCommands(appId)
      : Routes.applicationGuildCommands(appId, guildId);
  return (await rest.put(route, { body: [imagineCommand(limits), ...extra] })) as {
    id: string;
    name: string;
  }[];
}
