import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../models/engine.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { createJobs, type JobsOptions } from '../../queue/jobs.ts';
import { GENERATE_QUEUE, queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import type { ProgressEvent } from '../../queue/types.ts';
import { type QueueWorker, startWorker, type WorkerOptions } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { TINY_SD } from '../models/tiny-sd.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Records and results in Redis: a record's TTL counts from when its job ended (item 13), PNGs are
 * kept shorter and within a byte budget and made again from the record when gone (item 14), and
 * progress counts the user's steps (item 19). Real Redis; real onnxruntime on the tiny-sd fixture
 * where the pixels matter.
 */

const redis = useTestRedis();
const { cleanups } = redis;

function setup(jobsOptions: Partial<Omit<JobsOptions, 'connection' | 'prefix' | 'logger'>> = {}) {
  const prefix = uniquePrefix('r');
  const logger = captureLogger();
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger,
    delivery: { backoffMs: 50, stalledIntervalMs: 500, lockDurationMs: 2000 },
    ...jobsOptions,
  });
  cleanups.push(() => jobs.close());
  async function worker(
    engine: Engine = createNoopEngine(),
    options: Partial<Omit<WorkerOptions, 'connection' | 'prefix' | 'engine' | 'logger'>> = {},
  ): Promise<QueueWorker> {
    const w = await startWorker({
      connection: redis.url,
      prefix,
      engine,
      logger,
      previewEveryMs: 0,
      stalledIntervalMs: 500,
      lockDurationMs: 2000,
      ...options,
    });
    cleanups.push(() => w.close({ releaseNow: true }));
    return w;
  }
  return { prefix, keys: queueKeys(prefix), jobs, logger, worker };
}

let tinyEngine: Promise<Engine> | undefined;
/** One tiny-sd engine for the file (loading it is the slow part). */
function tiny(): Promise<Engine> {
  tinyEngine ??= loadEngine(TINY_SD, { intraOpThreads: 1 });
  return tinyEngine;
}
afterAll(async () => {
  await (await tinyEngine)?.close();
});

