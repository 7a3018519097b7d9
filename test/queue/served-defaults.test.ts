import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Engine, ModelDefaults } from '../../models/engine.ts';
import type { ServedModel } from '../../queue/engine-pool.ts';
import { createJobs } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, waitFor } from './helpers.ts';

const redis = useTestRedis();
const { cleanups } = redis;

const TURBO: ModelDefaults = {
  steps: 1,
  guidance: 0,
  width: 512,
  height: 512,
  scheduler: 'euler_a',
  source: 'family',
  reason: 'SD-Turbo',
};
const SDXL: ModelDefaults = {
  steps: 30,
  guidance: 5,
  width: 1024,
  height: 1024,
  source: 'family',
  reason: 'SDXL',
};

/** A noop engine that reports `defaults` as a loaded model folder's engine does. */
function engineWith(name: string, defaults: ModelDefaults): Engine {
  const inner = createNoopEngine({ name });
  return {
    info: { ...inner.info, defaults },
    generate: (request, options) => inner.generate(request, options),
    close: () => inner.close(),
  };
}

describe('workers announce their models’ defaults; Jobs.modelDefaults reads them (real Redis, real worker)', () => {
  it('known before loading (from the folder), or learned when the model loads; none for a model nobody serves', async () => {
    const prefix = uniquePrefix('mdefaults');
    const logger = captureLogger();
    const jobs = createJobs({ connection: redis.url, prefix, logger });
    cleanups.push(() => jobs.close());
    const models: ServedModel[] = [
      { name: 'turbo', load: async () => createNoopEngine(), sizeBytes: 0, revision: 'r1', defaults: TURBO },
      // Not loaded at start (not the first) and no defaults given: announced once a job loads it.
      { name: 'xl', load: async () => engineWith('xl', SDXL), sizeBytes: 0, revision: 'r2' },
    ];
    const worker = await startWorker({ connection: redis.url, prefix, models, logger, previewEveryMs: 0 });
    cleanups.push(() => worker.close({ releaseNow: true }));

    expect(await jobs.modelDefaults?.('turbo')).toEqual({
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      sampler: 'euler_a',
    });
    expect(await jobs.modelDefaults?.('xl')).toBeNull();
    expect(await jobs.modelDefaults?.('nobody')).toBeNull();

    const job = await jobs.submit({ ...makeSpec(), model: 'xl' });
    await waitFor('xl’s job', async () => (await jobs.status(job.jobId))?.state === 'done');
    // The next refresh (every third of the 15 s TTL) carries them; no scheduler: no sampler.
    await waitFor(
      'xl’s defaults announced',
      async () => (await jobs.modelDefaults?.('xl')) ?? undefined,
      10_000,
      100,
    );
    expect(await jobs.modelDefaults?.('xl')).toEqual({ steps: 30, guidance: 5, width: 1024, height: 1024 });
  }, 30_000);

  it('an announcement that fails the schema reads as none, and is logged', async () => {
    const prefix = uniquePrefix('mdefaults-bad');
    const logger = captureLogger();
    const jobs = createJobs({ connection: redis.url, prefix, logger });
    cleanups.push(() => jobs.close());
    const client = new Redis(redis.url);
    cleanups.push(async () => client.disconnect());
    const key = queueKeys(prefix).servedDefaults('m');
    for (const bad of ['{"steps": 0, "guidance": 1, "width": 512, "height": 512}', 'not json']) {
      await client.set(key, bad, 'PX', 10_000);
      expect(await jobs.modelDefaults?.('m')).toBeNull();
    }
    const warned = logger.entries.filter(
      (e) => e.msg === 'ignoring invalid model defaults announced by a worker',
    );
    expect(warned.map((e) => e.obj)).toEqual([
      { model: 'm', problem: expect.stringContaining('steps') },
      { model: 'm', problem: 'not JSON' },
    ]);
  });
});
