import type { RequestLimits } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { parseTeamPatch } from '../../core/team-settings.ts';
import { HttpError, readJsonObject, sendJson } from '../ops/http.ts';
import type { ScopeRef, TeamSettingsStore } from '../settings/store.ts';
import { PLAYGROUND_CHANNEL, PLAYGROUND_WORKSPACE } from './options.ts';
import type { Route } from './routes.ts';

/**
 * `GET /api/settings` and `PUT /api/settings`: the playground is one team, so these read and change
 * its workspace scope. Who may: whoever reaches the API at all, that is the local user of an open
 * loopback playground or the PLAYGROUND_TOKEN holder (the server checks that before any route).
 */

export interface PlaygroundTeamSettings {
  readonly store: TeamSettingsStore;
  /** For checking steps and aspect against the deployment's limits. */
  readonly limits: RequestLimits;
}

const SCOPE: ScopeRef = { surface: 'web', workspace: PLAYGROUND_WORKSPACE };

export function settingsRoutes(team: PlaygroundTeamSettings, bodyLimit: number): Route[] {
  const show = async () => {
    const [settings, resolved] = await Promise.all([
      team.store.overrides(SCOPE),
      team.store.resolve({ ...SCOPE, channel: PLAYGROUND_CHANNEL }),
    ]);
    return { scope: 'workspace', settings, effective: resolved.effective };
  };
  return [
    {
      pattern: /^\/api\/settings$/u,
      methods: {
        GET: async (ctx) => sendJson(ctx.res, 200, await show()),
        PUT: async (ctx) => {
          const body = await readJsonObject(ctx.req, { limitBytes: bodyLimit });
          const current = await team.store.resolve({ ...SCOPE, channel: PLAYGROUND_CHANNEL });
          const patch = parseTeamPatch(body, {
            limits: team.limits,
            bannedWords: current.effective.bannedWords,
          });
          if (!patch.ok) throw new HttpError(ErrorCode.InvalidRequest, patch.error.message);
          await team.store.update(SCOPE, patch.value, { surface: 'web', user: ctx.user });
          sendJson(ctx.res, 200, await show());
        },
      },
    },
  ];
}
