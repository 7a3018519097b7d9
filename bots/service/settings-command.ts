import type { RequestLimits } from '../../core/config.ts';
import type { DefaultsLayer } from '../../core/generation-defaults.ts';
import type { Surface } from '../../core/jobspec.ts';
import { nsfwSettingRefusal } from '../../core/nsfw.ts';
import {
  type EffectiveSettings,
  parseTeamPatch,
  TEAM_SETTING_KEYS,
  type TeamSettingKey,
  type TeamSettings,
} from '../../core/team-settings.ts';
import type { ScopeRef, TeamSettingsStore } from '../settings/store.ts';
import { effectiveHere } from './model-defaults.ts';

/**
 * `/imagine-settings` on every chat surface: show, set and reset a scope's settings. The adapter
 * says what the chat platform knows (the scope asked for, and whether the user holds the platform's
 * admin right for it: Manage Server / Manage Channels on Discord, workspace admin or owner on
 * Slack); who may change settings is decided here: those people, and anyone listed in the scope's
 * `admins` (by an admin). Everyone may look.
 */

export type SettingsAction =
  | { readonly kind: 'show' }
  | { readonly kind: 'set'; readonly patch: Readonly<Record<string, unknown>> }
  | { readonly kind: 'reset'; readonly keys: readonly TeamSettingKey[] | 'all' };

export interface SettingsRequest {
  readonly surface: Surface;
  readonly user: string;
  readonly workspace: string;
  readonly channel: string;
  readonly scope: 'workspace' | 'channel';
  /** Discord: the channel is age-restricted, where `nsfw: allow` may be set (core/nsfw.ts). */
  readonly ageRestricted?: boolean;
  /** The platform's admin right for this scope. */
  readonly platformAdmin: boolean;
  readonly action: SettingsAction;
}

export type SettingsAnswer =
  | {
      readonly ok: true;
      /** The scope's own overrides, after the action. */
      readonly settings: TeamSettings;
      /** What applies in the channel, after the action. */
      readonly effective: EffectiveSettings;
      /** Whether this user may change this scope (for showing edit controls). */
      readonly mayChange: boolean;
    }
  | { readonly ok: false; readonly message: string };

export function refusalFor(surface: Surface, scope: 'workspace' | 'channel'): string {
  const right =
    surface === 'discord'
      ? scope === 'workspace'
        ? 'the Manage Server permission'
        : 'the Manage Channels permission'
      : surface === 'slack'
        ? 'to be a workspace admin or owner'
        : 'access to the playground';
  return `You can't change the bot's ${scope === 'workspace' ? 'server-wide' : 'channel'} settings: that needs ${right}, or to be listed as a bot admin here by someone who has it.`;
}

export async function settingsCommand(
  store: TeamSettingsStore,
  limits: RequestLimits,
  request: SettingsRequest,
  /** A model's announced defaults, so the steps, guidance and sampler shown are those that apply. */
  modelDefaults: (model: string) => Promise<DefaultsLayer | null> = async () => null,
): Promise<SettingsAnswer> {
  const workspaceScope: ScopeRef = { surface: request.surface, workspace: request.workspace };
  const where = { ...workspaceScope, channel: request.channel };
  const scope: ScopeRef = request.scope === 'workspace' ? workspaceScope : where;
  const before = await store.resolve(where);
  // Workspace admins are listed in the workspace scope; a channel's list adds admins for that channel only.
  const listed =
    request.scope === 'workspace'
      ? [...store.global.admins, ...((await store.overrides(workspaceScope)).admins ?? [])]
      : before.effective.admins;
  const mayChange = request.platformAdmin || listed.includes(`${request.surface}:${request.user}`);
  const actor = { surface: request.surface, user: request.user };
  const action = request.action;
  if (action.kind !== 'show' && !mayChange)
    return { ok: false, message: refusalFor(request.surface, request.scope) };
  if (action.kind === 'set') {
    const patch = parseTeamPatch(action.patch, { limits, bannedWords: before.effective.bannedWords });
    if (!patch.ok) return { ok: false, message: patch.error.message };
    const nsfw = patch.value.nsfw;
    const refusal =
      nsfw === undefined || nsfw === null
        ? undefined
        : nsfwSettingRefusal(
            { surface: request.surface, ageRestricted: request.ageRestricted === true },
            request.scope,
            nsfw,
          );
    if (refusal !== undefined) return { ok: false, message: refusal };
    await store.update(scope, patch.value, actor);
  } else if (action.kind === 'reset') {
    const keys = action.keys === 'all' ? TEAM_SETTING_KEYS : action.keys;
    await store.update(scope, Object.fromEntries(keys.map((k) => [k, null])), actor);
  }
  const [settings, after] = await Promise.all([store.overrides(scope), store.resolve(where)]);
  return { ok: true, settings, effective: await effectiveHere(limits, after, modelDefaults), mayChange };
}

/** One line per setting: the value that applies, and whether this scope sets it. Values are raw text. */
export function settingsLines(
  answer: Extract<SettingsAnswer, { ok: true }>,
): { readonly key: TeamSettingKey; readonly value: string; readonly here: boolean }[] {
  return TEAM_SETTING_KEYS.map((key) => {
    const value = (answer.effective as unknown as Record<string, unknown>)[key];
    return {
      key,
      value:
        value === undefined
          ? '(default)'
          : Array.isArray(value)
            ? value.length === 0
              ? '(none)'
              : value.map((v) => JSON.stringify(v)).join(', ')
            : key === 'dailyQuota' && value === 0
              ? 'no quota'
              : String(value),
      here: answer.settings[key] !== undefined,
    };
  });
}
