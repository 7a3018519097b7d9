import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { ErrorCode, InternalError, reportError, UserError } from '../core/errors.ts';
import { type JobSpec, type JobSpecInput, jobIdFor, parseJobSpec, type Surface } from '../core/jobspec.ts';
import {
  closeRedisClient,
  createRedisClient,
  isUnavailableError,
  REQUEST_TIMEOUT_MS,
  type RedisClient,
  type RedisConnection,
  settleWithin,
  whenConnected,
} from './connection.ts';
import {
  DELIVERY_DEFAULTS,
  type DeliveryOptions,
  DeliveryQueues,
  startDeliveryConsumer,
} from './delivery.ts';
import {
  alreadyEndedError,
  assertMessageRefPatch,
  invalidSpecError,
  jobGoneError,
  queueFullError,
  userCapError,
} from './job-errors.ts';
import { GENERATE_QUEUE, type QueueKeys, queueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { noopMetrics, type QueueMetrics } from './metrics.ts';
import {
  decodeRecord,
  decodeStatus,
  RENDER_JOB,
  type RecordBase,
  type RenderedMessage,
  type RenderJobData,
} from './records.ts';
import { CANCEL, FINISH, MERGE_MESSAGE_REF, RESERVE, runScript, stringReply, UNRESERVE } from './scripts.ts';
import type {
  CancelBy,
  DeliveryContext,
  DeliveryEvent,
  GridRecord,
  JobStatus,
  Jobs,
  ProgressEvent,
  SubmitResult,
  Subscription,
} from './types.ts';

export interface BackoffOptions {
  readonly type: 'exponential' | 'fixed';
  /** First retry delay in ms (exponential doubles it per attempt). */
  readonly delayMs: number;
}

export interface JobsOptions {
  readonly connection: RedisConnection;
  /**
   * Namespace of every key (BullMQ's and ours). Use a hash tag such as `{imagine}` on a Cluster.
   * @defaultValue `'imagine'`
   */
  readonly prefix?: string;
  readonly limits?: {
    /**
     * Queued plus running jobs one user may have.
     * @defaultValue 2
     */
    readonly perUser?: number;
    /**
     * Queued plus running jobs in total; past it, submit answers "queue full, try again in N s".
     * @defaultValue 200
     */
    readonly queueDepth?: number;
  };
  /**
   * How long a grid record is kept once its job has ended (queued and running jobs never expire).
   * @defaultValue 30 days
   */
  readonly recordTtlMs?: number;
  /**
   * How long gridPng/imagePng wait for a missing PNG to be made again before answering "try again".
   * @defaultValue 120000
   */
  readonly renderWaitMs?: number;
  /**
   * Runs per generation job before a transient failure becomes final.
   * @defaultValue 3
   */
  readonly attempts?: number;
  /** @defaultValue `{ type: 'exponential', delayMs: 2000 }` */
  readonly backoff?: BackoffOptions;
  readonly delivery?: DeliveryOptions;
  /**
   * A reservation whose BullMQ job never appeared (the submitter died in between) frees its slot
   * after this long.
   * @defaultValue 60000
   */
  readonly orphanGraceMs?: number;
  readonly logger: QueueLogger;
  readonly metrics?: QueueMetrics;
}

export const JOBS_DEFAULTS = {
  prefix: 'imagine',
  perUser: 2,
  queueDepth: 200,
  recordTtlMs: 30 * 24 * 60 * 60 * 1000,
  attempts: 3,
  backoff: { type: 'exponential', delayMs: 2000 },
  orphanGraceMs: 60_000,
  renderWaitMs: 120_000,
} as const satisfies {
  prefix: string;
  perUser: number;
  queueDepth: number;
  recordTtlMs: number;
  attempts: number;
  backoff: BackoffOptions;
  orphanGraceMs: number;
  renderWaitMs: number;
};

/** Retry-After of an "unavailable" answer: Redis reconnects within about 2 s of coming back. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/** What a caller is told while Redis can't be reached: a 503 with Retry-After, never a 500 or a hang. */
export function unavailableError(cause: unknown): UserError {
  return new UserError(
    ErrorCode.Unavailable,
    `The image service is temporarily unavailable (it can't reach its job queue). Please try again in about ${UNAVAILABLE_RETRY_AFTER_S} seconds.`,
    { cause, retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_S },
  );
}

/** Longest wait for BullMQ's queues and consumers to close before their connections are dropped. */
const CLOSE_TIMEOUT_MS = 5000;

/** Default time a queue slot takes to free up, before any job has been timed. */
const DEFAULT_JOB_MS = 30_000;

/** Seconds until a slot should free up: about one average job, within sane bounds. */
export async function retryAfterSeconds(client: RedisClient, keys: QueueKeys): Promise<number> {
  const avg = Number((await client.hget(keys.stats, 'avgJobMs')) ?? DEFAULT_JOB_MS);
  const ms = Number.isFinite(avg) && avg > 0 ? avg : DEFAULT_JOB_MS;
  return Math.min(3600, Math.max(5, Math.ceil(ms / 1000)));
}

/**
 * A pipeline's replies, throwing its first error: ioredis resolves a pipeline whose commands failed
 * (timed out, connection lost) with per-command errors, which must not read as "no such key".
 */
export function pipelineReplies(replies: [Error | null, unknown][] | null): unknown[] {
  if (replies === null) throw new Error('Connection is closed.');
  const failed = replies.find(([error]) => error !== null);
  if (failed !== undefined) throw failed[0];
  return replies.map(([, value]) => value);
}

/** Jobs ahead of `id` in the wait list (BullMQ pushes on the left and takes from the right). */
export async function queuePosition(client: RedisClient, keys: QueueKeys, id: string): Promise<number> {
  const waitKey = `${keys.generateJobPrefix}wait`;
  const replies = pipelineReplies(await client.pipeline().lpos(waitKey, id).llen(waitKey).exec());
  const pos = replies[0];
  const len = Number(replies[1] ?? 0);
  // Not in the wait list (delayed for a retry, or just taken): behind everything waiting.
  if (typeof pos !== 'number') return len;
  return Math.max(0, len - 1 - pos);
}

export async function loadRecord(
  client: RedisClient,
  keys: QueueKeys,
  id: string,
): Promise<GridRecord | null> {
  return decodeRecord(id, await client.hgetall(keys.record(id)));
}

/** The Jobs interface on BullMQ and Redis. See queue/types.ts for the contract. */
export function createJobs(options: JobsOptions): Jobs {
  const prefix = options.prefix ?? JOBS_DEFAULTS.prefix;
  const perUser = options.limits?.perUser ?? JOBS_DEFAULTS.perUser;
  const queueDepth = options.limits?.queueDepth ?? JOBS_DEFAULTS.queueDepth;
  const recordTtlMs = options.recordTtlMs ?? JOBS_DEFAULTS.recordTtlMs;
  const attempts = options.attempts ?? JOBS_DEFAULTS.attempts;
  const backoff = options.backoff ?? JOBS_DEFAULTS.backoff;
  const orphanGraceMs = options.orphanGraceMs ?? JOBS_DEFAULTS.orphanGraceMs;
  const renderWaitMs = options.renderWaitMs ?? JOBS_DEFAULTS.renderWaitMs;
  const deliveryOptions = { ...DELIVERY_DEFAULTS, ...options.delivery };
  const { logger } = options;
  const metrics = options.metrics ?? noopMetrics;
  const keys = queueKeys(prefix);

  // Request path: fails a command instead of hanging while Redis is down.
  const client = createRedisClient(options.connection, { blocking: false });
  client.on('error', (error) => logger.warn({ err: error }, 'redis connection error (jobs)'));
  // Submit calls whose caller was told they failed, by id → attempt token: their reservation is
  // undone (it may still have run: a hung Redis runs it when it wakes up). Retried until it is done.
  const undo = new Map<string, string>();
  let undoTimer: NodeJS.Timeout | undefined;
  client.on('ready', () => flushUndo());
  let consumerClient: RedisClient | undefined;
  let subscriber: RedisClient | undefined;
  const progressHandlers = new Map<string, Set<(event: ProgressEvent) => void>>();
  const renderWaiters = new Map<string, Set<(message: RenderedMessage) => void>>();
  let renderSubscription: Promise<unknown> | undefined;
  const consumers = new Set<Subscription>();
  let closed = false;

  const generate = new Queue<JobSpec>(GENERATE_QUEUE, {
    connection: client,
    prefix,
    defaultJobOptions: {
      attempts,
      backoff: { type: backoff.type, delay: backoff.delayMs },
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 7 * 86_400 },
    },
  });
  generate.on('error', (error) => logger.warn({ err: error }, 'generate queue error'));
  const deliveries = new DeliveryQueues(client, prefix, deliveryOptions);

  function assertOpen(): void {
    if (closed) throw new InternalError(ErrorCode.Internal, 'jobs client is closed');
  }

  /**
   * Runs one request against Redis: waits up to REQUEST_TIMEOUT_MS for a connection, and turns
   * "Redis unreachable / no answer" into the user-facing E_UNAVAILABLE (503 + Retry-After).
   */
  async function guarded<T>(run: () => Promise<T>): Promise<T> {
    assertOpen();
    try {
      await whenConnected(client);
      return await run();
    } catch (error) {
      throw isUnavailableError(error) ? unavailableError(error) : error;
    }
  }

  /** Undoes a failed submit's reservation now, and again on reconnect until Redis confirms it. */
  function abandon(id: string, attempt: string): void {
    undo.set(id, attempt);
    flushUndo();
  }

  function flushUndo(): void {
    if (undoTimer !== undefined) clearTimeout(undoTimer);
    undoTimer = undefined;
    if (closed || undo.size === 0) return;
    // Sent at once, on the same connection as the failed call, so Redis runs it right after that
    // call; EVAL, not EVALSHA, so a NOSCRIPT round trip can't let other commands go first.
    const pending = [...undo].map(([id, attempt]) =>
      client.eval(UNRESERVE.source, 2, keys.record(id), keys.unfinished, id, attempt).then(
        (removed) => {
          if (undo.get(id) === attempt) undo.delete(id);
          if (Number(removed) === 1) logger.info({ jobId: id }, 'undid the reservation of a failed submit');
        },
        () => {},
      ),
    );
    void Promise.all(pending).then(() => {
      if (!closed && undo.size > 0 && undoTimer === undefined) {
        undoTimer = setTimeout(flushUndo, REQUEST_TIMEOUT_MS);
        undoTimer.unref();
      }
    });
  }

  async function submit(input: JobSpecInput): Promise<SubmitResult> {
    return guarded(() => submitNow(input));
  }

  async function submitNow(input: JobSpecInput): Promise<SubmitResult> {
    const parsed = parseJobSpec(input);
    if (!parsed.ok) {
      metrics.submit('invalid');
      throw invalidSpecError(parsed.message);
    }
    const spec = parsed.spec;
    const origin = spec.origin;
    const id = jobIdFor(origin.surface, origin.interactionId);
    const now = Date.now();
    const base: RecordBase = {
      id,
      spec,
      prompts: spec.prompts,
      seeds: spec.seeds,
      owner: { surface: origin.surface, user: origin.user },
      surface: origin.surface,
      channel: origin.channel,
      createdAt: now,
      expiresAt: now + recordTtlMs,
    };
    const attempt = randomUUID();
    let reserveReply: unknown;
    try {
      reserveReply = await runScript(
        client,
        RESERVE,
        [keys.record(id), keys.userJobs(origin.surface, origin.user), keys.unfinished],
        [
          id,
          JSON.stringify(base),
          JSON.stringify({ state: 'queued', position: 0 }),
          JSON.stringify(origin.messageRef),
          recordTtlMs,
          perUser,
          queueDepth,
          now,
          orphanGraceMs,
          keys.recordPrefix,
          keys.generateJobPrefix,
          attempt,
        ],
      );
    } catch (error) {
      // No answer is not "not run": a hung Redis runs the reservation when it wakes up.
      if (isUnavailableError(error)) abandon(id, attempt);
      throw error;
    }
    const reply = stringReply(reserveReply);
    const [outcome, detail = ''] = reply;
    switch (outcome) {
      case 'duplicate':
        return duplicate(id, detail);
      case 'user': {
        metrics.submit('refused_user_cap');
        const retryAfter = await retryAfterSeconds(client, keys);
        throw userCapError(Number(detail), perUser, retryAfter, { id, user: origin.user });
      }
      case 'full': {
        metrics.submit('refused_queue_full');
        const retryAfter = await retryAfterSeconds(client, keys);
        throw queueFullError(Number(detail), queueDepth, retryAfter, { id });
      }
      case 'ok':
        break;
      default:
        throw new InternalError(ErrorCode.Redis, `unexpected reserve reply ${JSON.stringify(reply)}`);
    }
    try {
      await generate.add('generate', spec, { jobId: id });
    } catch (error) {
      // The caller is told it failed, so the reservation goes (the user can retry at once). Should
      // the add still run later, its job finds no record and the worker drops it unrun.
      abandon(id, attempt);
      if (isUnavailableError(error)) throw error;
      throw new InternalError(ErrorCode.Redis, 'could not enqueue the job', {
        cause: error,
        context: { id },
      });
    }
    metrics.submit('accepted');
    // Queued now: from here on the answer is a success, even if the position can't be read.
    const position = await queuePosition(client, keys, id).catch(() => Number(detail) || 0);
    return { jobId: id, seeds: spec.seeds, position, duplicate: false };
  }

  /** A redelivered interaction: answer from the record; re-enqueue a queued job whose enqueue was lost. */
  async function duplicate(id: string, state: string): Promise<SubmitResult> {
    metrics.submit('duplicate');
    const record = await loadRecord(client, keys, id);
    if (record === null) {
      // Expired between the two reads: extremely unlikely; report it as an internal hiccup.
      throw new InternalError(ErrorCode.Redis, `record ${id} vanished while submitting`);
    }
    if (state === 'queued' && (await generate.getJob(id)) === undefined) {
      logger.warn({ jobId: id }, 're-enqueueing a queued job whose BullMQ job was missing');
      await generate.add('generate', record.spec, { jobId: id });
    }
    const position = state === 'queued' ? await queuePosition(client, keys, id) : 0;
    return { jobId: id, seeds: record.seeds, position, duplicate: true };
  }

  async function status(id: string): Promise<JobStatus | null> {
    return guarded(() => statusNow(id));
  }

  async function statusNow(id: string): Promise<JobStatus | null> {
    const replies = pipelineReplies(
      await client.pipeline().hmget(keys.record(id), 'state', 'status').get(keys.progress(id)).exec(),
    );
    const fields = replies[0] as (string | null)[] | undefined;
    const progress = replies[1] as string | null | undefined;
    const state = fields?.[0];
    const statusText = fields?.[1];
    if (state === null || state === undefined || statusText === null || statusText === undefined) return null;
    if (state === 'queued') return { state: 'queued', position: await queuePosition(client, keys, id) };
    if (state === 'running' && typeof progress === 'string') {
      const [step, total] = progress.split('/').map(Number);
      if (step !== undefined && total !== undefined && Number.isFinite(step) && Number.isFinite(total)) {
        return { state: 'running', step, total };
      }
    }
    return decodeStatus(id, statusText);
  }

  async function cancel(id: string, by: CancelBy): Promise<JobStatus> {
    return guarded(() => cancelNow(id, by));
  }

  async function cancelNow(id: string, by: CancelBy): Promise<JobStatus> {
    const record = await loadRecord(client, keys, id);
    if (record === null) {
      throw jobGoneError(id);
    }
    const cancelled: JobStatus = { state: 'cancelled', by: by.user };
    const [outcome, previous = ''] = stringReply(
      await runScript(client, CANCEL, [keys.record(id)], [JSON.stringify(cancelled), by.user, Date.now()]),
    );
    if (outcome === 'missing') {
      throw jobGoneError(id);
    }
    if (outcome === 'terminal') {
      throw alreadyEndedError(id, previous);
    }
    // Tell whichever worker runs it (any process); it aborts at the next step and delivers.
    await client.publish(keys.cancelChannel, id);
    if (previous === 'queued') {
      const removed = await generate.remove(id);
      // Not removed and not active: the job is gone from BullMQ (never enqueued), so nobody else will
      // deliver. Active: the worker has it and will see the cancel.
      const state = removed === 1 ? 'removed' : await generate.getJobState(id);
      if (state !== 'active') {
        await runScript(
          client,
          FINISH,
          [keys.record(id), keys.unfinished, keys.progress(id)],
          [id, 'cancelled', JSON.stringify(cancelled), '', '', Date.now()],
        );
        await deliveries.enqueue(id, record.surface);
      }
    }
    metrics.jobFinished('cancelled');
    logger.info({ jobId: id, by: by.user, was: previous }, 'job cancelled');
    return cancelled;
  }

  async function record(id: string): Promise<GridRecord | null> {
    return guarded(() => recordNow(id));
  }

  async function recordNow(id: string): Promise<GridRecord | null> {
    return loadRecord(client, keys, id);
  }

  async function gridPng(id: string): Promise<Buffer | null> {
    return guarded(() => gridPngNow(id));
  }

  async function gridPngNow(id: string): Promise<Buffer | null> {
    return pngOrRender(id, keys.grid(id));
  }

  /** A stored PNG, or, for a finished grid whose PNGs were dropped (TTL, budget), the re-rendered one. */
  async function pngOrRender(id: string, key: string, index?: number): Promise<Buffer | null> {
    const png = await client.getBuffer(key);
    if (png !== null) return png;
    const record = await loadRecord(client, keys, id);
    if (record === null || record.status.state !== 'done') return null;
    if (index !== undefined && index >= (record.resultKeys?.images.length ?? record.prompts.length))
      return null;
    await rerender(id, key);
    return client.getBuffer(key);
  }

  /**
   * Makes a finished grid's PNGs again through the generate queue and waits for them. The job is
   * deduplicated by grid id (BullMQ deduplication, until it ends), so concurrent presses make one;
   * LIFO, so a person waiting on a button goes before the queue.
   */
  async function rerender(id: string, key: string): Promise<void> {
    let wake: (message: RenderedMessage) => void = () => {};
    const ended = new Promise<RenderedMessage>((resolve) => {
      wake = resolve;
    });
    let waiters = renderWaiters.get(id);
    if (waiters === undefined) {
      waiters = new Set();
      renderWaiters.set(id, waiters);
    }
    waiters.add(wake);
    let timer: NodeJS.Timeout | undefined;
    try {
      renderSubscription ??= ensureSubscriber()
        .subscribe(keys.renderedChannel)
        .catch((error: unknown) => {
          renderSubscription = undefined;
          throw error;
        });
      await renderSubscription;
      // Made by another caller's job between the first read and the subscription.
      if ((await client.exists(key)) === 1) return;
      const data: RenderJobData = { render: id };
      await generate.add(RENDER_JOB, data as unknown as JobSpec, {
        deduplication: { id: `render:${id}` },
        lifo: true,
        removeOnComplete: true,
        removeOnFail: { age: 86_400 },
      });
      logger.info({ jobId: id }, 'PNGs of a finished grid are gone: making them again');
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), renderWaitMs);
      });
      const message = await Promise.race([ended, timeout]);
      if (message === undefined) {
        throw new UserError(
          ErrorCode.Unavailable,
          `This image is being made again (it had been cleared from storage) and is not ready yet. Please try again in about a minute.`,
          { retryAfterSeconds: 60, context: { id } },
        );
      }
      if (!message.ok) {
        if (message.userFacing === true) {
          throw new UserError(ErrorCode.Expired, message.reason ?? 'This image can no longer be made.', {
            context: { id },
          });
        }
        throw new InternalError(ErrorCode.Inference, `re-rendering ${id} failed: ${message.reason ?? ''}`, {
          context: { id },
        });
      }
    } finally {
      clearTimeout(timer);
      waiters.delete(wake);
      if (waiters.size === 0) renderWaiters.delete(id);
    }
  }

  async function imagePng(id: string, index: number): Promise<Buffer | null> {
    return guarded(() => imagePngNow(id, index));
  }

  async function imagePngNow(id: string, index: number): Promise<Buffer | null> {
    if (!Number.isInteger(index) || index < 0) return null;
    return pngOrRender(id, keys.image(id, index), index);
  }

  async function updateMessageRef(id: string, patch: Readonly<Record<string, string>>): Promise<void> {
    return guarded(() => updateMessageRefNow(id, patch));
  }

  async function updateMessageRefNow(id: string, patch: Readonly<Record<string, string>>): Promise<void> {
    assertMessageRefPatch(patch);
    if (Object.keys(patch).length === 0) return;
    const updated = await runScript(client, MERGE_MESSAGE_REF, [keys.record(id)], [JSON.stringify(patch)]);
    if (Number(updated) !== 1) {
      throw jobGoneError(id);
    }
  }

  function onDelivery(
    surface: Surface,
    handler: (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>,
  ): Subscription {
    assertOpen();
    consumerClient ??= createRedisClient(options.connection, { blocking: true });
    const consumer = startDeliveryConsumer({
      client: consumerClient,
      prefix,
      keys,
      surface,
      options: deliveryOptions,
      handler,
      loadRecord: (id) => loadRecord(client, keys, id),
      gridPng: (id) => gridPngNow(id),
      imagePng: (id, index) => imagePngNow(id, index),
      logger,
      metrics,
    });
    consumers.add(consumer);
    return {
      close: async () => {
        consumers.delete(consumer);
        // Bounded like close(): BullMQ waits for a connection that may never come back.
        await settleWithin(consumer.close(), CLOSE_TIMEOUT_MS);
      },
    };
  }

  function ensureSubscriber(): RedisClient {
    if (subscriber !== undefined) return subscriber;
    const sub = createRedisClient(options.connection, { blocking: true });
    sub.on('error', (error) => logger.warn({ err: error }, 'redis connection error (progress)'));
    sub.on('message', (channel: string, message: string) => {
      if (channel === keys.renderedChannel) {
        onRendered(message);
        return;
      }
      const handlers = progressHandlers.get(channel);
      if (handlers === undefined || handlers.size === 0) return;
      let event: ProgressEvent;
      try {
        const raw = JSON.parse(message) as {
          jobId: string;
          surface: Surface;
          step: number;
          total: number;
          preview?: string;
        };
        event = {
          jobId: raw.jobId,
          surface: raw.surface,
          step: raw.step,
          total: raw.total,
          ...(typeof raw.preview === 'string' ? { preview: Buffer.from(raw.preview, 'base64') } : {}),
        };
      } catch (error) {
        logger.warn({ err: error, channel }, 'unreadable progress message dropped');
        return;
      }
      for (const handler of handlers) {
        try {
          handler(event);
        } catch (error) {
          reportError(logger, error, { jobId: event.jobId, where: 'progress handler' });
        }
      }
    });
    subscriber = sub;
    return sub;
  }

  function onRendered(text: string): void {
    let message: RenderedMessage;
    try {
      message = JSON.parse(text) as RenderedMessage;
    } catch (error) {
      logger.warn({ err: error }, 'unreadable rendered message dropped');
      return;
    }
    for (const wake of renderWaiters.get(message.id) ?? []) wake(message);
  }

  function onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription {
    assertOpen();
    const channel = keys.progressChannel(surface);
    let handlers = progressHandlers.get(channel);
    if (handlers === undefined) {
      handlers = new Set();
      progressHandlers.set(channel, handlers);
      ensureSubscriber()
        .subscribe(channel)
        .catch((error: unknown) => reportError(logger, error, { channel, where: 'progress subscribe' }));
    }
    handlers.add(handler);
    return {
      close: async () => {
        const set = progressHandlers.get(channel);
        set?.delete(handler);
        if (set !== undefined && set.size === 0 && subscriber !== undefined && !closed) {
          progressHandlers.delete(channel);
          // The subscriber retries forever while Redis is gone: don't wait on it past the bound.
          await settleWithin(subscriber.unsubscribe(channel), CLOSE_TIMEOUT_MS);
        }
      },
    };
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    // Callers waiting on a re-render get an answer now rather than at their timeout.
    for (const [id, waiters] of renderWaiters) {
      for (const wake of waiters) wake({ id, ok: false, reason: 'the jobs client closed' });
    }
    // BullMQ's closes wait for a connection that may never come back (Redis gone): bounded, after
    // which the clients below are disconnected anyway.
    await settleWithin(Promise.all([...consumers].map((c) => c.close())), CLOSE_TIMEOUT_MS);
    consumers.clear();
    await settleWithin(Promise.all([deliveries.close(), generate.close()]), CLOSE_TIMEOUT_MS);
    progressHandlers.clear();
    await Promise.all(
      [subscriber, consumerClient, client].map((c) => (c === undefined ? undefined : closeRedisClient(c))),
    );
  }

  return {
    submit,
    status,
    cancel,
    record,
    gridPng,
    imagePng,
    updateMessageRef,
    onDelivery,
    onProgress,
    close,
  };
}
