import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { specFrom } from '../../core/batch.ts';
import type { JobSpec, JobSpecInput } from '../../core/jobspec.ts';
import { upscale2x, vary } from '../../core/vary.ts';
import type { Engine, GenerateRequest } from '../../models/engine.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { readPngText } from '../../models/png.ts';
import { describeInitImage } from '../../queue/init-images.ts';
import { createJobs } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import type { GridRecord, Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { TINY_SD } from '../models/tiny-sd.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Image-to-image through the queue: the worker reads the starting picture from the store (an uploaded
 * blob, or a grid's full-size image, made again when its PNG was dropped), runs the engine with it and
 * the spec's strength, and writes the strength and the source into the PNG's parameters. Real Redis and
 * the real worker; real onnxruntime on tiny-sd where the pixels matter.
 */

const redis = useTestRedis();
const { cleanups } = redis;

function setup() {
  const prefix = uniquePrefix('i2i');
  const logger = captureLogger();
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger,
    backoff: { type: 'fixed', delayMs: 50 },
    delivery: { backoffMs: 50, stalledIntervalMs: 500, lockDurationMs: 2000 },
  });
  cleanups.push(() => jobs.close());
  async function worker(engine: Engine): Promise<void> {
    const w = await startWorker({
      connection: redis.url,
      prefix,
      engine,
      logger,
      previewEveryMs: 0,
      stalledIntervalMs: 500,
      lockDurationMs: 2000,
    });
    cleanups.push(() => w.close({ releaseNow: true }));
  }
  return { jobs, keys: queueKeys(prefix), worker, logger };
}

/** A noop engine that remembers every request it was given. */
function recordingEngine(): { engine: Engine; requests: GenerateRequest[] } {
  const requests: GenerateRequest[] = [];
  const engine = createNoopEngine({
    failWith: (call) => {
      requests.push(call.request);
      return undefined;
    },
  });
  return { engine, requests };
}

