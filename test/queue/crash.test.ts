import { describe, expect, it } from 'vitest';
import { createJobs, type JobsOptions } from '../../queue/jobs.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import type { GridRecord, Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { type Child, spawnChild } from './child.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Real processes, really killed: workers and a delivery consumer run as child processes
 * (test/queue/*-child.ts) and get SIGKILL mid-job. Short locks and stall intervals keep it quick.
 */

const redis = useTestRedis();
const { cleanups } = redis;

function open(
  prefix: string,
  options: Partial<Omit<JobsOptions, 'connection' | 'prefix' | 'logger'>> = {},
): Jobs {
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger: captureLogger(),
    delivery: { stalledIntervalMs: 300, lockDurationMs: 1000, backoffMs: 50 },
    ...options,
  });
  cleanups.push(() => jobs.close());
  return jobs;
}

function workerChild(prefix: string, workerId: string, stepDelayMs: number): Child {
  const child = spawnChild('./worker-child.ts', {
    url: redis.url,
    prefix,
    workerId,
    stepDelayMs,
    lockDurationMs: 1000,
    stalledIntervalMs: 400,
  });
  cleanups.push(() => child.kill('SIGKILL'));
  return child;
}

const isReady = (line: Record<string, unknown>): boolean => line.event === 'ready';

