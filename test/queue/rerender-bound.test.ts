import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ErrorCode, UserError } from '../../core/errors.ts';
import type { JobSpecInput } from '../../core/jobspec.ts';
import { MAX_WAITING_RENDERS_PER_TEAM } from '../../queue/images.ts';
import { createJobs } from '../../queue/jobs.ts';
import { GENERATE_QUEUE, queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Re-renders of dropped PNGs go ahead of every team's turn (LIFO, unprioritized). One team pressing U
 * on many old grids must not push the other teams back by more than a bounded amount: at most
 * MAX_WAITING_RENDERS_PER_TEAM of a team's re-renders wait at once; other teams are not affected.
 */

const redis = useTestRedis();
const { cleanups } = redis;

function teamSpec(workspace: string, user: string): JobSpecInput {
  const spec = makeSpec({ user });
  return { ...spec, origin: { ...spec.origin, workspace } };
}

describe('re-renders of expired PNGs and fair sharing', () => {
  it("bounds one team's waiting re-renders; another team's still go", async () => {
    const prefix = uniquePrefix('rr');
    const keys = queueKeys(prefix);
    const logger = captureLogger();
    const jobs = createJobs({ connection: redis.url, prefix, logger, renderWaitMs: 1500 });
    cleanups.push(() => jobs.close());
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      engine: createNoopEngine(),
      logger,
      previewEveryMs: 0,
    });
    const deliveries = recordDeliveries(jobs);
    const teamA = await Promise.all(['a1', 'a2', 'a3'].map((u) => jobs.submit(teamSpec('wA', u))));
    const [teamB] = await Promise.all([jobs.submit(teamSpec('wB', 'b1'))]);
    const ids = [...teamA, teamB!].map((r) => r.jobId);
    for (const id of ids) await waitFor(`delivery of ${id}`, () => deliveries.byId(id)[0], 30_000);
    // No worker from here on: re-render jobs stay in the wait list.
    await worker.close({ releaseNow: true });
    for (const id of ids) await redis.admin.del(keys.grid(id), ...[0, 1, 2, 3].map((k) => keys.image(id, k)));

    const outcome = (id: string) =>
      jobs.imagePng(id, 0).then(
        () => 'made',
        (error: unknown) => (error instanceof UserError ? error.code : String(error)),
      );
    const [a1, a2] = ids as [string, string, string, string];
    // One after another, so each sees the ones before it waiting.
    const first = outcome(a1);
    await waitFor('the first render job', async () => (await renderJobs()).length === 1);
    const second = outcome(a2);
    await waitFor('the second render job', async () => (await renderJobs()).length === 2);
    expect(MAX_WAITING_RENDERS_PER_TEAM).toBe(2);
    expect(await outcome(ids[2]!)).toBe(ErrorCode.RateLimited);
    // The same grid again joins its waiting render rather than being refused.
    const again = outcome(a1);
    // Another team is not held back by team A's renders.
    const other = outcome(ids[3]!);
    await waitFor('team B render job', async () => (await renderJobs()).length === 3);
    expect((await renderJobs()).sort()).toEqual([a1, a2, ids[3]!].sort());
    // Nobody renders: the waits end with "not ready yet" (Unavailable), not a refusal.
    expect(await Promise.all([first, second, again, other])).toEqual(Array(4).fill(ErrorCode.Unavailable));

    async function renderJobs(): Promise<string[]> {
      const queue = new Queue(GENERATE_QUEUE, { connection: { url: redis.url }, prefix });
      try {
        const waiting = await queue.getWaiting();
        return waiting.map((j) => (j.data as { render?: string }).render ?? '').filter((r) => r !== '');
      } finally {
        await queue.close();
      }
    }
  });
});
