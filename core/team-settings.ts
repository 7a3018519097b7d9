import { z } from 'zod';
import type { RequestLimits } from './config.ts';
import { ErrorCode, UserError } from './errors.ts';
import { type DefaultsLayer, fitToPixels, resolveDefaults } from './generation-defaults.ts';
import { NSFW_POLICIES, type NsfwPolicy } from './nsfw.ts';
import { MAX_PROMPT_CHARS, type Result, sizeForAspect } from './request.ts';
import { SAMPLERS, type SamplerName } from './samplers.ts';
import { GRID_SIZE } from './seeds.ts';

/**
 * Team settings: what a workspace (Slack team, Discord guild, the playground) or one of its channels
 * sets for itself. The environment gives the defaults under both scopes; a channel's value overrides
 * its workspace's, field by field. Pure: the store (bots/settings/) keeps the overrides in Redis.
 */

export const SETTING_SCOPES = ['workspace', 'channel'] as const;
export type SettingScope = (typeof SETTING_SCOPES)[number];

/** Longest suffix a team may set (the issue's limit; the environment's SUFFIXES allows 200). */
export const MAX_TEAM_SUFFIX_CHARS = 100;
/** Banned words per scope, and the length of each: enough for a real list, bounded for the match. */
export const MAX_BANNED_WORDS = 200;
export const MAX_BANNED_WORD_CHARS = 50;
/** Admins listed per scope. */
export const MAX_ADMINS = 100;
/** Most images a per-user daily quota may allow. */
export const MAX_DAILY_QUOTA = 100_000;

const bannedWord = z
  .string()
  .trim()
  .min(1, 'a word (not empty)')
  .max(MAX_BANNED_WORD_CHARS, `at most ${MAX_BANNED_WORD_CHARS} characters`)
  .refine((w) => normaliseWords(w).length > 0, 'a word with at least one letter or digit');

/**
 * One scope's overrides. Every field is optional: absent means "inherit". `dailyQuota` is in images
 * per user per UTC day; 0 means no quota.
 */
export const teamSettingsSchema = z
  .object({
    suffixes: z
      .array(z.string().max(MAX_TEAM_SUFFIX_CHARS, `at most ${MAX_TEAM_SUFFIX_CHARS} characters`))
      .min(1, `a list of 1 to ${GRID_SIZE} suffixes`)
      .max(GRID_SIZE, `a list of 1 to ${GRID_SIZE} suffixes`),
    negative: z.string().max(MAX_PROMPT_CHARS, `at most ${MAX_PROMPT_CHARS} characters`),
    sampler: z.enum(SAMPLERS, { error: `one of ${SAMPLERS.join(', ')}` }),
    steps: z.number({ error: 'a whole number' }).int('a whole number').min(1, 'at least 1'),
    guidance: z.number({ error: 'a number from 0 to 30' }).min(0, 'at least 0').max(30, 'at most 30'),
    /** `W:H`, checked against the deployment's pixel limit by `checkTeamSettings`. */
    aspect: z.string().max(20, 'like 3:2'),
    /** A model name; which names exist is the deployment's to say, so it is only checked for shape here. */
    model: z.string().regex(/^[A-Za-z0-9_.:/-]{1,100}$/u, 'a model name: 1-100 letters, digits, _ . : / -'),
    ownerOnlyButtons: z.boolean({ error: 'true or false' }),
    bannedWords: z.array(bannedWord).max(MAX_BANNED_WORDS, `at most ${MAX_BANNED_WORDS} words`),
    dailyQuota: z
      .number({ error: 'a whole number of images (0 = no quota)' })
      .int('a whole number of images (0 = no quota)')
      .min(0, 'at least 0 (0 = no quota)')
      .max(MAX_DAILY_QUOTA, `at most ${MAX_DAILY_QUOTA}`),
    /** `surface:user` ids who may change this scope's settings (and cancel any job in it). */
    admins: z
      .array(z.string().regex(/^[a-z]+:[A-Za-z0-9_.-]{1,64}$/u, 'an id like slack:U123 or discord:123'))
      .max(MAX_ADMINS, `at most ${MAX_ADMINS} admins`),
    /** What happens to images the safety checker flags (core/nsfw.ts). */
    nsfw: z.enum(NSFW_POLICIES, { error: `one of ${NSFW_POLICIES.join(', ')}` }),
  })
  .partial()
  .strict();

