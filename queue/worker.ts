import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { CodedError, ErrorCode, InternalError, newErrorId, reportError } from '../core/errors.ts';
import type { Engine } from '../models/engine.ts';
import { closeRedisClient, createRedisClient, type RedisClient, type RedisConnection } from './connection.ts';
import { DELIVERY_DEFAULTS, type DeliveryOptions, DeliveryQueues } from './delivery.ts';
import { JOBS_DEFAULTS } from './jobs.ts';
import { GENERATE_QUEUE, type QueueKeys, queueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { noopMetrics, type QueueMetrics } from './metrics.ts';
import type { Running, WorkerContext } from './worker-context.ts';
import { createJobProcessor } from './worker-jobs.ts';
import { createWorkerStore } from './worker-store.ts';

export { userProgress } from './worker-progress.ts';

export interface WorkerOptions {
  readonly connection: RedisConnection;
  /** Must match the Jobs side. @defaultValue `'imagine'` */
  readonly prefix?: string;
  /** The engine, or a factory called once at start (the worker then closes it on shutdown). */
  readonly engine: Engine | (() => Promise<Engine>);
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
  readonly engine: Engine;
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

  const ownsEngine = typeof options.engine === 'function';
  const engine = typeof options.engine === 'function' ? await options.engine() : options.engine;

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

  const ctx: WorkerContext = {
    client,
    keys,
    engine,
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
  const processJob = createJobProcessor(ctx, store);

  const stall = stallSettings(options.takeoverMs ?? WORKER_DEFAULTS.takeoverMs);
  const worker = new Worker<unknown, string>(GENERATE_QUEUE, processJob, {
    connection: client,
    prefix,
    name: workerId,
    concurrency,
    stalledInterval: options.stalledIntervalMs ?? stall.stalledIntervalMs,
    lockDuration: options.lockDurationMs ?? stall.lockDurationMs,
    maxStalledCount: options.maxStalledCount ?? WORKER_DEFAULTS.maxStalledCount,
    autorun: false,
  });
  worker.on('error', (error) => {
    reportError(logger, new InternalError(ErrorCode.Redis, 'generation worker error', { cause: error }), {
      workerId,
    });
  });
  // Jobs failed without our processor running (stalled too often): end the record and deliver.
  worker.on('failed', (job, error) => {
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
  });
  void worker.run().catch((error: unknown) => reportError(logger, error, { workerId, where: 'worker loop' }));
  await worker.waitUntilReady();
  logger.info({ workerId, concurrency, engine: engine.info.name }, 'generation worker started');

  let closing: Promise<void> | undefined;
  const release = (): void => {
    for (const id of running.keys()) abort(id, 'shutdown');
  };
  return {
    id: workerId,
    engine,
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
          await worker.close();
        } finally {
          clearTimeout(timer);
          clearInterval(poll);
        }
        await deliveries.close();
        await Promise.all([closeRedisClient(subscriber), closeRedisClient(client)]);
        if (ownsEngine) await engine.close();
        logger.info({ workerId }, 'generation worker stopped');
      })();
      return closing;
    },
  };
}
