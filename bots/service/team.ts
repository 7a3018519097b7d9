import type { DefaultsLayer } from '../../core/generation-defaults.ts';
import {
  bannedWordError,
  type EffectiveSettings,
  findBannedWord,
  quotaError,
} from '../../core/team-settings.ts';
import type { QuotaCharge } from '../settings/quota.ts';
import type { ScopeRef } from '../settings/store.ts';
import type { ControlPress, ImagineCommand } from '../surface.ts';
import type { ServiceContext } from './context.ts';
import type { ServiceSettings } from './settings.ts';

/**
 * Team settings in the service: the settings that apply to one command (environment, workspace,
 * channel: resolved once per command), banned words, and the daily quota. Adapters never read
 * settings; they only say which workspace an action comes from.
 */

/** The settings one command runs with, and where its images are counted. */
export interface TeamScope {
  readonly settings: EffectiveSettings;
  /** What the channel or workspace set themselves of steps, guidance, sampler. @defaultValue none */
  readonly defaults?: DefaultsLayer;
  readonly quotaScope?: ScopeRef;
}

/** Actions from a surface without workspaces (or an adapter that doesn't say) share this one. */
export const DEFAULT_WORKSPACE = 'default';

/** The environment's settings, as the defaults under every scope. */
export function globalSettingsOf(settings: ServiceSettings): EffectiveSettings {
  return {
    suffixes: settings.suffixes,
    negative: '',
    sampler: settings.limits.defaultSampler,
    steps: settings.limits.defaultSteps,
    guidance: settings.limits.defaultGuidance,
    ownerOnlyButtons: settings.ownerOnlyButtons,
    bannedWords: settings.bannedWords ?? [],
    dailyQuota: 0,
    admins: settings.adminUsers,
  };
}

/**
 * The settings for an action's channel. Redis trouble falls back to the environment's settings
 * (logged): its banned words still apply, and the submission that follows reports the outage.
 */
export async function teamFor(
  ctx: ServiceContext,
  action: Pick<ImagineCommand | ControlPress, 'surface' | 'workspace' | 'channel'>,
): Promise<TeamScope> {
  const teams = ctx.teams;
  if (teams === undefined) return { settings: globalSettingsOf(ctx.settings) };
  try {
    const resolved = await teams.store.resolve({
      surface: action.surface,
      workspace: action.workspace ?? DEFAULT_WORKSPACE,
      channel: action.channel,
    });
    return { settings: resolved.effective, quotaScope: resolved.quotaScope, defaults: resolved.teamDefaults };
  } catch (error) {
    ctx.log.warn({ err: error, surface: action.surface }, 'team settings unavailable: using the defaults');
    return { settings: teams.store.global };
  }
}

/** The service settings with a team's buttons and admins (for access.ts). */
export function accessSettings(ctx: ServiceContext, team: TeamScope): ServiceSettings {
  return {
    ...ctx.settings,
    ownerOnlyButtons: team.settings.ownerOnlyButtons,
    adminUsers: team.settings.admins,
  };
}

/**
 * Throws a banned-word UserError (ErrorCode.BannedWord) when a prompt holds a word banned here. The user is never shown the word
 * (the reply may be public); the log names it, so an admin can tell which entry matched.
 */
export function checkPrompts(ctx: ServiceContext, team: TeamScope, prompts: readonly string[]): void {
  for (const prompt of new Set(prompts)) {
    const word = findBannedWord(prompt, team.settings.bannedWords);
    if (word !== undefined) {
      ctx.log.info({ bannedWord: word }, 'prompt refused: banned word');
      throw bannedWordError();
    }
  }
}

/** Counts a job's images against the user's daily quota; throws ErrorCode.Quota when it is used up. */
export async function chargeQuota(
  ctx: ServiceContext,
  team: TeamScope | undefined,
  user: string,
  images: number,
): Promise<QuotaCharge | undefined> {
  const quota = team?.settings.dailyQuota ?? 0;
  if (ctx.teams === undefined || team?.quotaScope === undefined || quota <= 0) return undefined;
  const now = ctx.now();
  const charge = await ctx.teams.quota.take(team.quotaScope, user, images, quota, now);
  if (!charge.allowed) throw quotaError(quota, charge.resetsAt, now);
  return charge;
}
