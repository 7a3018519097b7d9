import type { RedisClient } from './connection.ts';
import type { DeliveryQueues } from './delivery.ts';
import type { EnginePool, Slots } from './engine-pool.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import type { QueueMetrics } from './metrics.ts';

/** A job this worker is running, and why it was aborted (if it was). */
export interface Running {
  readonly controller: AbortController;
  reason: 'cancel' | 'shutdown' | undefined;
}

/** What the parts of a generation worker share; made by startWorker. */
export interface WorkerContext {
  /** Retries forever across Redis restarts instead of failing jobs. */
  readonly client: RedisClient;
  readonly keys: QueueKeys;
  /** The served models' engines, loaded when needed within the memory budget. */
  readonly pool: EnginePool;
  /** Batches this worker runs at once, across all its models' queues. */
  readonly slots: Slots;
  readonly deliveries: DeliveryQueues;
  /** Running jobs by id (re-renders as `render:<id>`), for cancel and shutdown. */
  readonly running: Map<string, Running>;
  readonly workerId: string;
  readonly logger: QueueLogger;
  readonly metrics: QueueMetrics;
  readonly random: () => number;
  readonly previewEveryMs: number;
  readonly imageTtlMs: number;
  readonly imageStoreMaxBytes: number;
  /** True once close() began: a job still waiting for a slot is handed back instead of run. */
  isClosing(): boolean;
}