async function rgb(png: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

const from = (interactionId: string) => ({
  origin: {
    surface: 'discord' as const,
    user: 'user-1',
    channel: 'channel-1',
    interactionId,
    messageRef: {},
  },
  requestedAt: Date.now(),
});

async function finished(jobs: Jobs, id: string): Promise<GridRecord> {
  return waitFor(`job ${id} to end`, async () => {
    const record = await jobs.record(id);
    const state = record?.state.status.state;
    return state === 'done' || state === 'failed' || state === 'cancelled' ? record : undefined;
  });
}

let tinyEngine: Promise<Engine> | undefined;
function tiny(): Promise<Engine> {
  tinyEngine ??= loadEngine(TINY_SD, { intraOpThreads: 1 });
  return tinyEngine;
}
afterAll(async () => {
  await (await tinyEngine)?.close();
});

describe('image-to-image jobs through the worker', () => {
  it('Vary on image 2 with tiny-sd: the worker’s images equal the engine API’s img2img output, seed for seed', async () => {
    const { jobs, worker } = setup();
    const engine = await tiny();
    await worker(engine);
    const parentSpec = makeSpec({
      steps: 4,
      seeds: [11, 12, 13, 14],
      prompts: ['a red fox', 'a blue bird', 'a cat', 'a dog'],
    });
    const parent = await jobs.submit(parentSpec);
    const parentRecord = await finished(jobs, parent.jobId);
    expect(parentRecord.state.status.state).toBe('done');
    const batch = vary(parentRecord.spec, parent.jobId, 1, 'strong', 500);
    const spec = specFrom(batch, { ...from('vary-1'), parentId: parent.jobId });
    const submitted = await jobs.submit(spec);
    expect(submitted.seeds).toEqual([500, 501, 502, 503]);
    const record = await finished(jobs, submitted.jobId);
    expect(record.state.status).toEqual({ state: 'done' });
    expect(record.spec).toMatchObject({
      kind: 'vary',
      parent: { gridId: parent.jobId, index: 1 },
      init: { from: 'grid', gridId: parent.jobId, index: 1 },
      strength: 0.6,
      prompts: ['a blue bird', 'a blue bird', 'a blue bird', 'a blue bird'],
      seeds: [500, 501, 502, 503],
    });

    // The same inputs straight through the engine API: image 2 of the parent as the picture.
    const initImage = (await jobs.imagePng(parent.jobId, 1))!;
    const direct = await engine.generate({
      prompts: batch.prompts,
      negative: batch.negative,
      seeds: batch.seeds,
      scheduler: batch.sampler,
      steps: batch.steps,
      guidance: batch.guidance,
      width: batch.width,
      height: batch.height,
      initImage,
      strength: 0.6,
    });
    for (let k = 0; k < 4; k++) {
      const png = (await jobs.imagePng(submitted.jobId, k))!;
      const made = await rgb(png);
      expect(made.data.equals(Buffer.from(direct.images[k]!.data)), `image ${k + 1}`).toBe(true);
      const text = readPngText(png).parameters ?? '';
      expect(text).toContain(`Seed: ${500 + k}`);
      expect(text).toContain('Denoising strength: 0.6');
      expect(text).toContain(`Init image: ${parent.jobId} image 2`);
    }
    // Not text-to-image in disguise: the picture changed the result.
    const txt2img = await engine.generate({
      prompts: batch.prompts,
      negative: batch.negative,
      seeds: batch.seeds,
      scheduler: batch.sampler,
      steps: batch.steps,
      guidance: batch.guidance,
      width: batch.width,
      height: batch.height,
    });
    expect(Buffer.from(txt2img.images[0]!.data).equals(Buffer.from(direct.images[0]!.data))).toBe(false);
  }, 120_000);

  it('Upscale ×2: the image at twice the size, from the parent’s image resized, with its own seed and a parameters chunk', async () => {
    const { jobs, worker } = setup();
    const { engine, requests } = recordingEngine();
    await worker(engine);
    const parent = await jobs.submit(makeSpec({ seeds: [5, 6, 7, 8] }));
    const parentRecord = await finished(jobs, parent.jobId);
    const batch = upscale2x(parentRecord.spec, parent.jobId, 2, 768 * 768);
    const { jobId } = await jobs.submit(specFrom(batch, { ...from('up-1'), parentId: parent.jobId }));
    const record = await finished(jobs, jobId);
    expect(record.state.status).toEqual({ state: 'done' });
    expect(record.spec).toMatchObject({
      kind: 'upscale',
      seeds: [7],
      width: 128,
      height: 128,
      strength: 0.4,
    });
    const png = (await jobs.imagePng(jobId, 0))!;
    expect(await sharp(png).metadata()).toMatchObject({ width: 128, height: 128, format: 'png' });
    const text = readPngText(png).parameters ?? '';
    expect(text).toContain('Seed: 7');
    expect(text).toContain('Size: 128x128');
    expect(text).toContain('Denoising strength: 0.4');
    expect(text).toContain(`Init image: ${parent.jobId} image 3`);
    // The engine got the parent's stored image 3 (64x64; it resizes it to 128x128) and the strength.
    const request = requests.at(-1)!;
    expect(request).toMatchObject({ width: 128, height: 128, strength: 0.4, seeds: [7] });
    expect(Buffer.from(request.initImage!).equals((await jobs.imagePng(parent.jobId, 2))!)).toBe(true);
  });

  it('a grid image whose PNG was dropped is made again from its record before the vary runs', async () => {
    const { jobs, keys, worker } = setup();
    const { engine, requests } = recordingEngine();
    await worker(engine);
    const parent = await jobs.submit(makeSpec({ seeds: [21, 22, 23, 24] }));
    const parentRecord = await finished(jobs, parent.jobId);
    const original = await rgb((await jobs.imagePng(parent.jobId, 3))!);
    await redis.admin.del(keys.image(parent.jobId, 3));
    const { jobId } = await jobs.submit(
      specFrom(vary(parentRecord.spec, parent.jobId, 3, 'subtle', 90), {
        ...from('v-2'),
        parentId: parent.jobId,
      }),
    );
    expect((await finished(jobs, jobId)).state.status).toEqual({ state: 'done' });
    // Two engine calls after the parent: image 4 alone (seed 24), then the vary from it.
    const [remake, run] = requests.slice(-2);
    expect(remake).toMatchObject({ seeds: [24], prompts: ['a red fox'] });
    expect(remake?.initImage).toBeUndefined();
    expect(run).toMatchObject({ seeds: [90, 91, 92, 93], strength: 0.35 });
    expect((await rgb(run!.initImage!)).data.equals(original.data)).toBe(true);
  });

  it('an upload is stored once per SHA-256, for the record TTL and a day, and its TTL is never shortened', async () => {
    const { jobs, keys } = setup();
    const bytes = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#aa3300' } })
      .png()
      .toBuffer();
    const init = await describeInitImage(bytes);
    await jobs.submit({ ...makeSpec(), v: 2, init, strength: 0.5 }, { initImage: bytes });
    const key = keys.initImage(init.sha256);
    expect(key).toMatch(new RegExp(`:im:init:${init.sha256}$`, 'u'));
    const day = 24 * 60 * 60 * 1000;
    const ttl = await redis.admin.pttl(key);
    expect(ttl).toBeGreaterThan(31 * day - 60_000);
    expect(ttl).toBeLessThanOrEqual(31 * day);
    // A longer life (another job needs it longer) survives the next upload of the same picture.
    await redis.admin.pexpire(key, 90 * day);
    await jobs.submit({ ...makeSpec({ user: 'user-2' }), v: 2, init, strength: 0.5 }, { initImage: bytes });
    expect(await redis.admin.pttl(key)).toBeGreaterThan(89 * day);
    expect(await redis.admin.getBuffer(key)).toEqual(bytes);
    expect(await redis.admin.keys(`${keys.prefix}:im:init:*`)).toEqual([key]);
  });

  it('a missing picture fails the job once, clearly (no retries): an expired upload, an expired parent grid', async () => {
    const { jobs, keys, worker } = setup();
    const { engine, requests } = recordingEngine();
    const bytes = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const init = await describeInitImage(bytes);
    const upload: JobSpecInput = { ...makeSpec(), v: 2, init, strength: 0.5 };
    const uploaded = await jobs.submit(upload, { initImage: bytes });
    expect(await redis.admin.getBuffer(keys.initImage(init.sha256))).toEqual(bytes);
    // Gone between submit and run (evicted, flushed).
    await redis.admin.del(keys.initImage(init.sha256));
    const deliveries = recordDeliveries(jobs);
    await worker(engine);
    const failed = await finished(jobs, uploaded.jobId);
    expect(failed.state.status).toMatchObject({ state: 'failed', userFacing: true });
    expect((failed.state.status as { reason: string }).reason).toMatch(
      /uploaded starting image .* no longer stored/u,
    );
    expect(failed.state.attempts).toBe(1);
    await waitFor('the failed delivery', () => deliveries.byId(uploaded.jobId)[0]);

    // A vary whose parent grid (record and PNGs) expired while it waited.
    const parent = await jobs.submit(makeSpec({ user: 'user-2' }));
    const parentRecord = await finished(jobs, parent.jobId);
    const spec: JobSpec = parentRecord.spec;
    const callsBefore = requests.length;
    await redis.admin.del(keys.record(parent.jobId), keys.image(parent.jobId, 0));
    const { jobId } = await jobs.submit(
      specFrom(vary(spec, parent.jobId, 0, 'subtle', 1), { ...from('v-3'), parentId: parent.jobId }),
    );
    const gone = await finished(jobs, jobId);
    expect(gone.state.status).toMatchObject({ state: 'failed', userFacing: true });
    expect((gone.state.status as { reason: string }).reason).toBe(
      'The grid this job starts from has expired, so its image 1 can no longer be read. Run /imagine again.',
    );
    expect(gone.state.attempts).toBe(1);
    expect(requests.length).toBe(callsBefore);
  });
});
