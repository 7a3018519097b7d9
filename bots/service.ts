import { randomInt } from 'node:crypto';
import type { Surface } from '../core/jobspec.ts';
import type { GridRecord, Jobs, QueueMetrics, Subscription } from '../queue/index.ts';
import { AckGate } from './service/ack-gate.ts';
import { Chains } from './service/chains.ts';
import type { ServiceContext } from './service/context.ts';
import { deliver, showProgress } from './service/deliver.ts';
import { type HistoryIndex, type HistoryQuery, type HistoryView, readHistory } from './service/history.ts';
import { imagine } from './service/imagine.ts';
import { KnownJobs } from './service/known-jobs.ts';
import { type NsfwWhere, nsfwNotes, nsfwOutcome, nsfwPolicyAt, showGrid, showImage } from './service/nsfw.ts';
import { press } from './service/press.ts';
import { ProgressThrottle } from './service/progress.ts';
import { type ServiceLog, type ServiceSettings, SILENT_LOG } from './service/settings.ts';
import { type SettingsAnswer, type SettingsRequest, settingsCommand } from './service/settings-command.ts';
import type { TeamSupport } from './settings/support.ts';
import type {
  ChatSurface,
  ControlPress,
  ImagineCommand,
  InteractionReply,
  InteractionResult,
  Markup,
} from './surface.ts';

export { decodeControl, encodeControl, MAX_CONTROL_ID_LENGTH } from './service/controls.ts';
export { displayPrompt } from './service/format.ts';
export type { HistoryEntry, HistoryQuery, HistoryView } from './service/history.ts';
export { MESSAGES, type ServiceLog, type ServiceSettings, serviceSettingsFrom } from './service/settings.ts';

/**
 * The chat-agnostic conversation service: it owns the `/imagine` flow on every surface. Adapters turn
 * their events into `ImagineCommand`/`ControlPress` and render what the service hands them; every
 * decision (parsing, seeds, who may press what, what a message says, which file format fits, how a
 * burst of interactions is paced) is in bots/service/, one module per job:
 *
 *   imagine.ts, press.ts, submit.ts   the flow of a command and of a button press
 *   deliver.ts                        results and progress edits
 *   access.ts                         who may press what
 *   ack-gate.ts, progress.ts          acknowledgements first; progress edits throttled
 *   views.ts, format.ts               what each message says and carries
 *
 * This class only wires them:
 *
 *   const service = new ConversationService({ jobs, settings: serviceSettingsFrom(config), log });
 *   const detach = service.attach(surface);      // subscribes to deliveries and progress
 *   await service.imagine(command, reply);       // on /imagine → { jobId } of the job made
 *   await service.press(press, reply);           // on a button → { jobId } made or acted on
 */

/** What an adapter needs of the service; a wrapper (e.g. one that times deliveries) may stand in for it. */
export type Conversation = Pick<ConversationService, 'imagine' | 'press' | 'attach'>;

export interface ConversationServiceOptions {
  readonly jobs: Jobs;
  readonly settings: ServiceSettings;
  /** @defaultValue a silent logger */
  readonly log?: ServiceLog;
  /** Counts requests refused as invalid (`submissions_total{outcome="invalid"}`) on every surface. @defaultValue none */
  readonly metrics?: Pick<QueueMetrics, 'submit'>;
  /** Uniform [0, 1) source for base seeds. @defaultValue crypto */
  readonly random?: () => number;
  /** @defaultValue Date.now */
  readonly now?: () => number;
  /**
   * Longest time new-job work waits for in-flight acknowledgements to finish (acks go first).
   * @defaultValue 250
   */
  readonly ackPriorityMs?: number;
  /**
   * Interactions doing Redis and chat-API work at once; the rest wait their turn, already acknowledged.
   * @defaultValue 8
   */
  readonly maxConcurrentInteractions?: number;
  /** Team settings (Redis) and daily quotas. @defaultValue none: the environment's settings everywhere */
  readonly teams?: TeamSupport;
  /** Each user's recent grids per channel (bots/history/store.ts). @defaultValue none: history is empty */
  readonly history?: HistoryIndex;
}

const DEFAULT_PROGRESS_INTERVAL_MS = 2000;

export class ConversationService {
  readonly #ctx: ServiceContext;
  readonly #progressIntervalMs: number;
  readonly #surfaces = new Map<
    Surface,
    { surface: ChatSurface; subscriptions: Subscription[]; progress: ProgressThrottle }
  >();
  #closed = false;

