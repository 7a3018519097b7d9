import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode } from '../../core/errors.ts';
import { parseTeamPatch } from '../../core/team-settings.ts';
import { HttpError, readJsonObject, sendJson } from '../ops/http.ts';
import { effectiveHere } from '../service/model-defaults.ts';
import type { ScopeRef } from '../settings/store.ts';
import { PLAYGROUND_CHANNEL, PLAYGROUND_WORKSPACE, type PlaygroundTeamSettings } from './options.ts';

/**
 * `GET /api/settings` and `PUT /api/settings`: the playground is one team, so these read and change
 * its workspace scope. Who may: whoever reaches the API at all, that is the local user of an open
 * loopback playground or the PLAYGROUND_TOKEN holder (the server checks that before any route).
 */

/** What these routes use of a request (routes.ts's `Ctx` has it). */
interface SettingsCtx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly user: string;
}

interface SettingsRoute {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, (ctx: SettingsCtx) => Promise<void>>>;
}

const SCOPE: ScopeRef = { surface: 'web', workspace: PLAYGROUND_WORKSPACE };

export function settingsRoutes(team: PlaygroundTeamSettings, bodyLimit: number): SettingsRoute[] {
  const show = async () => {
    const [settings, resolved] = await Promise.all([
      team.store.overrides(SCOPE),
      team.store.resolve({ ...SCOPE, channel: PLAYGROUND_CHANNEL }),
    ]);
    const modelDefaults = team.modelDefaults ?? (async () => null);
    return {
      scope: 'workspace',
      settings,
      effective: await effectiveHere(team.limits, resolved, modelDefaults),
    };
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
