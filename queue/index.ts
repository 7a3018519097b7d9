/**
 * Public surface of queue/: the Jobs interface and record types for the chat side, and the worker
 * for entry points. bots/ imports queue/ only through this file (test/architecture/layers.ts checks
 * it); entry points (bots/app.ts, bots/main.ts, bench scripts) may also wire deeper modules.
 */
export { closeRedisClient, createRedisClient, type RedisConnection, whenConnected } from './connection.ts';
export { DELIVERY_DEFAULTS, type DeliveryOptions } from './delivery.ts';
export { cellOrigin, composeGrid, type GridLayout, gridLayout } from './grid.ts';
export { checkInitUpload, describeInitImage, initImageGoneError } from './init-images.ts';
export {
  alreadyEndedError,
  assertMessageRefPatch,
  invalidSpecError,
  jobGoneError,
  queueFullError,
  userCapError,
} from './job-errors.ts';
export { type BackoffOptions, createJobs, JOBS_DEFAULTS, type JobsOptions } from './jobs.ts';
export { type QueueLogger, silentLogger } from './logger.ts';
export {
  type DeliveryOutcome,
  type JobOutcome,
  noopMetrics,
  type QueueMetrics,
  type QueuePhase,
  type SubmitOutcome,
} from './metrics.ts';
export { createNoopEngine, type NoopEngine, type NoopEngineOptions } from './noop-engine.ts';
export { createQueueProbe, type QueueCounts, type QueueProbe } from './probe.ts';
export {
  checkRecord,
  expiredGridError,
  GRID_EXPIRED_MESSAGE,
  gridRecordSchema,
  mergeMessageRef,
  requireRecord,
  upgradeRecordHash,
} from './records.ts';
export * from './types.ts';
export { type QueueWorker, startWorker, WORKER_DEFAULTS, type WorkerOptions } from './worker.ts';
export { runWorkerProcess, type WorkerProcess, type WorkerProcessOptions } from './worker-process.ts';