  constructor(options: ConversationServiceOptions) {
    const log = options.log ?? SILENT_LOG;
    const now = options.now ?? Date.now;
    this.#ctx = {
      jobs: options.jobs,
      settings: options.settings,
      log,
      metrics: options.metrics,
      random: options.random ?? (() => randomInt(0, 2 ** 32) / 2 ** 32),
      now,
      gate: new AckGate(log, {
        ...(options.ackPriorityMs === undefined ? {} : { priorityMs: options.ackPriorityMs }),
        ...(options.maxConcurrentInteractions === undefined
          ? {}
          : { maxActive: options.maxConcurrentInteractions }),
      }),
      chains: new Chains(),
      known: new KnownJobs(),
      teams: options.teams,
      history: options.history,
    };
    this.#progressIntervalMs = options.settings.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
  }

  /** Registers a surface and subscribes to its deliveries and progress. Returns a detach function. */
  attach(surface: ChatSurface): () => Promise<void> {
    if (this.#surfaces.has(surface.surface))
      throw new Error(`surface ${surface.surface} is already attached`);
    const ctx = this.#ctx;
    const progress = new ProgressThrottle({
      intervalMs: this.#progressIntervalMs,
      now: ctx.now,
      show: (event) => {
        if (!ctx.known.isFinished(event.jobId)) void showProgress(ctx, surface, event);
      },
    });
    const subscriptions = [
      ctx.jobs.onDelivery(surface.surface, (event, steps) => {
        progress.forget(event.record.id);
        return deliver(ctx, surface, event, steps);
      }),
      ctx.jobs.onProgress(surface.surface, (event) => {
        if (!this.#closed && !ctx.known.isFinished(event.jobId)) progress.push(event);
      }),
    ];
    this.#surfaces.set(surface.surface, { surface, subscriptions, progress });
    return async () => {
      const entry = this.#surfaces.get(surface.surface);
      if (entry?.surface !== surface) return;
      this.#surfaces.delete(surface.surface);
      await Promise.all(entry.subscriptions.map((s) => s.close()));
      entry.progress.close();
    };
  }

  /** `/imagine` (see service/imagine.ts). Never throws; answers with the id of the job made, if any. */
  imagine(command: ImagineCommand, reply: InteractionReply): Promise<InteractionResult> {
    return imagine(this.#ctx, this.#surfaces.get(command.surface)?.surface, command, reply);
  }

  /** A button press (see service/press.ts). Never throws; answers with the job made or acted on, if any. */
  press(pressed: ControlPress, reply: InteractionReply): Promise<InteractionResult> {
    return press(this.#ctx, this.#surfaces.get(pressed.surface)?.surface, pressed, reply);
  }

  /**
   * `/imagine-settings` (see service/settings-command.ts): show, set or reset a scope's settings.
   * Throws when Redis can't be reached (the adapter says so).
   */
  teamSettings(request: SettingsRequest): Promise<SettingsAnswer> {
    const teams = this.#ctx.teams;
    if (teams === undefined) {
      return Promise.resolve({ ok: false, message: 'Team settings are not enabled on this deployment.' });
    }
    return settingsCommand(teams.store, this.#ctx.settings.limits, request);
  }

  /**
   * `/imagine history`: the requester's last grids in this channel with their buttons, texts in
   * `markup` (the surface's). Throws UserError(Unavailable) when Redis can't be reached.
   */
  history(query: HistoryQuery, markup: Markup): Promise<HistoryView> {
    return readHistory(this.#ctx, markup, query);
  }

  /**
   * A finished job's grid (`index` undefined) or full-size image as shown at `where` under its NSFW
   * policy (for surfaces that serve PNGs themselves: the playground), and the notes that say so.
   */
  async showResult(
    record: GridRecord,
    index: number | undefined,
    png: Buffer,
    where: NsfwWhere,
  ): Promise<{ readonly png: Buffer; readonly notes: readonly string[] }> {
    const policy = await nsfwPolicyAt(this.#ctx, where);
    const shown =
      index === undefined ? await showGrid(record, png, policy) : await showImage(record, index, png, policy);
    return { png: shown.png, notes: nsfwNotes(shown) };
  }

  /** The notes that say what the NSFW policy at `where` does to a finished job's images. */
  async nsfwNotesFor(record: GridRecord, where: NsfwWhere): Promise<readonly string[]> {
    return nsfwNotes(nsfwOutcome(record, await nsfwPolicyAt(this.#ctx, where)));
  }

  /** Detaches every surface and waits for in-flight renders. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const entries = [...this.#surfaces.values()];
    this.#surfaces.clear();
    await Promise.all(entries.flatMap((e) => e.subscriptions.map((s) => s.close())));
    for (const entry of entries) entry.progress.close();
    await this.#ctx.chains.drain();
  }
}
