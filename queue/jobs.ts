import { Queue } from 'bullmq';
import { ErrorCode, InternalError } from '../core/errors.ts';
import type { ModelGenerationDefaults } from '../core/generation-defaults.ts';
import type { JobSpec, JobSpecInput, Surface } from '../core/jobspec.ts';
import { createCancel } from './cancel.ts';
import {
  closeRedisClient,
  createRedisClient,
  isUnavailableError,
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
import { CLOSE_TIMEOUT_MS, createJobEvents } from './events.ts';
import { createGridImages, type GridImages } from './images.ts';
import { assertMessageRefPatch, jobGoneError } from './job-errors.ts';
import type { JobsContext } from './jobs-context.ts';
import { generateQueueName, queueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { noopMetrics, type QueueMetrics } from './metrics.ts';
import { dropOnFailedStart } from './queue-cache.ts';
import { loadRecord, pipelineReplies, queuePosition, unavailableError } from './queue-state.ts';
import { decodeStatus } from './records.ts';
import { MERGE_MESSAGE_REF, runScript } from './scripts.ts';
import { servedDefaults, servedRevisions } from './served.ts';
import { createSubmit } from './submit.ts';
import type {
  CancelBy,
  DeliveryContext,
  DeliveryEvent,
  GridRecord,
  JobStatus,
  Jobs,
  MessageRef,
  ProgressEvent,
  SubmitOptions,
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
  /**
   * Teams take turns on the GPU (queue/fairness.ts): a team's burst waits behind one job of each
   * other team rather than in front of all of them. false: plain FIFO.
   * @defaultValue true
   */
  readonly fairSharing?: boolean;
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
  fairSharing: true,
} as const satisfies {
  prefix: string;
  perUser: number;
  queueDepth: number;
  recordTtlMs: number;
  attempts: number;
  backoff: BackoffOptions;
  orphanGraceMs: number;
  renderWaitMs: number;
  fairSharing: boolean;
};

/**
 * The Jobs interface on BullMQ and Redis. See queue/types.ts for the contract. The parts live in
 * their own files: submit.ts, cancel.ts, images.ts (PNGs and re-render), events.ts (progress),
 * records.ts (the record's schema) and queue-state.ts (shared reads).
 */
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
  let consumerClient: RedisClient | undefined;
  const consumers = new Set<Subscription>();
  let closed = false;

  // One generate queue per served model (see generateQueueName), made when first used.
  const queues = new Map<string, Queue<JobSpec>>();
  function queueFor(model: string | undefined): Queue<JobSpec> {
    const name = generateQueueName(model);
    let queue = queues.get(name);
    if (queue === undefined) {
      queue = new Queue<JobSpec>(name, {
        connection: client,
        prefix,
        defaultJobOptions: {
          attempts,
          backoff: { type: backoff.type, delay: backoff.delayMs },
          removeOnComplete: { age: 3600, count: 1000 },
          removeOnFail: { age: 7 * 86_400 },
        },
      });
      queue.on('error', (error) => logger.warn({ err: error, queue: name }, 'generate queue error'));
      queues.set(name, queue);
      dropOnFailedStart(queues, name, queue);
    }
    return queue;
  }
  const deliveries = new DeliveryQueues(client, prefix, deliveryOptions);

  function assertOpen(): void {
    if (closed) throw new InternalError(ErrorCode.Internal, 'jobs client is closed');
  }

  const ctx: JobsContext = {
    client,
    keys,
    queueFor,
    deliveries,
    logger,
    metrics,
    isClosed: () => closed,
  };
  const fairSharing = options.fairSharing ?? JOBS_DEFAULTS.fairSharing;
  const submitNow = createSubmit(ctx, { perUser, queueDepth, recordTtlMs, orphanGraceMs, fairSharing });
  const cancelNow = createCancel(ctx);
  // Events and images refer to each other: re-render endings arrive over the events' connection.
  let images: GridImages | undefined;
  const events = createJobEvents({
    connection: options.connection,
    keys,
    logger,
    isClosed: () => closed,
    onRendered: (text) => images?.onRendered(text),
  });
  const gridImages = createGridImages(ctx, renderWaitMs, () => events.ensureSubscriber());
  images = gridImages;
  const { gridPngNow, imagePngNow } = gridImages;

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

  async function submit(input: JobSpecInput, submitOptions?: SubmitOptions): Promise<SubmitResult> {
    return guarded(() => submitNow(input, submitOptions));
  }

  async function status(id: string): Promise<JobStatus | null> {
    return guarded(() => statusNow(id));
  }

  async function statusNow(id: string): Promise<JobStatus | null> {
    const replies = pipelineReplies(
      await client.pipeline().hmget(keys.record(id), 'state', 'status', 'spec').get(keys.progress(id)).exec(),
    );
    const fields = replies[0] as (string | null)[] | undefined;
    const progress = replies[1] as string | null | undefined;
    const state = fields?.[0];
    const statusText = fields?.[1];
    if (state === null || state === undefined || statusText === null || statusText === undefined) return null;
    if (state === 'queued') {
      return { state: 'queued', position: await queuePosition(client, keys, id, modelOf(fields?.[2])) };
    }
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

  async function record(id: string): Promise<GridRecord | null> {
    return guarded(() => recordNow(id));
  }

  async function recordNow(id: string): Promise<GridRecord | null> {
    return loadRecord(client, keys, id);
  }

  async function gridPng(id: string): Promise<Buffer | null> {
    return guarded(() => gridPngNow(id));
  }

  async function imagePng(id: string, index: number): Promise<Buffer | null> {
    return guarded(() => imagePngNow(id, index));
  }

  async function modelServed(model: string): Promise<boolean> {
    return guarded(async () => (await servedRevisions(client, keys, model)).length > 0);
  }

  async function modelDefaults(model: string): Promise<ModelGenerationDefaults | null> {
    return guarded(() =>
      servedDefaults(client, keys, model, (problem) =>
        logger.warn({ model, problem }, 'ignoring invalid model defaults announced by a worker'),
      ),
    );
  }

  async function updateMessageRef(id: string, patch: MessageRef): Promise<void> {
    return guarded(() => updateMessageRefNow(id, patch));
  }

  async function updateMessageRefNow(id: string, patch: MessageRef): Promise<void> {
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

  function onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription {
    assertOpen();
    return events.onProgress(surface, handler);
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    gridImages.close();
    // BullMQ's closes wait for a connection that may never come back (Redis gone): bounded, after
    // which the clients below are disconnected anyway.
    await settleWithin(Promise.all([...consumers].map((c) => c.close())), CLOSE_TIMEOUT_MS);
    consumers.clear();
    await settleWithin(
      Promise.all([deliveries.close(), ...[...queues.values()].map((q) => q.close())]),
      CLOSE_TIMEOUT_MS,
    );
    const subscriber = events.close();
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
    modelServed,
    modelDefaults,
    updateMessageRef,
    onDelivery,
    onProgress,
    close,
  };
}

/** The model a stored spec names (undefined: the default model, or an unreadable spec). */
function modelOf(specText: string | null | undefined): string | undefined {
  if (typeof specText !== 'string') return undefined;
  try {
    const model = (JSON.parse(specText) as { model?: unknown }).model;
    return typeof model === 'string' ? model : undefined;
  } catch {
    return undefined;
  }
}
