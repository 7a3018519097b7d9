import { createJobs, createNoopEngine, type QueueWorker, startWorker } from '../../queue/index.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger } from '../queue/helpers.ts';
import { type JobsHarness, jobsContract } from './jobs.contract.ts';

const redis = useTestRedis();

/** The Redis-backed jobs on a private redis-server, one key prefix per test; the real worker runs a fake engine. */
jobsContract('Redis-backed jobs (queue/)', async (limits = {}): Promise<JobsHarness> => {
  const prefix = uniquePrefix('contract');
  const logger = captureLogger();
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger,
    limits,
    backoff: { type: 'fixed', delayMs: 50 },
    delivery: { backoffMs: 50, stalledIntervalMs: 500, lockDurationMs: 2000 },
  });
  let worker: QueueWorker | undefined;
  return {
    jobs,
    run: async () => {
      worker ??= await startWorker({
        connection: redis.url,
        prefix,
        engine: createNoopEngine(),
        logger,
        previewEveryMs: 0,
        delivery: { backoffMs: 50 },
      });
    },
    close: async () => {
      await worker?.close({ releaseNow: true });
      await jobs.close();
    },
  };
});
