import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../core/errors.ts';
import type { ServedModel } from '../../queue/engine-pool.ts';
import { createJobs } from '../../queue/jobs.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
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
});
