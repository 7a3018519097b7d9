import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode } from '../../core/errors.ts';
import { HttpError, sendJson } from '../ops/http.ts';
import { PLAIN_MARKUP } from '../service/format.ts';
import { HISTORY_MAX_LIMIT } from '../service/history.ts';
import { PLAYGROUND_CHANNEL, PLAYGROUND_WORKSPACE, type PlaygroundOptions } from './options.ts';
import { jobJson } from './view.ts';

/**
 * `GET /api/history[?limit=N]`: the caller's last grids (the identity the server issued, never one the
 * client names), newest first, expired ones left out, as the jobs `GET /api/jobs/:id` returns. Other
 * people's grids are never listed: the index is kept per user, and each record's owner is checked.
 */

interface HistoryCtx {
  readonly res: ServerResponse;
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly user: string;
}

interface HistoryRoute {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, (ctx: HistoryCtx) => Promise<void>>>;
}

export function historyRoutes(options: PlaygroundOptions): HistoryRoute[] {
  const service = options.service;
  if (service.history === undefined) return [];
  const history = service.history.bind(service);
  return [
    {
      pattern: /^\/api\/history$/u,
      methods: {
        GET: async (ctx) => {
          const text = ctx.url.searchParams.get('limit');
          // Digits only: Number() would also take "0x5", "1e1", " 5" or "5.0".
          const limit =
            text === null ? HISTORY_MAX_LIMIT : /^\d{1,3}$/u.test(text) ? Number(text) : Number.NaN;
          if (!Number.isInteger(limit) || limit < 1 || limit > HISTORY_MAX_LIMIT) {
            throw new HttpError(
              ErrorCode.InvalidRequest,
              `limit must be a whole number from 1 to ${HISTORY_MAX_LIMIT}, got ${JSON.stringify(text)}.`,
            );
          }
          const view = await history(
            {
              surface: 'web',
              user: ctx.user,
              workspace: PLAYGROUND_WORKSPACE,
              channel: PLAYGROUND_CHANNEL,
              limit,
            },
            PLAIN_MARKUP,
          );
          const grids = view.entries.map((entry) => ({
            ...jobJson(entry.record, null, options.surface.latestProgress(entry.record.id), ctx.user),
            requestedAt: entry.requestedAt,
          }));
          sendJson(ctx.res, 200, { grids });
        },
      },
    },
  ];
}