describe('record TTL (counts from completion)', () => {
  it('a job queued for longer than RECORD_TTL is still there, runs, and is delivered; its record then expires', async () => {
    const ttlMs = 300;
    const { jobs, keys, worker } = setup({ recordTtlMs: ttlMs });
    const deliveries = recordDeliveries(jobs);
    const { jobId } = await jobs.submit(makeSpec());
    // A key given the same TTL at the same moment: once Redis has expired it, a TTL counted from
    // submission would have dropped the queued record too.
    await redis.admin.set(`${keys.prefix}:probe`, '1', 'PX', ttlMs);
    expect(await redis.admin.pttl(keys.record(jobId))).toBe(-1);
    await waitFor(
      'the probe key to expire',
      async () => (await redis.admin.exists(`${keys.prefix}:probe`)) === 0,
    );
    expect(await jobs.status(jobId)).toMatchObject({ state: 'queued' });

    await worker();
    await waitFor('the delivery', () => deliveries.byId(jobId)[0]);
    const record = deliveries.byId(jobId)[0]!.event.record;
    expect(record.state.status.state).toBe('done');
    const finishedAt = record.state.timings.finishedAt!;
    expect(record.state.expiresAt).toBe(finishedAt + ttlMs);
    // And then it does expire, a TTL after it finished.
    await waitFor('the finished record to expire', async () => (await jobs.record(jobId)) === null);
  });

  it('running jobs have no TTL; a cancelled queued job gets its TTL when cancelled', async () => {
    const { jobs, keys } = setup({ recordTtlMs: 60_000 });
    const { jobId } = await jobs.submit(makeSpec({ user: 'u-cancel' }));
    expect(await redis.admin.pttl(keys.record(jobId))).toBe(-1);
    const before = Date.now();
    await jobs.cancel(jobId, { surface: 'discord', user: 'u-cancel' });
    const pttl = await redis.admin.pttl(keys.record(jobId));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
    const record = await jobs.record(jobId);
    expect(record?.state.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
  });
});

describe('PNG storage (shorter TTL, a byte budget, made again when gone)', () => {
  it('keeps PNGs for the image TTL and the small record for the record TTL', async () => {
    const { jobs, keys, worker } = setup();
    await worker(createNoopEngine(), { imageTtlMs: 60_000 });
    const deliveries = recordDeliveries(jobs);
    const { jobId } = await jobs.submit(makeSpec());
    await waitFor('the delivery', () => deliveries.byId(jobId)[0]);
    const gridTtl = await redis.admin.pttl(keys.grid(jobId));
    expect(gridTtl).toBeGreaterThan(0);
    expect(gridTtl).toBeLessThanOrEqual(60_000);
    expect(await redis.admin.pttl(keys.image(jobId, 3))).toBeLessThanOrEqual(60_000);
    expect(await redis.admin.pttl(keys.record(jobId))).toBeGreaterThan(29 * 86_400_000);
  });

  it('over the budget, the oldest grids lose their PNGs first and the books stay exact', async () => {
    const { jobs, keys, worker } = setup({ limits: { perUser: 10 } });
    const deliveries = recordDeliveries(jobs);
    // Learn one job's size with no limit, then allow a bit more than two such jobs.
    const probe = await worker(createNoopEngine(), { imageStoreMaxBytes: 0 });
    const first = await jobs.submit(makeSpec());
    await waitFor('the first delivery', () => deliveries.byId(first.jobId)[0]);
    const oneJob = Number(await redis.admin.get(keys.imageBytes));
    expect(oneJob).toBeGreaterThan(0);
    await probe.close();
    await worker(createNoopEngine(), { imageStoreMaxBytes: Math.floor(oneJob * 2.5) });

    const ids = [first.jobId];
    for (const seed of [20, 30, 40]) {
      const { jobId } = await jobs.submit(makeSpec({ seeds: [seed, seed + 1, seed + 2, seed + 3] }));
      await waitFor('a delivery', () => deliveries.byId(jobId)[0]);
      ids.push(jobId);
    }
    // Noop PNGs of the same size: the two newest fit, the two oldest went, oldest first.
    const present = await Promise.all(
      ids.map(async (id) => (await redis.admin.exists(keys.grid(id), keys.image(id, 0))) === 2),
    );
    expect(present).toEqual([false, false, true, true]);
    expect(await redis.admin.exists(keys.image(ids[0]!, 3), keys.image(ids[1]!, 3))).toBe(0);
    const stored = await redis.admin.zrange(keys.imageIndex, '0', '-1');
    expect(stored).toEqual(ids.slice(2));
    const sizes = await redis.admin.hgetall(keys.imageSizes);
    const sum = Object.values(sizes).reduce((a, v) => a + Number(v.split(':')[0]), 0);
    expect(Number(await redis.admin.get(keys.imageBytes))).toBe(sum);
    expect(sum).toBeLessThanOrEqual(Math.floor(oneJob * 2.5));
    // The records themselves are all still there.
    for (const id of ids) expect((await jobs.record(id))?.state.status.state).toBe('done');
  });

  it('a grid made again that expires before the others still keeps the store within its budget', async () => {
    // PNGs expire with their record at the latest, so a grid made again late in its record's life is
    // the first to expire: it must not stop the eviction of the others.
    const { jobs, keys, worker } = setup({ limits: { perUser: 10 }, recordTtlMs: 60_000 });
    const deliveries = recordDeliveries(jobs);
    const probe = await worker(createNoopEngine(), { imageStoreMaxBytes: 0 });
    const first = await jobs.submit(makeSpec());
    await waitFor('the first delivery', () => deliveries.byId(first.jobId)[0]);
    const oneJob = Number(await redis.admin.get(keys.imageBytes));
    await probe.close();
    const budget = Math.floor(oneJob * 1.5);
    await worker(createNoopEngine(), { imageStoreMaxBytes: budget, imageTtlMs: 3_600_000 });
    const second = await jobs.submit(makeSpec({ seeds: [50, 51, 52, 53] }));
    await waitFor('the second delivery', () => deliveries.byId(second.jobId)[0]);
    expect(await redis.admin.exists(keys.grid(first.jobId))).toBe(0);

    expect(await jobs.imagePng(first.jobId, 0)).not.toBeNull();
    expect(await redis.admin.exists(keys.grid(second.jobId), keys.image(second.jobId, 0))).toBe(0);
    expect(await redis.admin.zrange(keys.imageIndex, '0', '-1')).toEqual([first.jobId]);
    expect(Number(await redis.admin.get(keys.imageBytes))).toBeLessThanOrEqual(budget);
  });

  it('a PNG that is gone is made again from the record: same bytes, one job for concurrent presses', async () => {
    const { jobs, keys, logger, worker } = setup();
    await worker(await tiny());
    const deliveries = recordDeliveries(jobs);
    const spec = makeSpec({
      steps: 3,
      seeds: [5, 6, 7, 8],
      prompts: ['a red fox', 'a blue bird', 'a red fox', 'a tree'],
    });
    const { jobId } = await jobs.submit({ ...spec, sampler: 'pndm' });
    await waitFor('the delivery', () => deliveries.byId(jobId)[0], 60_000);
    const grid = (await jobs.gridPng(jobId))!;
    const image2 = (await jobs.imagePng(jobId, 1))!;
    expect(image2.length).toBeGreaterThan(0);

    // As if IMAGE_TTL had passed: every PNG key of the grid is gone.
    await redis.admin.del(keys.grid(jobId), ...[0, 1, 2, 3].map((k) => keys.image(jobId, k)));
    const [a, b, g] = await Promise.all([
      jobs.imagePng(jobId, 1),
      jobs.imagePng(jobId, 1),
      jobs.gridPng(jobId),
    ]);
    expect(a?.equals(image2)).toBe(true);
    expect(b?.equals(image2)).toBe(true);
    expect(g?.equals(grid)).toBe(true);
    // Let any further render job run out before counting them.
    const queue = new Queue(GENERATE_QUEUE, { connection: { url: redis.url }, prefix: keys.prefix });
    cleanups.push(() => queue.close());
    await waitFor('the generate queue to be idle', async () => {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(counts).every((n) => n === 0);
    });
    expect(logger.entries.filter((e) => e.msg === 'PNGs made again from the record')).toHaveLength(1);
    // The record was not touched: still done, delivered once.
    expect((await jobs.record(jobId))?.state.status.state).toBe('done');
    expect(deliveries.byId(jobId)).toHaveLength(1);
    // An index the grid doesn't have is not a reason to render.
    expect(await jobs.imagePng(jobId, 7)).toBeNull();
  });
});

describe('progress (item 19)', () => {
  it('a PNDM job counts the steps asked for, while running and when done', async () => {
    const { jobs, worker } = setup();
    await worker(await tiny());
    const seen: ProgressEvent[] = [];
    jobs.onProgress('discord', (event) => seen.push(event));
    const deliveries = recordDeliveries(jobs);
    const steps = 4; // PNDM evaluates the UNet steps + 1 times
    const { jobId } = await jobs.submit({ ...makeSpec({ steps }), sampler: 'pndm' });
    await waitFor('the delivery', () => deliveries.byId(jobId)[0], 60_000);
    await waitFor('the last progress event', () => seen.find((e) => e.step === steps));
    expect(seen.length).toBeGreaterThan(1);
    for (const event of seen) expect(event.total).toBe(steps);
    expect(seen.map((e) => e.step)).toEqual([...seen.map((e) => e.step)].sort((x, y) => x - y));
    expect(Math.max(...seen.map((e) => e.step))).toBe(steps);
  });
});
