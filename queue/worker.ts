import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { CodedError, ErrorCode, InternalError, newErrorId, reportError } from '../core/errors.ts';
import type { ModelGenerationDefaults } from '../core/generation-defaults.ts';
import { DEFAULT_MODEL_NAME } from '../core/models.ts';
import type { Engine, ModelDefaults, ModelInfo } from '../models/engine.ts';
import { closeRedisClient, createRedisClient, type RedisClient, type RedisConnection } from './connection.ts';
import { DELIVERY_DEFAULTS, type DeliveryOptions, DeliveryQueues } from './delivery.ts';
import { createEnginePool, createSlots, type ServedModel } from './engine-pool.ts';
import { JOBS_DEFAULTS } from './jobs.ts';
import { generateQueueName, type QueueKeys, queueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { noopMetrics, type QueueMetrics } from './metrics.ts';
import { announceModels } from './served.ts';
import type { Running, WorkerContext } from './worker-context.ts';
import { createJobProcessor } from './worker-jobs.ts';
import { createWorkerStore } from './worker-store.ts';

export { userProgress } from './worker-progress.ts';

export interface WorkerOptions {
  readonly connection: RedisConnection;
  /** Must match the Jobs side. @defaultValue `'imagine'` */
  readonly prefix?: string;
  /**
   * One model, served as `default`: the engine, or a factory called once at start (the worker then
   * closes it on shutdown). Ignored when `models` is given.
   */
  readonly engine?: Engine | (() => Promise<Engine>);
  /**
   * Several models, each on its own queue (`generate-<name>`); the first is loaded at start, the
   * others when a job needs them, within `memoryBudgetBytes`.
   */
  readonly models?: readonly ServedModel[];
  /**
   * Memory for loaded models, in bytes (see ServedModel.sizeBytes); past it the least recently used
   * idle model is unloaded before another loads. 0 = no limit.
   * @defaultValue 0
   */
  readonly memoryBudgetBytes?: number;
  /**
   * Batches run at once by this worker. One per GPU is right for real inference.
   * @defaultValue 1
   */
  readonly concurrency?: number;
  /**
   * Longest time before a job whose worker died (killed, lost its host) is taken over by another
   * running worker. Sets the lock and the stall check below (see `stallSettings`).
   * @defaultValue 30000
   */
  readonly takeoverMs?: number;
  /**
   * How often this worker looks for jobs whose worker died (lock expired) and requeues them.
   * @defaultValue `takeoverMs / 6`
   */
  readonly stalledIntervalMs?: number;
  /**
   * Lock on a running job, renewed every half of it; a killed worker's job is taken over after
   * the lock lapses and the next stall check runs.
   * @defaultValue `takeoverMs / 3`
   */
  readonly lockDurationMs?: number;
  /**
   * Stalls (worker deaths) a job survives before it is failed.
   * @defaultValue 2
   */
  readonly maxStalledCount?: number;
  /**
   * On close (SIGTERM), how long the current job may run on before it is released to another worker.
   * @defaultValue 60000
   */
  readonly shutdownTimeoutMs?: number;
  /** Stored on records and BullMQ jobs. @defaultValue `host:pid` */
  readonly workerId?: string;
  /**
   * Minimum time between latent previews in progress events; 0 disables previews.
   * @defaultValue 2000
   */
  readonly previewEveryMs?: number;
  /**
   * Fallback poll for cancels whose pub/sub message was missed (e.g. during a reconnect).
   * @defaultValue 1000
   */
  readonly cancelPollMs?: number;
  /**
   * How long a grid's PNGs are kept (never longer than its record); a button that needs one later
   * has it made again from the record.
   * @defaultValue 24 h
   */
  readonly imageTtlMs?: number;
  /**
   * Bytes of PNGs kept in Redis for all grids together; past it the oldest are deleted first. 0 = no limit.
   * @defaultValue 1 GiB
   */
  readonly imageStoreMaxBytes?: number;
  /** Retry policy of the deliveries this worker enqueues. */
  readonly delivery?: Pick<DeliveryOptions, 'attempts' | 'backoffMs'>;
  readonly logger: QueueLogger;
  readonly metrics?: QueueMetrics;
  /** Source for error ids. @defaultValue Math.random */
  readonly random?: () => number;
}

export const WORKER_DEFAULTS = {
  prefix: JOBS_DEFAULTS.prefix,
  concurrency: 1,
  takeoverMs: 30_000,
  maxStalledCount: 2,
  shutdownTimeoutMs: 60_000,
  previewEveryMs: 2000,
  cancelPollMs: 1000,
  imageTtlMs: 24 * 3_600_000,
  imageStoreMaxBytes: 1024 * 1024 * 1024,
} as const;

/**
 * BullMQ's lock and stall check for a promised takeover time T. BullMQ takes a dead worker's job
 * at the first stall check that finds it both marked (by an earlier check) and unlocked: with
 * lock L (renewed every L/2) and checks every S (any worker; after the checking worker dies the
 * next check may take up to 2S), that is at most about max(L, 2S) + 2S after the death. L = T/3
 * and S = T/6 bound it by 2T/3, leaving room for timer and CPU delays within T. (BullMQ's default,
 * L = S = T, takes up to about 3T: 53 s measured at 30 s.)
 */
export function stallSettings(takeoverMs: number): { lockDurationMs: number; stalledIntervalMs: number } {
  return {
    lockDurationMs: Math.max(1, Math.round(takeoverMs / 3)),
    stalledIntervalMs: Math.max(1, Math.round(takeoverMs / 6)),
  };
}

export interface QueueWorker {
  readonly id: string;
  /** What the loader reported for the first (default) model, loaded at start. */
  readonly info: ModelInfo;
  /** Names of the models this worker serves, the first loaded at start. */
  readonly models: readonly string[];
  /** Names of the models loaded now, least recently used first. */
  loaded(): readonly string[];
  /** Ids of the jobs this worker is running now. */
  active(): readonly string[];
  /**
   * Stops taking jobs and lets the current ones finish; past `shutdownTimeoutMs` (or at once with
   * `releaseNow`) running jobs are aborted and put back at the head of the queue for another worker.
   */
  close(options?: { readonly releaseNow?: boolean }): Promise<void>;
}

/** Starts a generation worker on the shared Redis. Resolves once it is connected and taking jobs. */
export async function startWorker(options: WorkerOptions): Promise<QueueWorker> {
  const prefix = options.prefix ?? WORKER_DEFAULTS.prefix;
  const concurrency = options.concurrency ?? WORKER_DEFAULTS.concurrency;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? WORKER_DEFAULTS.shutdownTimeoutMs;
  const previewEveryMs = options.previewEveryMs ?? WORKER_DEFAULTS.previewEveryMs;
  const cancelPollMs = options.cancelPollMs ?? WORKER_DEFAULTS.cancelPollMs;
  const imageTtlMs = options.imageTtlMs ?? WORKER_DEFAULTS.imageTtlMs;
  const imageStoreMaxBytes = options.imageStoreMaxBytes ?? WORKER_DEFAULTS.imageStoreMaxBytes;
  const workerId = options.workerId ?? `${hostname()}:${process.pid}`;
  const random = options.random ?? Math.random;
  const { logger } = options;
  const metrics = options.metrics ?? noopMetrics;
  const keys: QueueKeys = queueKeys(prefix);

  // Each model's defaults, as given or as its engine reports them once loaded: announced with it.
  const defaults = new Map<string, ModelDefaults>();
  const models = servedModels(options).map((m): ServedModel => {
    if (m.defaults !== undefined) defaults.set(m.name, m.defaults);
    return { ...m, load: () => m.load().then((engine) => learnDefaults(engine, m.name)) };
  });
  const learnDefaults = (engine: Engine, name: string): Engine => {
    if (engine.info.defaults !== undefined) defaults.set(name, engine.info.defaults);
    return engine;
  };
  const pool = createEnginePool(models, options.memoryBudgetBytes ?? 0, logger);
  // The default model is loaded now: a worker is ready once it can run the common job.
  const first = await pool.acquire(models[0]!.name);
  const info = first.engine.info;
  first.release();

  // Worker connections retry forever across Redis restarts instead of failing jobs.
  const client: RedisClient = createRedisClient(options.connection, { blocking: true });
  client.on('error', (error) => logger.warn({ err: error, workerId }, 'redis connection error (worker)'));
  const subscriber: RedisClient = createRedisClient(options.connection, { blocking: true });
  subscriber.on('error', (error) => logger.warn({ err: error, workerId }, 'redis connection error (cancel)'));
  const deliveries = new DeliveryQueues(client, prefix, { ...DELIVERY_DEFAULTS, ...options.delivery });
  const running = new Map<string, Running>();

  function abort(id: string, reason: 'cancel' | 'shutdown'): void {
    const entry = running.get(id);
    if (entry === undefined || entry.controller.signal.aborted) return;
    entry.reason = reason;
    entry.controller.abort(new CodedError(ErrorCode.Cancelled, `job ${id} ${reason}`));
  }

  // Cancels come from any process: pub/sub for speed, a poll of the record state as a safety net.
  subscriber.on('message', (_channel: string, id: string) => abort(id, 'cancel'));
  await subscriber.subscribe(keys.cancelChannel);
  const poll = setInterval(() => {
    for (const id of running.keys()) {
      client
        .hget(keys.record(id), 'state')
        .then((state) => {
          if (state === 'cancelled') abort(id, 'cancel');
        })
        .catch(() => {});
    }
  }, cancelPollMs);
  poll.unref();

  // Declared before any job can run: processors ask whether the worker is stopping.
  let closing: Promise<void> | undefined;
  const ctx: WorkerContext = {
    client,
    keys,
    pool,
    slots: createSlots(concurrency),
    isClosing: () => closing !== undefined,
    deliveries,
    running,
    workerId,
    logger,
    metrics,
    random,
    previewEveryMs,
    imageTtlMs,
    imageStoreMaxBytes,
  };
  const store = createWorkerStore(ctx);
  const { settle, recordSurface } = store;
  const stall = stallSettings(options.takeoverMs ?? WORKER_DEFAULTS.takeoverMs);
  // One BullMQ worker per model's queue, so a job only reaches a worker that has its model; the
  // shared slots keep the batches run at once to `concurrency` across them.
  const workers = models.map((model) => {
    const worker = new Worker<unknown, string>(
      generateQueueName(model.name),
      createJobProcessor(ctx, store, model),
      {
        connection: client,
        prefix,
        name: workerId,
        concurrency,
        stalledInterval: options.stalledIntervalMs ?? stall.stalledIntervalMs,
        lockDuration: options.lockDurationMs ?? stall.lockDurationMs,
        maxStalledCount: options.maxStalledCount ?? WORKER_DEFAULTS.maxStalledCount,
        autorun: false,
      },
    );
    worker.on('error', (error) => {
      reportError(logger, new InternalError(ErrorCode.Redis, 'generation worker error', { cause: error }), {
        workerId,
        model: model.name,
      });
    });
    // Jobs failed without our processor running (stalled too often): end the record and deliver.
    worker.on('failed', (job, error) => onFailed(job, error));
    return worker;
  });

  function onFailed(
    job: { id?: string | undefined; attemptsMade: number; opts: { attempts?: number } } | undefined,
    error: Error,
  ): void {
    if (job?.id === undefined) return;
    const exhausted = job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === 'UnrecoverableError';
    if (!exhausted) return;
    const id = job.id;
    const internal = new InternalError(ErrorCode.Internal, `job ${id} failed: ${error.message}`, {
      errorId: newErrorId(random),
    });
    void (async () => {
      const surface = await recordSurface(id);
      const state = await client.hget(keys.record(id), 'state');
      if (state === null || state === 'done' || state === 'failed' || state === 'cancelled') {
        // Already ended by the processor; the delivery add is idempotent, so just make sure of it.
        if (state !== null && surface !== undefined) await deliveries.enqueue(id, surface);
        return;
      }
      const shown = reportError(logger, internal, { jobId: id, workerId });
      await settle(id, surface, 'failed', {
        state: 'failed',
        reason: 'The worker running this job stopped unexpectedly too many times.',
        ...(shown.errorId === undefined ? {} : { errorId: shown.errorId }),
        userFacing: false,
      });
    })().catch((e: unknown) => reportError(logger, e, { jobId: id, workerId, where: 'failed handler' }));
  }
  for (const worker of workers) {
    void worker
      .run()
      .catch((error: unknown) => reportError(logger, error, { workerId, where: 'worker loop' }));
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  // Said once the queues are taken from: submitters tell users when no worker serves a model.
  const announcement = await announceModels(
    client,
    keys,
    workerId,
    () =>
      models.map((m) => {
        const own = defaults.get(m.name);
        return {
          name: m.name,
          revision: m.revision,
          ...(own === undefined ? {} : { defaults: announced(own) }),
        };
      }),
    logger,
  );
  logger.info(
    { workerId, concurrency, models: models.map((m) => m.name), engine: info.name },
    'generation worker started',
  );

  const release = (): void => {
    for (const id of running.keys()) abort(id, 'shutdown');
  };
  return {
    id: workerId,
    info,
    models: models.map((m) => m.name),
    loaded: () => pool.loaded(),
    active: () => [...running.keys()],
    close: (closeOptions = {}) => {
      if (closing !== undefined) {
        // A second request (second SIGTERM) may ask to release the running jobs now.
        if (closeOptions.releaseNow === true) release();
        return closing;
      }
      closing = (async () => {
        const timer = setTimeout(release, closeOptions.releaseNow === true ? 0 : shutdownTimeoutMs);
        try {
          await announcement.stop();
          await Promise.all(workers.map((w) => w.close()));
        } finally {
          clearTimeout(timer);
          clearInterval(poll);
        }
        await deliveries.close();
        await Promise.all([closeRedisClient(subscriber), closeRedisClient(client)]);
        await pool.close();
        logger.info({ workerId }, 'generation worker stopped');
      })();
      return closing;
    },
  };
}

/** The models a worker serves: `models`, or the one `engine` as the model named `default`. */
function servedModels(options: WorkerOptions): readonly ServedModel[] {
  if (options.models !== undefined && options.models.length > 0) return options.models;
  const engine = options.engine;
  if (engine === undefined) {
    throw new InternalError(ErrorCode.Config, 'startWorker needs an engine or a list of models');
  }
  if (typeof engine === 'function') {
    // The factory's engine is the worker's: closed on shutdown (and loaded once, at start).
    return [{ name: DEFAULT_MODEL_NAME, load: engine, sizeBytes: 0, revision: '' }];
  }
  return [{ name: DEFAULT_MODEL_NAME, load: async () => engine, sizeBytes: 0, revision: '', keepOpen: true }];
}

/** A model's defaults in the announcement's terms (its scheduler is the sampler users name). */
function announced(d: ModelDefaults): ModelGenerationDefaults {
  return {
    steps: d.steps,
    guidance: d.guidance,
    width: d.width,
    height: d.height,
    ...(d.scheduler === undefined ? {} : { sampler: d.scheduler }),
  };
}
