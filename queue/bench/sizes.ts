/**
 * `npm run bench:sizes [-- --model DIR]`: what one finished job keeps in Redis, measured on a real
 * job (the demo model unless --model is given): the record (prompts, seeds, settings, model), the
 * grid PNG and the full-size PNGs, as payload bytes and as Redis reports them (MEMORY USAGE), and
 * how many jobs' PNGs fit in IMAGE_STORE_MAX_MB's default.
 *
 * Uses REDIS_URL when set, else starts a private redis-server in a temp folder.
 * Env: BENCH_SIZE (image side, default 512), BENCH_STEPS (default 25), MODELS_DIR (./data/models).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { ensureDemoModel } from '../../models/demo/index.ts';
import { loadEngineInThread } from '../../models/engine-thread/index.ts';
import { createJobs } from '../jobs.ts';
import { queueKeys } from '../keys.ts';
import { silentLogger } from '../logger.ts';
import { startRedis } from '../redis-launcher.ts';
import { startWorker, WORKER_DEFAULTS } from '../worker.ts';

const SIZE = Number(process.env.BENCH_SIZE ?? 512);
const STEPS = Number(process.env.BENCH_STEPS ?? 25);

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
}

async function main(): Promise<void> {
  const modelArg = argument('--model');
  const modelDir =
    modelArg === undefined
      ? await ensureDemoModel(join(process.env.MODELS_DIR ?? './data/models', 'demo'))
      : resolve(modelArg);
  const dataDir = await mkdtemp(join(tmpdir(), 'imagine-sizes-'));
  const redis = await startRedis({ url: process.env.REDIS_URL, dataDir });
  const prefix = `sizes-${process.pid}`;
  const keys = queueKeys(prefix);
  const jobs = createJobs({ connection: redis.url, prefix, logger: silentLogger });
  const worker = await startWorker({
    connection: redis.url,
    prefix,
    // In a worker thread, as the app does: inference must not block this process's Redis calls.
    engine: () => loadEngineInThread(modelDir),
    logger: silentLogger,
    previewEveryMs: 0,
  });
  const admin = new Redis(redis.url);
  try {
    const { jobId } = await jobs.submit({
      v: 1,
      kind: 'imagine',
      prompts: Array(4).fill('a lighthouse at dusk, detailed oil painting'),
      seeds: [42, 43, 44, 45],
      negative: 'blurry',
      sampler: 'pndm',
      steps: STEPS,
      guidance: 7.5,
      width: SIZE,
      height: SIZE,
      origin: { surface: 'web', user: 'sizes', channel: 'web', interactionId: `sizes-${Date.now()}` },
      requestedAt: Date.now(),
    });
    for (;;) {
      const status = await jobs.status(jobId);
      if (status?.state === 'done') break;
      if (status === null || status.state === 'failed' || status.state === 'cancelled') {
        throw new Error(`the job ended ${JSON.stringify(status)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const fields = await admin.hgetallBuffer(keys.record(jobId));
    const recordPayload = Object.entries(fields).reduce((n, [k, v]) => n + k.length + v.length, 0);
    const imageKeys = [0, 1, 2, 3].map((k) => keys.image(jobId, k));
    const gridBytes = await admin.strlen(keys.grid(jobId));
    const imageBytes = await Promise.all(imageKeys.map((k) => admin.strlen(k)));
    const usage = async (key: string) => Number(await admin.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
    const recordUsage = await usage(keys.record(jobId));
    const gridUsage = await usage(keys.grid(jobId));
    const imagesUsage = (await Promise.all(imageKeys.map(usage))).reduce((a, b) => a + b, 0);
    const pngs = gridUsage + imagesUsage;
    const budget = WORKER_DEFAULTS.imageStoreMaxBytes;
    const model = (await jobs.record(jobId))?.result?.model;
    const result = {
      model: model?.name,
      size: `${SIZE}x${SIZE}`,
      steps: STEPS,
      recordBytes: recordPayload,
      recordRedisBytes: recordUsage,
      gridPngBytes: gridBytes,
      imagePngBytes: imageBytes,
      pngRedisBytes: pngs,
      jobsPerDefaultBudget: Math.floor(budget / pngs),
      recordsPerGiB: Math.floor((1024 * 1024 * 1024) / recordUsage),
    };
    console.log(JSON.stringify(result));
    const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    console.log(
      [
        `model ${result.model}, ${result.size}, ${STEPS} steps`,
        `record (prompts, seeds, settings, model): ${recordPayload} B payload, ${recordUsage} B in Redis`,
        `grid PNG: ${kb(gridBytes)}; full-size PNGs: ${imageBytes.map(kb).join(', ')}`,
        `all PNGs in Redis: ${kb(pngs)}; the default IMAGE_STORE_MAX_MB (1024) holds ${result.jobsPerDefaultBudget} jobs' PNGs`,
      ].join('\n'),
    );
  } finally {
    admin.disconnect();
    await worker.close();
    await jobs.close();
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