export type TeamSettings = z.output<typeof teamSettingsSchema>;
export type TeamSettingKey = keyof TeamSettings;
export const TEAM_SETTING_KEYS = Object.keys(teamSettingsSchema.shape) as TeamSettingKey[];

/**
 * A partial update: each field is a new value, or `null` to drop the override (inherit again).
 * Fields not named stay as they are.
 */
export type TeamSettingsPatch = { readonly [K in TeamSettingKey]?: TeamSettings[K] | null };

/** What applies to a command: every field resolved (model only when someone set one). */
export interface EffectiveSettings {
  readonly suffixes: readonly string[];
  readonly negative: string;
  readonly sampler: SamplerName;
  readonly steps: number;
  readonly guidance: number;
  /** Undefined: the deployment's default width × height. */
  readonly aspect?: string;
  readonly model?: string;
  readonly ownerOnlyButtons: boolean;
  /** Every list that applies: the environment's, the workspace's and the channel's. */
  readonly bannedWords: readonly string[];
  /** Images per user per UTC day; 0 = no quota. */
  readonly dailyQuota: number;
  readonly admins: readonly string[];
  /**
   * The team's NSFW policy (channel, else workspace); undefined when neither sets one, since what
   * applies then depends on the place (core/nsfw.ts `nsfwPolicyFor`).
   */
  readonly nsfw?: NsfwPolicy;
}

/**
 * Resolves the settings for one channel. Plain values: channel, else workspace, else the global
 * default. Lists that protect (banned words) and lists of people (admins) add up instead: a channel
 * can't lift what its workspace or the environment bans, and workspace admins administer every channel.
 */
export function effectiveSettings(
  global: EffectiveSettings,
  workspace: TeamSettings = {},
  channel: TeamSettings = {},
): EffectiveSettings {
  const pick = <K extends Exclude<TeamSettingKey, 'bannedWords' | 'admins' | 'nsfw'>>(key: K) =>
    channel[key] ?? workspace[key] ?? global[key];
  const aspect = pick('aspect');
  const model = pick('model');
  // Not the environment's: where no team sets one, the place decides (see EffectiveSettings.nsfw).
  const nsfw = channel.nsfw ?? workspace.nsfw;
  return {
    suffixes: pick('suffixes') ?? global.suffixes,
    negative: pick('negative') ?? global.negative,
    sampler: pick('sampler') ?? global.sampler,
    steps: pick('steps') ?? global.steps,
    guidance: pick('guidance') ?? global.guidance,
    ...(aspect === undefined ? {} : { aspect }),
    ...(model === undefined ? {} : { model }),
    ownerOnlyButtons: pick('ownerOnlyButtons') ?? global.ownerOnlyButtons,
    bannedWords: unique([
      ...global.bannedWords,
      ...(workspace.bannedWords ?? []),
      ...(channel.bannedWords ?? []),
    ]),
    dailyQuota: pick('dailyQuota') ?? global.dailyQuota,
    admins: unique([...global.admins, ...(workspace.admins ?? []), ...(channel.admins ?? [])]),
    ...(nsfw === undefined ? {} : { nsfw }),
  };
}

function unique(list: readonly string[]): string[] {
  return [...new Set(list)];
}

/** Applies a patch to a scope's overrides (`null` drops a field). Validates nothing: see `parseTeamPatch`. */
export function applyTeamPatch(current: TeamSettings, patch: TeamSettingsPatch): TeamSettings {
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete next[key];
    else if (value !== undefined) next[key] = value;
  }
  return next as TeamSettings;
}

const patchSchema = z
  .object(
    Object.fromEntries(
      Object.entries(teamSettingsSchema.shape).map(([key, schema]) => [
        key,
        schema.unwrap().nullable().optional(),
      ]),
    ),
  )
  .strict();

/**
 * Validates a partial update from a user (JSON body, command options). The error names the field
 * and says what it takes; values that depend on the deployment (steps ≤ MAX_STEPS, an aspect that
 * fits MAX_PIXELS) and on the scope's banned words (suffixes may not contain one) are checked too.
 */
