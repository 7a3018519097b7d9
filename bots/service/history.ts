import { ErrorCode, UserError } from '../../core/errors.ts';
import type { Origin } from '../../core/jobspec.ts';
import type { GridRecord, JobState } from '../../queue/index.ts';
import type { Markup } from '../surface.ts';
import type { ServiceContext } from './context.ts';
import { cancelControls, gridControls } from './controls.ts';
import { displayPrompt } from './format.ts';
import type { HistoryEntry, HistoryQuery, HistoryScope, HistoryView } from './history-types.ts';
import { DEFAULT_WORKSPACE } from './team.ts';

export type {
  HistoryEntry,
  HistoryHandler,
  HistoryIndex,
  HistoryQuery,
  HistoryScope,
  HistoryView,
} from './history-types.ts';

/**
 * `/imagine history`: the requester's last grids in one channel, each with the buttons it has in the
 * channel (refine, reroll, full size; cancel while it runs), working until its record expires. The
 * service writes the index after every job it queues (submit.ts) and reads it here; records stay the
 * one source of what a grid is, so an expired one simply drops out.
 */

/**
 * Whether a one-text command (Slack's `/imagine <text>`) asks for the history: the word `history`
 * alone, in any case. Anything more is a prompt ("history of rome").
 */
export function isHistoryRequest(text: string): boolean {
  return /^\s*history\s*$/iu.test(text);
}

export const HISTORY_DEFAULT_LIMIT = 5;
export const HISTORY_MAX_LIMIT = 10;
/** Ids read per request: expired ones are skipped, so read past the limit. */
const HISTORY_READ = 25;

export function historyScopeOf(
  where: Pick<Origin, 'surface' | 'user' | 'channel'> & { readonly workspace?: string | undefined },
): HistoryScope {
  return {
    surface: where.surface,
    workspace: where.workspace ?? DEFAULT_WORKSPACE,
    channel: where.channel,
    user: where.user,
  };
}

/** Adds a newly queued job to its requester's history. A failure only loses the entry (logged). */
export async function rememberGrid(
  ctx: ServiceContext,
  origin: Parameters<typeof historyScopeOf>[0],
  recordId: string,
): Promise<void> {
  await ctx.history
    ?.add(historyScopeOf(origin), recordId, ctx.now())
    .catch((error: unknown) => ctx.log.warn({ err: error, jobId: recordId }, 'recording history failed'));
}

/** The requester's last grids here. Throws UserError(Unavailable) when Redis can't be reached. */
export async function readHistory(ctx: ServiceContext, m: Markup, query: HistoryQuery): Promise<HistoryView> {
  const limit = Math.min(HISTORY_MAX_LIMIT, Math.max(1, query.limit ?? HISTORY_DEFAULT_LIMIT));
  const scope = historyScopeOf(query);
  const index = ctx.history;
  let records: GridRecord[] = [];
  if (index !== undefined) {
    try {
      const ids = await index.recent(scope, HISTORY_READ);
      const read = await Promise.all(ids.map((id) => ctx.jobs.record(id)));
      const gone = ids.filter((_, i) => read[i] === null);
      if (gone.length > 0) {
        await index.forget(scope, gone).catch((error: unknown) => {
          ctx.log.debug({ err: error }, 'dropping expired history entries failed');
        });
      }
      // The index is per user already; the owner check keeps it so whatever the index holds.
      records = read
        .filter((r): r is GridRecord => r !== null)
        .filter((r) => r.spec.origin.surface === query.surface && r.spec.origin.user === query.user)
        .slice(0, limit);
    } catch (error) {
      throw new UserError(
        ErrorCode.Unavailable,
        'Your history cannot be read right now; try again shortly.',
        {
          cause: error,
          retryAfterSeconds: 5,
        },
      );
    }
  }
  const now = ctx.now();
  const entries = records.map((record, i) => entryOf(m, record, i, now));
  const text =
    entries.length === 0
      ? `You have no grids in this channel yet, or they have expired (grids are kept ${ctx.settings.recordTtlDays} days after they finish).`
      : `${m.bold(`Your last ${entries.length === 1 ? 'grid' : `${entries.length} grids`} in this channel`)}, newest first (only you see this):`;
  return { entries, text };
}

const STATUS_LABELS: Readonly<Record<JobState, string>> = {
  queued: '⏳ queued',
  running: '⏳ running',
  done: '✅ done',
  failed: '❌ failed',
  cancelled: '🚫 cancelled',
};

const PROMPT_MAX = 120;

function entryOf(m: Markup, record: GridRecord, i: number, now: number): HistoryEntry {
  const spec = record.spec;
  const status = record.state.status.state;
  const prompt = displayPrompt(spec.prompts);
  const shown = prompt.length > PROMPT_MAX ? `${prompt.slice(0, PROMPT_MAX - 1)}…` : prompt;
  const kind =
    spec.kind === 'refine' && spec.parent?.index !== undefined
      ? ` · refine of image ${spec.parent.index + 1}`
      : spec.kind === 'imagine'
        ? ''
        : ` · ${spec.kind}`;
  const text = `${m.bold(`${i + 1}.`)} ${m.escape(shown)}${kind} · ${STATUS_LABELS[status]} · ${ago(now - spec.requestedAt)}`;
  const controls =
    status === 'done'
      ? gridControls(record.id, spec.prompts.length)
      : status === 'queued' || status === 'running'
        ? cancelControls(record.id)
        : [];
  return { record, status, prompt, requestedAt: spec.requestedAt, text, controls };
}

/** "just now", "5 min ago", "3 h ago", "2 days ago". */
export function ago(ms: number): string {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} days ago`;
}