describe('crashes', () => {
  it('a job whose worker is killed -9 mid-job is picked up after the stall interval and delivered once', async () => {
    const prefix = uniquePrefix('c');
    const jobs = open(prefix);
    const deliveries = recordDeliveries(jobs);
    const a = workerChild(prefix, 'child-a', 50);
    await a.waitFor(isReady);
    const { jobId } = await jobs.submit(makeSpec({ steps: 60 }));
    await a.waitFor((line) => line.event === 'step' && Number(line.step) >= 3);
    await a.kill('SIGKILL');
    const killedAt = Date.now();
    expect(await jobs.status(jobId)).toMatchObject({ state: 'running' });

    const b = workerChild(prefix, 'child-b', 2);
    await b.waitFor(isReady);
    await waitFor('recovered job done', async () => (await jobs.status(jobId))?.state === 'done', 20_000);
    const recoveredAfter = Date.now() - killedAt;
    const record = await jobs.record(jobId);
    expect(record?.state.worker).toBe('child-b');
    expect(record?.state.attempts).toBe(2);
    await waitFor('delivered', () => deliveries.delivered.length === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(deliveries.delivered).toHaveLength(1);
    expect(deliveries.posts.get(jobId)).toBe(1);
    expect(recoveredAfter).toBeLessThan(15_000);

    // SIGTERM: the worker finishes the job it has, stops taking new ones, and exits cleanly.
    const long = await jobs.submit(makeSpec({ steps: 150, user: 'user-2' }));
    await waitFor('long job running', async () => {
      const s = await jobs.status(long.jobId);
      return s?.state === 'running' && s.step >= 5;
    });
    const waiting = await jobs.submit(makeSpec({ user: 'user-3' }));
    b.process.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(b.lines.some((line) => line.event === 'stopped')).toBe(true);
    expect(await jobs.status(long.jobId)).toEqual({ state: 'done' });
    expect(await jobs.status(waiting.jobId)).toMatchObject({ state: 'queued', position: 0 });
  });

  it("STALLED_INTERVAL_MS is the takeover bound: a killed worker's job runs on another worker within it", async () => {
    // Workers configured as `npm run worker` configures them (takeoverMs = STALLED_INTERVAL_MS), small.
    const takeoverMs = 3000;
    const prefix = uniquePrefix('c');
    const jobs = open(prefix);
    const a = spawnChild('./worker-child.ts', {
      url: redis.url,
      prefix,
      workerId: 'child-a',
      stepDelayMs: 50,
      takeoverMs,
    });
    cleanups.push(() => a.kill('SIGKILL'));
    await a.waitFor(isReady);
    const { jobId } = await jobs.submit(makeSpec({ steps: 400 }));
    await a.waitFor((line) => line.event === 'step' && Number(line.step) >= 2);
    // B is idle and running before A dies, as a second GPU worker would be.
    const b = spawnChild('./worker-child.ts', {
      url: redis.url,
      prefix,
      workerId: 'child-b',
      stepDelayMs: 1,
      takeoverMs,
    });
    cleanups.push(() => b.kill('SIGKILL'));
    await b.waitFor(isReady);
    const killedAt = Date.now();
    await a.kill('SIGKILL');
    await b.waitFor((line) => line.event === 'step', 4 * takeoverMs);
    const tookOverAfter = Date.now() - killedAt;
    console.log(`takeover after kill -9 with STALLED_INTERVAL_MS=${takeoverMs}: ${tookOverAfter} ms`);
    expect(tookOverAfter).toBeLessThanOrEqual(takeoverMs);
    await waitFor('recovered job done', async () => (await jobs.status(jobId))?.state === 'done', 20_000);
    expect(await jobs.record(jobId)).toMatchObject({ state: { worker: 'child-b', attempts: 2 } });
  });

  it('a delivery whose consumer is killed -9 after posting is retried without posting again', async () => {
    const prefix = uniquePrefix('c');
    const counterKey = `${prefix}:test:posts`;
    const child = spawnChild('./delivery-child.ts', {
      url: redis.url,
      prefix,
      counterKey,
      lockDurationMs: 1000,
    });
    cleanups.push(() => child.kill('SIGKILL'));
    await child.waitFor(isReady);
    const jobs = open(prefix);
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      engine: createNoopEngine(),
      logger: captureLogger(),
      previewEveryMs: 0,
    });
    cleanups.push(() => worker.close({ releaseNow: true }));
    const { jobId } = await jobs.submit(makeSpec());
    const posted = await child.waitFor((line) => line.event === 'posted');
    expect(posted).toMatchObject({ id: jobId, attempt: 1 });
    await child.kill('SIGKILL');
    expect(await redis.admin.get(counterKey)).toBe('1');

    // The bot comes back: the same delivery is handed over again, and `once` skips the post.
    const seen: { attempt: number; post: string; edit: string }[] = [];
    const subscription = jobs.onDelivery('discord', async (event, ctx) => {
      const post = await ctx.once('post', async () => {
        await redis.admin.incr(counterKey);
        return 'posted-again';
      });
      const edit = await ctx.once('edit', async () => `edited-${event.record.id}`);
      seen.push({ attempt: ctx.attempt, post, edit });
    });
    cleanups.push(() => subscription.close());
    await waitFor('redelivery', () => seen.length === 1, 20_000);
    expect(seen[0]).toEqual({ attempt: 2, post: `posted-by-child-${jobId}`, edit: `edited-${jobId}` });
    expect(await redis.admin.get(counterKey)).toBe('1');
  });

  it('two worker processes share one Redis: a burst finishes once each, both work, a kill -9 loses nothing', async () => {
    const prefix = uniquePrefix('c');
    const jobs = open(prefix);
    const deliveries = recordDeliveries(jobs);
    const a = workerChild(prefix, 'child-a', 15);
    const b = workerChild(prefix, 'child-b', 15);
    await Promise.all([a.waitFor(isReady), b.waitFor(isReady)]);
    const ids: string[] = [];
    for (let i = 0; i < 16; i++)
      ids.push((await jobs.submit(makeSpec({ user: `user-${i % 8}`, steps: 12 }))).jobId);
    const records = async (): Promise<GridRecord[]> =>
      (await Promise.all(ids.map((id) => jobs.record(id)))).filter((r): r is GridRecord => r !== null);
    // Kill A while it runs a job, once it has already finished one.
    const victim = await waitFor(
      'child-a mid-job after finishing one',
      async () => {
        const all = await records();
        const doneByA = all.some((r) => r.state.worker === 'child-a' && r.state.status.state === 'done');
        const runningOnA = all.find(
          (r) => r.state.worker === 'child-a' && r.state.status.state === 'running',
        );
        return doneByA && runningOnA !== undefined ? runningOnA.id : null;
      },
      20_000,
      10,
    );
    await a.kill('SIGKILL');
    await waitFor(
      'every job done',
      async () => (await records()).filter((r) => r.state.status.state === 'done').length === ids.length,
      30_000,
    );
    await waitFor('every job delivered', () => deliveries.delivered.length >= ids.length, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(deliveries.delivered).toHaveLength(ids.length);
    for (const id of ids) expect(deliveries.posts.get(id)).toBe(1);
    const all = await records();
    expect(new Set(all.map((r) => r.state.worker))).toEqual(new Set(['child-a', 'child-b']));
    const recovered = all.find((r) => r.id === victim);
    expect(recovered?.state.worker).toBe('child-b');
    expect(recovered?.state.attempts).toBe(2);
    // Nothing left holding a slot.
    expect(await redis.admin.zcard(`${prefix}:im:unfinished`)).toBe(0);
  });
});