export function parseTeamPatch(
  input: unknown,
  context: { readonly limits: RequestLimits; readonly bannedWords: readonly string[] },
): Result<TeamSettingsPatch> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return refuse(`Settings must be a JSON object with any of: ${TEAM_SETTING_KEYS.join(', ')}.`);
  }
  const parsed = patchSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      return refuse(`Unknown setting "${issue.keys[0]}". Settings are: ${TEAM_SETTING_KEYS.join(', ')}.`);
    }
    const field = issue.path.map(String).join('.');
    return refuse(`Setting "${field}" must be ${issue.message}.`);
  }
  const patch = parsed.data as TeamSettingsPatch;
  if (patch.steps !== undefined && patch.steps !== null && patch.steps > context.limits.maxSteps) {
    return refuse(`Setting "steps" must be from 1 to ${context.limits.maxSteps}, got ${patch.steps}.`);
  }
  if (patch.aspect !== undefined && patch.aspect !== null) {
    const size = sizeForAspect(patch.aspect, context.limits);
    if (!size.ok) return refuse(`Setting "aspect": ${size.error.message}`);
  }
  if (patch.suffixes !== undefined && patch.suffixes !== null) {
    const words = [...context.bannedWords, ...(patch.bannedWords ?? [])];
    const index = patch.suffixes.findIndex((s) => findBannedWord(s, words) !== undefined);
    if (index >= 0) {
      return refuse(`Setting "suffixes.${index}" contains a word that is not allowed here.`);
    }
  }
  return { ok: true, value: patch };
}

function refuse(message: string): Result<never> {
  return { ok: false, error: new UserError(ErrorCode.InvalidRequest, message) };
}

/**
 * Text as a list of comparable words: NFKD with combining marks stripped (é → e, ﬁ → fi), lower
 * case, split on anything that is not a letter or digit.
 */
