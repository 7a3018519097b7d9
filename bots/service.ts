import { randomInt } from 'node:crypto';
import { type Config, type RequestLimits, requestLimitsFrom } from '../core/config.ts';
import { ErrorCode, type ErrorLogger, InternalError, reportError, UserError } from '../core/errors.ts';
import { JOB_SPEC_VERSION, type JobSpecInput, jobIdFor, type Surface } from '../core/jobspec.ts';
import { type GridBatch, type NextBatch, refine, reroll } from '../core/refine.ts';
import { type ImagineRequest, parseImagineOptions, parseImagineText } from '../core/request.ts';
import { drawBaseSeed, gridSeeds } from '../core/seeds.ts';
import {
  type DeliveryContext,
  type DeliveryEvent,
  type GridRecord,
  type Jobs,
  mergeMessageRef,
  PermanentDeliveryError,
  type ProgressEvent,
  type QueueMetrics,
  type Subscription,
} from '../queue/index.ts';
import { cancelControls, decodeControl, gridControls } from './service/controls.ts';
import { fitUpload } from './service/encode.ts';
import {
  cancelledText,
  failureText,
  gridNotes,
  gridText,
  imageText,
  progressText,
  queuedText,
} from './service/format.ts';
import type {
  ChatSurface,
  ControlPress,
  GridImageInfo,
  GridView,
  ImagineCommand,
  InteractionReply,
  JobTarget,
  MessageRef,
  QueuedView,
} from './surface.ts';

export { decodeControl, encodeControl, MAX_CONTROL_ID_LENGTH } from './service/controls.ts';

/**
 * The chat-agnostic conversation service: it owns the `/imagine` flow on every surface. Adapters turn
 * their events into `ImagineCommand`/`ControlPress` and render what the service hands them; every
 * decision (parsing, seeds, who may press what, what a message says, which file format fits) is here.
 *
 *   const service = new ConversationService({ jobs, settings: serviceSettingsFrom(config), log });
 *   const detach = service.attach(surface);      // subscribes to deliveries and progress
 *   await service.imagine(command, reply);       // on /imagine
 *   await service.press(press, reply);           // on a button
 */

export interface ServiceSettings {
  readonly limits: RequestLimits;
  /** Refinement suffixes, 1-4. */
  readonly suffixes: readonly string[];
  /** Only the requester may press refine/reroll/upscale. */
  readonly ownerOnlyButtons: boolean;
  /** `surface:user` ids that may cancel anyone's job. */
  readonly adminUsers: readonly string[];
  /** Shown in the "expired" message. */
  readonly recordTtlDays: number;
  /**
   * Least time between two progress edits of one message.
   * @defaultValue 2000
   */
  readonly progressIntervalMs?: number;
}

export function serviceSettingsFrom(config: Config): ServiceSettings {
  return {
    limits: requestLimitsFrom(config),
    suffixes: config.SUFFIXES,
    ownerOnlyButtons: config.OWNER_ONLY_BUTTONS,
    adminUsers: config.ADMIN_USERS,
    recordTtlDays: config.RECORD_TTL_DAYS,
  };
}

/** What an adapter needs of the service; a wrapper (e.g. one that times deliveries) may stand in for it. */
export type Conversation = Pick<ConversationService, 'imagine' | 'press' | 'attach'>;

/** The logger the service needs (pino satisfies it). */
export interface ServiceLog extends ErrorLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

const SILENT_LOG: ServiceLog = { debug() {}, info() {}, warn() {}, error() {} };

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
}

/** User-facing texts that are not about one job. */
export const MESSAGES = {
  invalidControl:
    'That button is not valid (it may have been altered or come from another app). Use the buttons on a grid.',
  notOwner: 'Only the person who made this grid can use its buttons here.',
  notFinished: 'This grid is not finished yet; its buttons work once it is done.',
  cannotPost:
    "I can't post in this channel, so I cancelled this request. Invite me first (e.g. `/invite @imagine`), or use /imagine in a channel I'm in.",
  expired: (days: number) =>
    `This grid has expired (grids are kept for ${formatDays(days)}). Run /imagine again to make a new one.`,
} as const;

