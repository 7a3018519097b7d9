import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../core/errors.ts';
import type { Engine } from '../../models/engine.ts';
import type { ServedModel } from '../../queue/engine-pool.ts';
import { createJobs } from '../../queue/jobs.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { createQueueProbe } from '../../queue/probe.ts';
import type { Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, waitFor } from './helpers.ts';

const redis = useTestRedis();
const { cleanups } = redis;

function open(prefix: string): Jobs {
  const jobs = createJobs({ connection: redis.url, prefix, logger: captureLogger() });
  cleanups.push(() => jobs.close());
  return jobs;
}

function noopModel(name: string): ServedModel {
  return {
    name,
    load: async () => createNoopEngine({ name: `${name}-folder` }),
    sizeBytes: 0,
    revision: `rev-${name}`,
  };
}

describe('routing by model (real Redis, real worker)', () => {
  it('a job reaches only a worker with its model; workers say what they serve; the record keeps name and revision', async () => {
    const prefix = uniquePrefix('route');
    const jobs = open(prefix);
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      models: [noopModel('a'), noopModel('b')],
      logger: captureLogger(),
      previewEveryMs: 0,
    });
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await worker.close({ releaseNow: true });
    });
    expect(await jobs.modelServed?.('a')).toBe(true);
    expect(await jobs.modelServed?.('b')).toBe(true);
    expect(await jobs.modelServed?.('c')).toBe(false);

    // Model c: nobody serves it, so it waits in its own queue while b's job runs.
    const waiting = await jobs.submit({ ...makeSpec(), model: 'c' });
    const served = await jobs.submit({ ...makeSpec(), model: 'b' });
    await waitFor('b’s job', async () => (await jobs.status(served.jobId))?.state === 'done');
    const record = await jobs.record(served.jobId);
    expect(record?.spec.model).toBe('b');
    expect(record?.result?.model).toEqual({ name: 'b', demo: true, revision: 'rev-b', label: 'b-folder' });
    expect(await jobs.status(waiting.jobId)).toEqual({ state: 'queued', position: 0 });

    // A refine of a grid made with other files under this name is refused while the workers say so.
    await expect(
      jobs.submit({
        ...makeSpec(),
        kind: 'reroll',
        parent: { gridId: served.jobId },
        model: 'b',
        modelRevision: 'rev-old',
      }),
    ).rejects.toMatchObject({ code: ErrorCode.ModelGone });
    expect(
      (
        await jobs.submit({
          ...makeSpec(),
          kind: 'reroll',
          parent: { gridId: served.jobId },
          model: 'b',
          modelRevision: 'rev-b',
        })
      ).duplicate,
    ).toBe(false);

    // The waiting job is cancelled from its own model's queue.
    await jobs.cancel(waiting.jobId, { surface: 'discord', user: 'user-1' });
    expect((await jobs.status(waiting.jobId))?.state).toBe('cancelled');

    await worker.close();
    closed = true;
    expect(await jobs.modelServed?.('a')).toBe(false);
  });

  it('one batch at a time across models; on shutdown a job still waiting for the slot is handed back unrun', async () => {
    const prefix = uniquePrefix('slots');
    const jobs = open(prefix);
    const inner = createNoopEngine({ name: 'a-folder' });
    // Model a's batches run until aborted (the worker's release on shutdown).
    const held: Engine = {
      info: inner.info,
      generate: (_request, options = {}) =>
        new Promise((_resolve, reject) => {
          options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
        }),
      close: async () => {},
    };
    const b = createNoopEngine({ name: 'b-folder' });
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      models: [
        { name: 'a', load: async () => held, sizeBytes: 0, revision: 'rev-a' },
        { name: 'b', load: async () => b, sizeBytes: 0, revision: 'rev-b' },
      ],
      concurrency: 1,
      logger: captureLogger(),
      previewEveryMs: 0,
    });
    const queueB = new Queue('generate-b', { connection: { url: redis.url }, prefix });
    cleanups.push(() => queueB.close());
    const first = await jobs.submit({ ...makeSpec(), model: 'a' });
    await waitFor('a running', async () => (await jobs.status(first.jobId))?.state === 'running');
    const second = await jobs.submit({ ...makeSpec(), model: 'b' });
    // Taken from b's queue by this worker, but the one slot is a's.
    await waitFor('b fetched', async () => (await queueB.getJobState(second.jobId)) === 'active');
    expect(b.calls).toBe(0);
    await worker.close({ releaseNow: true });
    expect(b.calls).toBe(0);
    // Handed back with its turn (fair sharing's BullMQ priority).
    expect(await queueB.getJobState(second.jobId)).toBe('prioritized');
    expect(await jobs.status(second.jobId)).toEqual({ state: 'queued', position: 0 });
    expect((await jobs.status(first.jobId))?.state).toBe('queued');
  });

  it('the queue-depth gauges count every model’s queue', async () => {
    const prefix = uniquePrefix('probe');
    const jobs = open(prefix);
    await jobs.submit({ ...makeSpec(), model: 'x' });
    await jobs.submit({ ...makeSpec(), model: 'y' });
    const both = createQueueProbe(redis.url, prefix, ['x', 'y']);
    const plain = createQueueProbe(redis.url, prefix);
    cleanups.push(
      () => both.close(),
      () => plain.close(),
    );
    const waiting = (c: { waiting?: number; prioritized?: number }) =>
      (c.waiting ?? 0) + (c.prioritized ?? 0);
    expect(waiting(await both.counts())).toBe(2);
    expect(waiting(await plain.counts())).toBe(0);
  });
});