export function normaliseWords(text: string): string[] {
  return text
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

/**
 * Whether a banned word occurs in `text`, and which (for the log only: users are never shown it).
 *
 * The match, precisely: both sides are normalised (`normaliseWords`). A banned word of n words
 * matches when
 * 1. the text's words contain its n words in a row (whole words: "lighthouse" matches
 *    "A LightHouse at dusk" and "lighthouse!", not "lighthouses"); or
 * 2. the text's words, joined with nothing, contain the banned word's words joined with nothing at
 *    word boundaries of the text: words split by punctuation or spaces are caught, so "light-house",
 *    "light.house" and "light house" all match "lighthouse" (but "slight housework" does not).
 */
export function findBannedWord(text: string, bannedWords: readonly string[]): string | undefined {
  const words = normaliseWords(text);
  if (words.length === 0) return undefined;
  for (const banned of bannedWords) {
    const target = normaliseWords(banned).join('');
    if (target.length === 0) continue;
    if (joinsAtBoundaries(words, target)) return banned;
  }
  return undefined;
}

/** True when some run of consecutive words, concatenated, equals `target`. Covers rule 1 and rule 2. */
function joinsAtBoundaries(words: readonly string[], target: string): boolean {
  for (let start = 0; start < words.length; start++) {
    let joined = '';
    for (let end = start; end < words.length && joined.length < target.length; end++) {
      joined += words[end];
      if (joined === target) return true;
    }
  }
  return false;
}

/** The refusal for a prompt with a banned word: never repeats the word (the reply may be public). */
export function bannedWordError(): UserError {
  return new UserError(
    ErrorCode.BannedWord,
    'A word in your prompt is not allowed here. Please rephrase it and try again.',
  );
}

/** The refusal once a user's daily images are used up. `resetsAt`: ms since the epoch (next UTC midnight). */
export function quotaError(quota: number, resetsAt: number, now: number): UserError {
  const seconds = Math.max(1, Math.ceil((resetsAt - now) / 1000));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.ceil((seconds % 3600) / 60);
  const wait = hours > 0 ? `${hours} h ${minutes} min` : `${Math.max(1, minutes)} min`;
  return new UserError(
    ErrorCode.Quota,
    `You have used your ${quota} image${quota === 1 ? '' : 's'} for today here. The quota resets at ` +
      `${new Date(resetsAt).toISOString().slice(11, 16)} UTC (in ${wait}).`,
    { retryAfterSeconds: seconds },
  );
}

/** The UTC day a time falls in, as `YYYYMMDD`, and when the next one starts (ms since the epoch). */
export function utcDay(now: number): { readonly day: string; readonly resetsAt: number } {
  const date = new Date(now);
  const start = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  return { day: date.toISOString().slice(0, 10).replaceAll('-', ''), resetsAt: start + 86_400_000 };
}

/** The generation defaults a channel or its workspace sets itself (the environment's are not in it). */
export function teamDefaultsLayer(workspace: TeamSettings = {}, channel: TeamSettings = {}): DefaultsLayer {
  const layer = {
    steps: channel.steps ?? workspace.steps,
    guidance: channel.guidance ?? workspace.guidance,
    sampler: channel.sampler ?? workspace.sampler,
  };
  return Object.fromEntries(Object.entries(layer).filter(([, v]) => v !== undefined)) as DefaultsLayer;
}

/** Where one command's defaults come from besides the deployment's (see core/generation-defaults.ts). */
export interface DefaultSources {
  /** What the channel or workspace set itself (`teamDefaultsLayer`). */
  readonly team: DefaultsLayer;
  /** The chosen model's own defaults, when known. */
  readonly model?: DefaultsLayer;
}

/**
 * Request defaults for one command: the team's settings, the environment's DEFAULT_* and the model's
 * own on top of the deployment's (precedence in core/generation-defaults.ts). Without `sources`, the
 * team's effective steps, guidance and sampler count as set by the team. The pixel limit is
 * `maxPixelsFor`'s; a model's own size over an operator's MAX_PIXELS is scaled down to fit it (and
 * `modelSizeReduced` says so, for the user's warning).
 */
export function limitsWith(
  limits: RequestLimits,
  settings: EffectiveSettings,
  sources: DefaultSources = {
    team: { steps: settings.steps, guidance: settings.guidance, sampler: settings.sampler },
  },
): RequestLimits {
  const own = sources.model ?? {};
  const maxPixels = maxPixelsFor(limits, own);
  const fitted =
    own.width === undefined || own.height === undefined
      ? undefined
      : fitToPixels(own.width, own.height, maxPixels);
  const reduced = fitted !== undefined && (fitted.width !== own.width || fitted.height !== own.height);
  const model = reduced ? { ...own, ...fitted } : own;
  const resolved = resolveDefaults([
    sources.team,
    limits.envDefaults ?? {},
    model,
    {
      steps: limits.defaultSteps,
      guidance: limits.defaultGuidance,
      sampler: limits.defaultSampler,
      width: limits.defaultWidth,
      height: limits.defaultHeight,
    },
  ]);
  // Told only where that size is the one a command without a size gets (no team or DEFAULT_* size).
  const reducedApplies = reduced && resolved.width === fitted.width && resolved.height === fitted.height;
  return {
    ...limits,
    defaultSteps: Math.min(resolved.steps, limits.maxSteps),
    defaultGuidance: resolved.guidance,
    defaultSampler: resolved.sampler,
    defaultWidth: resolved.width,
    defaultHeight: resolved.height,
    maxPixels,
    defaultNegative: settings.negative,
    ...(settings.aspect === undefined ? {} : { defaultAspect: settings.aspect }),
    ...(reducedApplies ? { modelSizeReduced: { width: own.width!, height: own.height! } } : {}),
  };
}

/**
 * The pixel limit on a model: an operator's MAX_PIXELS as set; unset, the built-in limit or the
 * model's own default size where larger (so SDXL's 1024² works out of the box). Upscale asks with its
 * `scale`, so an image of the model's own size can be doubled unless MAX_PIXELS says otherwise.
 */
export function maxPixelsFor(limits: RequestLimits, model: DefaultsLayer = {}, scale = 1): number {
  if (limits.maxPixelsBuiltIn !== true) return limits.maxPixels;
  const width = model.width ?? (scale === 1 ? 0 : limits.defaultWidth);
  const height = model.height ?? (scale === 1 ? 0 : limits.defaultHeight);
  return Math.max(limits.maxPixels, scale * scale * width * height);
}