function formatDays(days: number): string {
  if (days >= 1) return `${Number(days.toFixed(1))} day${days === 1 ? '' : 's'}`;
  const hours = days * 24;
  if (hours >= 1) return `${Number(hours.toFixed(1))} hours`;
  return `${Math.max(1, Math.round(hours * 60))} minutes`;
}

/** What progress rendering needs to know about a job; cached per job, fetched from the record after a restart. */
interface JobInfo {
  readonly target: JobTarget;
  readonly prompt: string;
}

interface ProgressState {
  latest?: ProgressEvent | undefined;
  /** Newest preview not shown yet: previews come in their own events, which a plain step event may follow. */
  preview?: Buffer | undefined;
  lastShownAt: number;
  timer?: NodeJS.Timeout | undefined;
  touchedAt: number;
}

const DEFAULT_PROGRESS_INTERVAL_MS = 2000;
const DEFAULT_ACK_PRIORITY_MS = 250;
/** Jobs remembered as finished, so late progress events never overwrite a result. */
const FINISHED_MEMORY = 10_000;
const PROGRESS_STATE_TTL_MS = 10 * 60_000;

export class ConversationService {
  readonly #jobs: Jobs;
  readonly #settings: ServiceSettings;
  readonly #log: ServiceLog;
  readonly #metrics: Pick<QueueMetrics, 'submit'> | undefined;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #progressInterval: number;
  readonly #surfaces = new Map<Surface, { surface: ChatSurface; subscriptions: Subscription[] }>();
  /** Per job, the tail of its serial chain: submit → queued → progress edits → result, in order. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #info = new Map<string, JobInfo>();
  readonly #finished = new Set<string>();
  readonly #progress = new Map<string, ProgressState>();
  readonly #ackPriorityMs: number;
  #pendingAcks = 0;
  readonly #ackWaiters: (() => void)[] = [];
  #closed = false;

  constructor(options: ConversationServiceOptions) {
    this.#jobs = options.jobs;
    this.#settings = options.settings;
    this.#log = options.log ?? SILENT_LOG;
    this.#metrics = options.metrics;
    this.#random = options.random ?? (() => randomInt(0, 2 ** 32) / 2 ** 32);
    this.#now = options.now ?? Date.now;
    this.#progressInterval = options.settings.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.#ackPriorityMs = options.ackPriorityMs ?? DEFAULT_ACK_PRIORITY_MS;
  }

  /** Registers a surface and subscribes to its deliveries and progress. Returns a detach function. */
  attach(surface: ChatSurface): () => Promise<void> {
    if (this.#surfaces.has(surface.surface))
      throw new Error(`surface ${surface.surface} is already attached`);
    const subscriptions = [
      this.#jobs.onDelivery(surface.surface, (event, ctx) => this.#deliver(surface, event, ctx)),
      this.#jobs.onProgress(surface.surface, (event) => this.#onProgress(surface, event)),
    ];
    this.#surfaces.set(surface.surface, { surface, subscriptions });
    return async () => {
      const entry = this.#surfaces.get(surface.surface);
      if (entry?.surface !== surface) return;
      this.#surfaces.delete(surface.surface);
      await Promise.all(entry.subscriptions.map((s) => s.close()));
    };
  }

  /**
   * `/imagine`. Parses (pure), then calls `reply.privately` (bad input: nothing queued) or
   * `reply.accept` before any I/O, submits, and shows seeds and queue position with `reply.queued`.
   * Never throws.
   */
  async imagine(command: ImagineCommand, reply: InteractionReply): Promise<void> {
    const surface = this.#surfaces.get(command.surface)?.surface;
    const parsed =
      command.text !== undefined
        ? parseImagineText(command.text, this.#settings.limits)
        : parseImagineOptions(command.options, this.#settings.limits);
    if (surface === undefined || !parsed.ok) {
      // Bad input never reaches the queue (which counts only what it refuses itself), so count it here.
      if (!parsed.ok) this.#metrics?.submit('invalid');
      const error = parsed.ok
        ? new InternalError(ErrorCode.Internal, `surface ${command.surface} not attached`)
        : parsed.error;
      const shown = reportError(this.#log, error, {
        surface: command.surface,
        user: command.user,
        action: 'imagine',
      });
      await this.#safe(() => reply.privately(shown.message, shown), 'reply.privately');
      return;
    }
    const accepted = this.#accept(reply);
    const request = parsed.value;
    const seeds = gridSeeds(request.seed ?? drawBaseSeed(this.#random));
    const spec: JobSpecInput = {
      v: JOB_SPEC_VERSION,
      kind: 'imagine',
      prompts: seeds.map(() => request.prompt),
      seeds,
      negative: request.negative,
      sampler: request.sampler,
      steps: request.steps,
      guidance: request.guidance,
      width: request.width,
      height: request.height,
      origin: originOf(command),
      requestedAt: this.#now(),
    };
    await this.#submitAndShow(surface, spec, reply, accepted, warningsFor(request, this.#settings.limits));
  }

  /** A button press: refine, reroll, full-size or cancel. Never throws. */
  async press(press: ControlPress, reply: InteractionReply): Promise<void> {
    const surface = this.#surfaces.get(press.surface)?.surface;
    const control = decodeControl(press.controlId);
    const context = { surface: press.surface, user: press.user, controlId: press.controlId };
    if (surface === undefined || control === null) {
      if (control === null) this.#log.warn(context, 'invalid control id');
      await this.#safe(
        () =>
          surface === undefined
            ? reply.privately('This surface is not ready.', {
                code: ErrorCode.Internal,
                message: 'surface not ready',
              })
            : reply.privately(MESSAGES.invalidControl, {
                code: ErrorCode.InvalidRequest,
                message: MESSAGES.invalidControl,
              }),
        'reply.privately',
      );
      return;
    }
    const accepted = this.#accept(reply);
    try {
      await this.#acksSettled();
      if (control.action === 'cancel') {
        await this.#jobs.cancel(control.recordId, {
          surface: press.surface,
          user: press.user,
          admin: this.#settings.adminUsers.includes(`${press.surface}:${press.user}`),
        });
        // The cancelled delivery edits the job's message publicly; nothing more to say here.
        await accepted;
        return;
      }
      const record = await this.#jobs.record(control.recordId);
      if (record === null)
        throw new UserError(ErrorCode.Expired, MESSAGES.expired(this.#settings.recordTtlDays));
      if (
        this.#settings.ownerOnlyButtons &&
        !(record.spec.origin.surface === press.surface && record.spec.origin.user === press.user)
      ) {
        throw new UserError(ErrorCode.Forbidden, MESSAGES.notOwner);
      }
      if (record.state.status.state !== 'done')
        throw new UserError(ErrorCode.InvalidRequest, MESSAGES.notFinished);
      if (control.action === 'upscale') {
        await this.#postImage(surface, record, control.index, press.user, reply, accepted);
        return;
      }
      const batch = batchOf(record);
      const next: NextBatch =
        control.action === 'refine'
          ? refine(batch, control.index, this.#settings.suffixes)
          : reroll(batch, drawBaseSeed(this.#random));
      const spec: JobSpecInput = {
        v: JOB_SPEC_VERSION,
        kind: next.kind,
        parent:
          next.parentIndex === undefined
            ? { gridId: record.id }
            : { gridId: record.id, index: next.parentIndex },
        prompts: [...next.prompts],
        seeds: [...next.seeds],
        negative: next.negative,
        sampler: next.sampler,
        steps: next.steps,
        guidance: next.guidance,
        width: next.width,
        height: next.height,
        origin: originOf(press),
        requestedAt: this.#now(),
      };
      await this.#submitAndShow(surface, spec, reply, accepted, []);
    } catch (error) {
      await accepted;
      const shown = reportError(this.#log, error, {
        ...context,
        action: control.action,
        recordId: control.recordId,
      });
      await this.#safe(() => reply.privately(shown.message, shown), 'reply.privately');
    }
  }

  /** Detaches every surface and waits for in-flight renders. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const entries = [...this.#surfaces.values()];
    this.#surfaces.clear();
    await Promise.all(entries.flatMap((e) => e.subscriptions.map((s) => s.close())));
    for (const state of this.#progress.values()) if (state.timer !== undefined) clearTimeout(state.timer);
    this.#progress.clear();
    await Promise.all(this.#chains.values());
  }

  // ——— interactions ———

  /** Starts the acknowledgement now; resolves to whether it worked (a redelivered interaction fails it). */
  #accept(reply: InteractionReply): Promise<boolean> {
    this.#pendingAcks++;
    return call(() => reply.accept())
      .then(
        () => true,
        (error: unknown) => {
          this.#log.warn({ err: error }, 'acknowledging the interaction failed');
          return false;
        },
      )
      .finally(() => {
        this.#pendingAcks--;
        if (this.#pendingAcks === 0) for (const wake of this.#ackWaiters.splice(0)) wake();
      });
  }

  /**
   * Acknowledgements have a hard deadline (3 s) and queueing has none: Redis and chat-API work for
   * new jobs waits until no acknowledgement is in flight, so a burst of commands is acknowledged
   * first. Bounded, so sustained load cannot starve submissions.
   */
  async #acksSettled(): Promise<void> {
    if (this.#pendingAcks === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#ackWaiters.push(resolve);
      timer = setTimeout(resolve, this.#ackPriorityMs);
    });
    clearTimeout(timer);
  }

  async #submitAndShow(
    surface: ChatSurface,
    spec: JobSpecInput,
    reply: InteractionReply,
    accepted: Promise<boolean>,
    warnings: readonly string[],
  ): Promise<void> {
    const origin = spec.origin;
    // The job id is derived from the interaction, so a delivery for it (or a progress event) that
    // races this submission queues behind the queued message on the same chain.
    const expectedId = jobIdFor(origin.surface, origin.interactionId);
    await this.#serial(expectedId, async () => {
      await this.#acksSettled();
      let result: Awaited<ReturnType<Jobs['submit']>>;
      try {
        result = await this.#jobs.submit(spec);
      } catch (error) {
        await accepted;
        const shown = reportError(this.#log, error, {
          surface: origin.surface,
          user: origin.user,
          action: spec.kind,
        });
        await this.#safe(() => reply.privately(shown.message, shown), 'reply.privately');
        return;
      }
      const ok = await accepted;
      if (result.duplicate) {
        this.#log.info(
          { jobId: result.jobId, interactionId: origin.interactionId },
          'duplicate interaction: nothing queued',
        );
        return;
      }
      const prompt = displayPrompt(spec.prompts);
      const target: JobTarget = {
        recordId: result.jobId,
        channel: origin.channel,
        ...(origin.thread === undefined ? {} : { thread: origin.thread }),
        messageRef: { ...origin.messageRef },
        requestedAt: spec.requestedAt,
        owner: origin.user,
      };
      this.#info.set(result.jobId, { target, prompt });
      if (!ok || this.#finished.has(result.jobId)) return;
      const view: QueuedView = {
        kind: 'queued',
        recordId: result.jobId,
        jobKind: spec.kind,
        seeds: result.seeds,
        position: result.position,
        warnings,
        text: queuedText(surface.markup, surface.limits.maxTextLength, {
          user: origin.user,
          prompt,
          jobKind: spec.kind,
          ...(spec.parent?.index === undefined ? {} : { parentIndex: spec.parent.index }),
          seeds: result.seeds,
          position: result.position,
          warnings,
        }),
        controls: cancelControls(result.jobId),
      };
      let patch: MessageRef | undefined;
      try {
        patch = await reply.queued(view);
      } catch (error) {
        this.#log.warn({ err: error, jobId: result.jobId }, 'showing the queued message failed');
        if (error instanceof PermanentDeliveryError) {
          // The bot can't post here (private channel it isn't in, a DM between two people, lost access):
          // the result could never be delivered, so don't spend a GPU on it, and say why.
          await this.#jobs
            .cancel(result.jobId, { surface: origin.surface, user: origin.user, admin: true })
            .catch((e: unknown) =>
              this.#log.warn({ err: e, jobId: result.jobId }, 'cancelling the undeliverable job failed'),
            );
          await this.#safe(
            () =>
              reply.privately(MESSAGES.cannotPost, {
                code: ErrorCode.Forbidden,
                message: MESSAGES.cannotPost,
              }),
            'reply.privately',
          );
        }
        return;
      }
      if (patch !== undefined && Object.keys(patch).length > 0) {
        this.#info.set(result.jobId, {
          target: { ...target, messageRef: mergeMessageRef(target.messageRef, patch) },
          prompt,
        });
        await this.#jobs.updateMessageRef(result.jobId, patch).catch((error: unknown) => {
          this.#log.warn({ err: error, jobId: result.jobId }, 'storing the message reference failed');
        });
      }
    });
  }

  async #postImage(
    surface: ChatSurface,
    record: GridRecord,
    index: number,
    user: string,
    reply: InteractionReply,
    accepted: Promise<boolean>,
  ): Promise<void> {
    const prompt = record.spec.prompts[index];
    const seed = record.spec.seeds[index];
    if (prompt === undefined || seed === undefined) {
      throw new UserError(
        ErrorCode.InvalidRequest,
        `This grid has images 1 to ${record.spec.prompts.length}.`,
      );
    }
    const png = await this.#jobs.imagePng(record.id, index);
    if (png === null) throw new UserError(ErrorCode.Expired, MESSAGES.expired(this.#settings.recordTtlDays));
    const file = await fitUpload(png, `${record.id}-${index + 1}`, surface.limits.maxUploadBytes);
    if (!(await accepted)) return;
    await reply.image({
      kind: 'image',
      recordId: record.id,
      index,
      seed,
      prompt,
      file,
      text: imageText(surface.markup, surface.limits.maxTextLength, { user, index, seed, prompt }),
    });
  }

  // ——— deliveries ———

  async #deliver(surface: ChatSurface, event: DeliveryEvent, ctx: DeliveryContext): Promise<void> {
    const record = event.record;
    this.#markFinished(record.id);
    await this.#acksSettled();
    await this.#serial(record.id, async () => {
      const target = this.#targetOf(record);
      const m = surface.markup;
      const max = surface.limits.maxTextLength;
      const prompt = displayPrompt(record.spec.prompts);
      switch (event.type) {
        case 'done':
          await ctx.once(`${surface.surface}:grid`, async () =>
            surface.showGrid(target, await this.#gridView(surface, record, event.grid), ctx),
          );
          break;
        case 'failed': {
          const reason = event.userFacing
            ? event.reason
            : `something went wrong on our side${event.errorId === undefined ? '' : ` (error id ${event.errorId})`}. Please try again.`;
          await ctx.once(`${surface.surface}:failed`, () =>
            surface.showFailure(target, {
              kind: 'failed',
              recordId: record.id,
              reason,
              ...(event.errorId === undefined ? {} : { errorId: event.errorId }),
              text: failureText(m, max, { owner: record.spec.origin.user, prompt, reason }),
            }),
          );
          break;
        }
        case 'cancelled': {
          const by = displayUser(m, surface.surface, event.by);
          await ctx.once(`${surface.surface}:cancelled`, () =>
            surface.showCancelled(target, {
              kind: 'cancelled',
              recordId: record.id,
              by: event.by,
              text: cancelledText(m, max, { owner: record.spec.origin.user, prompt, by }),
            }),
          );
          break;
        }
      }
    });
    this.#info.delete(record.id);
  }

  async #gridView(surface: ChatSurface, record: GridRecord, grid: Buffer): Promise<GridView> {
    const images: GridImageInfo[] = record.spec.prompts.map((prompt, index) => ({
      index,
      prompt,
      seed: record.spec.seeds[index] ?? 0,
      truncatedTokens: record.result?.truncatedTokens[index] ?? 0,
    }));
    const settings = settingsOf(record);
    const notes = gridNotes(images, record.result?.model, record.result?.nsfw);
    const file = await fitUpload(grid, `${record.id}-grid`, surface.limits.maxUploadBytes);
    return {
      kind: 'grid',
      recordId: record.id,
      jobKind: record.spec.kind,
      owner: record.spec.origin.user,
      images,
      settings,
      notes,
      file,
      controls: gridControls(record.id, images.length),
      text: gridText(surface.markup, surface.limits.maxTextLength, {
        owner: record.spec.origin.user,
        jobKind: record.spec.kind,
        ...(record.spec.parent?.index === undefined ? {} : { parentIndex: record.spec.parent.index }),
        images,
        settings,
        notes,
      }),
    };
  }

  /** Where the record's messages are: the stored messageRef, plus any patch this process has not seen stored yet. */
  #targetOf(record: GridRecord): JobTarget {
    const cached = this.#info.get(record.id)?.target;
    const thread = record.spec.origin.thread;
    return {
      recordId: record.id,
      channel: record.spec.origin.channel,
      ...(thread === undefined ? {} : { thread }),
      messageRef: mergeMessageRef(record.state.messageRef, cached?.messageRef),
      requestedAt: record.spec.requestedAt,
      owner: record.spec.origin.user,
    };
  }

  #markFinished(id: string): void {
    this.#finished.add(id);
    if (this.#finished.size > FINISHED_MEMORY) {
      const oldest = this.#finished.values().next().value;
      if (oldest !== undefined) this.#finished.delete(oldest);
    }
    const state = this.#progress.get(id);
    if (state?.timer !== undefined) clearTimeout(state.timer);
    this.#progress.delete(id);
  }

  // ——— progress ———

  /** Throttles to one edit per interval per job, always showing the latest event (trailing edge). */
  #onProgress(surface: ChatSurface, event: ProgressEvent): void {
    if (this.#closed || this.#finished.has(event.jobId)) return;
    const now = this.#now();
    let state = this.#progress.get(event.jobId);
    if (state === undefined) {
      this.#pruneProgress(now);
      state = { lastShownAt: 0, touchedAt: now };
      this.#progress.set(event.jobId, state);
    }
    state.latest = event;
    if (event.preview !== undefined) state.preview = event.preview;
    state.touchedAt = now;
    if (state.timer !== undefined) return;
    const wait = Math.max(0, state.lastShownAt + this.#progressInterval - now);
    const current = state;
    current.timer = setTimeout(() => {
      current.timer = undefined;
      const event = current.latest;
      const preview = event?.preview ?? current.preview;
      current.latest = undefined;
      current.preview = undefined;
      if (event === undefined || this.#finished.has(event.jobId)) return;
      const latest: ProgressEvent = preview === undefined ? event : { ...event, preview };
      current.lastShownAt = this.#now();
      void this.#serial(latest.jobId, async () => {
        await this.#acksSettled();
        await this.#showProgress(surface, latest);
      });
    }, wait);
  }

  #pruneProgress(now: number): void {
    for (const [id, state] of this.#progress) {
      if (now - state.touchedAt > PROGRESS_STATE_TTL_MS && state.timer === undefined)
        this.#progress.delete(id);
    }
  }

  async #showProgress(surface: ChatSurface, event: ProgressEvent): Promise<void> {
    if (this.#finished.has(event.jobId)) return;
    try {
      let info = this.#info.get(event.jobId);
      if (info === undefined) {
        const record = await this.#jobs.record(event.jobId);
        if (record === null || this.#finished.has(event.jobId)) return;
        info = { target: this.#targetOf(record), prompt: displayPrompt(record.spec.prompts) };
        this.#info.set(event.jobId, info);
      }
      const percent = event.total > 0 ? Math.round((100 * event.step) / event.total) : 0;
      await surface.showProgress(info.target, {
        kind: 'progress',
        recordId: event.jobId,
        step: event.step,
        total: event.total,
        percent,
        text: progressText(surface.markup, surface.limits.maxTextLength, {
          user: info.target.owner,
          prompt: info.prompt,
          step: event.step,
          total: event.total,
          percent,
        }),
        ...(event.preview !== undefined && surface.limits.progressPreviews
          ? { preview: { name: 'preview.png', contentType: 'image/png' as const, data: event.preview } }
          : {}),
        controls: cancelControls(event.jobId),
      });
    } catch (error) {
      this.#log.debug({ err: error, jobId: event.jobId }, 'progress edit failed (progress is best effort)');
    }
  }

  // ——— helpers ———

  /** Runs `run` after everything queued before it for this job; errors reach the caller, not the chain. */
  #serial<T>(id: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(id) ?? Promise.resolve();
    const result = previous.then(run);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(id, tail);
    void tail.then(() => {
      if (this.#chains.get(id) === tail) this.#chains.delete(id);
    });
    return result;
  }

  async #safe(run: () => Promise<unknown>, what: string): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.#log.warn({ err: error }, `${what} failed`);
    }
  }
}

