import type { Queue } from 'bullmq';
import type { JobSpec } from '../core/jobspec.ts';
import type { RedisClient } from './connection.ts';
import type { DeliveryQueues } from './delivery.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import type { QueueMetrics } from './metrics.ts';

/** What the parts of the jobs client (submit, cancel, images, events) share; made by createJobs. */
export interface JobsContext {
  /** Request path: fails a command instead of hanging while Redis is down. */
  readonly client: RedisClient;
  readonly keys: QueueKeys;
  /** The generate queue of one model (`generateQueueName`); made on first use. */
  queueFor(model: string | undefined): Queue<JobSpec>;
  readonly deliveries: DeliveryQueues;
  readonly logger: QueueLogger;
  readonly metrics: QueueMetrics;
  /** True once close() began: background retries stop. */
  isClosed(): boolean;
}
