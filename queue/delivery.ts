import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { ErrorCode, InternalError, reportError } from '../core/errors.ts';
import type { Surface } from '../core/jobspec.ts';
import type { RedisClient } from './connection.ts';
import { deliveryQueueName, type QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import type { QueueMetrics } from './metrics.ts';
import { dropOnFailedStart } from './queue-cache.ts';
import { expiredGridError } from './records.ts';
import {
  type DeliveryContext,
  type DeliveryEvent,
  type GridRecord,
  PermanentDeliveryError,
  RetryLaterError,
  type Subscription,
} from './types.ts';

/** Options of the durable delivery queues (one per surface). */
export interface DeliveryOptions {
  /**
   * Tries per delivery before it is parked in the failed set (and logged with an error id).
   * Retry-after delays (429) do not count.
   * @defaultValue 12
   */
  readonly attempts?: number;
  /**
   * First retry delay; doubles per attempt (12 attempts span about an hour).
   * @defaultValue 1000
   */
  readonly backoffMs?: number;
  /**
   * Deliveries handled at once per surface and process.
   * @defaultValue 4
   */
  readonly concurrency?: number;
  /**
   * How long a consumer holds a delivery before another may take it over after a crash.
   * @defaultValue 30000
   */
  readonly lockDurationMs?: number;
  /**
   * How often consumers look for deliveries abandoned by a crashed process.
   * @defaultValue 30000
   */
  readonly stalledIntervalMs?: number;
}

export const DELIVERY_DEFAULTS = {
  attempts: 12,
  backoffMs: 1000,
  concurrency: 4,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
} as const satisfies Required<DeliveryOptions>;

/**
 * Lock and stall check of the delivery consumers for a takeover bound T (STALLED_INTERVAL_MS): a
 * bot killed mid-delivery has it resumed by another bot process (or itself, restarted) within T,
 * by the same reasoning as the generation worker's (lock T/3, checks every T/6).
 */
export function deliveryTakeover(
  takeoverMs: number,
): Pick<DeliveryOptions, 'lockDurationMs' | 'stalledIntervalMs'> {
  return {
    lockDurationMs: Math.max(1, Math.round(takeoverMs / 3)),
    stalledIntervalMs: Math.max(1, Math.round(takeoverMs / 6)),
  };
}

export interface DeliveryJobData {
  readonly id: string;
}

const DAY_S = 86_400;

/** Producer side: enqueues one delivery per (job, surface). The job id makes a repeat a no-op. */
export class DeliveryQueues {
  readonly #queues = new Map<Surface, Queue<DeliveryJobData>>();
  readonly #client: RedisClient;
  readonly #prefix: string;
  readonly #options: Required<DeliveryOptions>;

  constructor(client: RedisClient, prefix: string, options: DeliveryOptions = {}) {
    this.#client = client;
    this.#prefix = prefix;
    this.#options = { ...DELIVERY_DEFAULTS, ...options };
  }

  #queue(surface: Surface): Queue<DeliveryJobData> {
    let queue = this.#queues.get(surface);
    if (queue === undefined) {
      queue = new Queue<DeliveryJobData>(deliveryQueueName(surface), {
        connection: this.#client,
        prefix: this.#prefix,
        defaultJobOptions: {
          attempts: this.#options.attempts,
          backoff: { type: 'exponential', delay: this.#options.backoffMs },
          // Kept a week so a repeated enqueue (a worker retried after a crash) is deduplicated.
          removeOnComplete: { age: 7 * DAY_S },
          removeOnFail: { age: 30 * DAY_S },
        },
      });
      this.#queues.set(surface, queue);
      dropOnFailedStart(this.#queues, surface, queue);
    }
    return queue;
  }

  async enqueue(id: string, surface: Surface): Promise<void> {
    await this.#queue(surface).add('deliver', { id }, { jobId: id });
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
  }
}

export interface DeliveryConsumerOptions {
  readonly client: RedisClient;
  readonly prefix: string;
  readonly keys: QueueKeys;
  readonly surface: Surface;
  readonly options: Required<DeliveryOptions>;
  readonly handler: (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>;
  readonly loadRecord: (id: string) => Promise<GridRecord | null>;
  /** The grid PNG, made again when it was dropped (a bot down longer than IMAGE_TTL); null when gone. */
  readonly gridPng: (id: string) => Promise<Buffer | null>;
  readonly imagePng: (id: string, index: number) => Promise<Buffer | null>;
  readonly logger: QueueLogger;
  readonly metrics: QueueMetrics;
}

const STEP_RE = /^[A-Za-z0-9_.:-]{1,100}$/u;

/** The event for a finished record; null while it is not finished (should not be delivered yet). */
async function eventFor(o: DeliveryConsumerOptions, record: GridRecord): Promise<DeliveryEvent | null> {
  const status = record.state.status;
  switch (status.state) {
    case 'done': {
      const grid = await o.gridPng(record.id);
      if (grid === null) throw expiredGridError(record.id);
      return {
        type: 'done',
        record,
        grid,
        image: async (index: number) => {
          const key = record.result?.resultKeys.images[index];
          if (key === undefined) throw new RangeError(`grid ${record.id} has no image ${index}`);
          const png = await o.imagePng(record.id, index);
          if (png === null) throw expiredGridError(record.id);
          return png;
        },
      };
    }
    case 'failed':
      return status.errorId === undefined
        ? { type: 'failed', record, reason: status.reason, userFacing: status.userFacing }
        : {
            type: 'failed',
            record,
            reason: status.reason,
            errorId: status.errorId,
            userFacing: status.userFacing,
          };
    case 'cancelled':
      return { type: 'cancelled', record, by: status.by };
    default:
      return null;
  }
}

function isRetryLater(error: unknown): error is RetryLaterError {
  return (
    error instanceof RetryLaterError ||
    (error instanceof Error &&
      error.name === 'RetryLaterError' &&
      typeof (error as { retryAfterMs?: unknown }).retryAfterMs === 'number')
  );
}

/** Consumer side: a BullMQ worker on one surface's delivery queue that calls the chat handler. */
export function startDeliveryConsumer(o: DeliveryConsumerOptions): Subscription {
  const { client, keys, surface, logger, metrics } = o;

  async function process(job: Job<DeliveryJobData>, token?: string): Promise<string> {
    const id = typeof job.data?.id === 'string' ? job.data.id : undefined;
    if (id === undefined) {
      reportError(logger, new InternalError(ErrorCode.Delivery, 'delivery job without a grid id'), {
        deliveryJob: job.id,
        surface,
      });
      return 'invalid';
    }
    const record = await o.loadRecord(id);
    if (record === null) {
      logger.warn({ jobId: id, surface }, 'delivery skipped: the grid record has expired');
      return 'expired';
    }
    const event = await eventFor(o, record);
    if (event === null) {
      throw new InternalError(ErrorCode.Delivery, `grid ${id} is ${record.state.status.state}, not finished`);
    }
    const ttlMs = Math.max(60_000, record.state.expiresAt - Date.now());
    const ctx: DeliveryContext = {
      attempt: Math.max(1, job.attemptsStarted),
      once: async (step, run) => {
        if (!STEP_RE.test(step)) throw new RangeError(`invalid delivery step name: ${JSON.stringify(step)}`);
        const key = keys.once(id, surface, step);
        const done = await client.get(key);
        if (done !== null) return done;
        const value = await run();
        await client.set(key, value, 'PX', ttlMs);
        return value;
      },
    };
    try {
      await o.handler(event, ctx);
    } catch (error) {
      if (isRetryLater(error)) {
        metrics.delivery('retry_later');
        logger.info(
          { jobId: id, surface, retryAfterMs: error.retryAfterMs, attempt: ctx.attempt },
          'delivery deferred (retry-after)',
        );
        await job.moveToDelayed(Date.now() + Math.max(0, error.retryAfterMs), token);
        throw new DelayedError();
      }
      const permanent = error instanceof PermanentDeliveryError;
      const final = permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      metrics.delivery(final ? 'gave_up' : 'retry');
      reportError(
        logger,
        new InternalError(ErrorCode.Delivery, `delivery of ${id} to ${surface} failed`, { cause: error }),
        { jobId: id, surface, attempt: ctx.attempt, final },
      );
      if (permanent) throw new UnrecoverableError(error.message);
      throw error;
    }
    metrics.delivery('delivered');
    return event.type;
  }

  const worker = new Worker<DeliveryJobData, string>(deliveryQueueName(surface), process, {
    connection: o.client,
    prefix: o.prefix,
    concurrency: o.options.concurrency,
    lockDuration: o.options.lockDurationMs,
    stalledInterval: o.options.stalledIntervalMs,
    // A consumer that keeps crashing mid-delivery must not park the delivery: keep retrying.
    maxStalledCount: 1000,
  });
  worker.on('error', (error) => {
    reportError(logger, new InternalError(ErrorCode.Redis, 'delivery consumer error', { cause: error }), {
      surface,
    });
  });
  return {
    close: async () => {
      await worker.close();
    },
  };
}