/** Calls an adapter method, turning a synchronous throw into a rejection. */
function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (error) {
    return Promise.reject(error);
  }
}

function originOf(action: ImagineCommand | ControlPress): JobSpecInput['origin'] {
  return {
    surface: action.surface,
    user: action.user,
    ...(action.userName === undefined ? {} : { userName: action.userName }),
    channel: action.channel,
    ...(action.thread === undefined ? {} : { thread: action.thread }),
    interactionId: action.interactionId,
    messageRef: { ...action.messageRef },
  };
}

function batchOf(record: GridRecord): GridBatch {
  return { prompts: record.spec.prompts, seeds: record.spec.seeds, ...settingsOf(record) };
}

function settingsOf(record: GridRecord): Omit<GridBatch, 'prompts' | 'seeds'> {
  const s = record.spec;
  return {
    negative: s.negative,
    sampler: s.sampler,
    steps: s.steps,
    guidance: s.guidance,
    width: s.width,
    height: s.height,
  };
}

/** One prompt for captions: the shared prompt, or (refinements) the common stem before the suffixes. */
export function displayPrompt(prompts: readonly string[]): string {
  const first = prompts[0] ?? '';
  if (prompts.every((p) => p === first)) return first;
  let end = first.length;
  for (const p of prompts) {
    let i = 0;
    while (i < end && i < p.length && p[i] === first[i]) i++;
    end = i;
  }
  const stem = first
    .slice(0, end)
    .replace(/[\s,;]+$/u, '')
    .trim();
  return stem === '' ? first : stem;
}

function displayUser(m: ChatSurface['markup'], surface: Surface, by: string): string {
  const prefix = `${surface}:`;
  if (by.startsWith(prefix)) return m.mention(by.slice(prefix.length));
  if (/^[A-Za-z0-9_-]+$/u.test(by)) return m.mention(by);
  return m.escape(by);
}

/** Hints shown with the queued message; they never block a request. */
function warningsFor(request: ImagineRequest, limits: RequestLimits): string[] {
  const warnings: string[] = [];
  const side = Math.max(limits.defaultWidth, limits.defaultHeight);
  if (request.width >= side * 1.5 || request.height >= side * 1.5) {
    warnings.push(
      `${request.width}×${request.height} is far from the model's native ${limits.defaultWidth}×${limits.defaultHeight}; subjects may repeat or stretch.`,
    );
  }
  if (request.guidance <= 1 && request.negative !== '') {
    warnings.push(
      'Guidance of 1 or less turns classifier-free guidance off, so the negative prompt has no effect.',
    );
  }
  return warnings;
}
