/**
 * `npm run bench:queue`: the queue layer's own costs, with a no-op engine (no inference).
 *
 *   - submit → start latency (idle worker), p50/p99;
 *   - per-job overhead outside inference (grid compose + PNG encode, store, delivery), p50/p99;
 *   - jobs per second with 1 and 2 workers;
 *   - a burst of 1000 submissions from 100 users: accepted, refused by reason, lost.
 *
 * Uses REDIS_URL when set, else starts a private redis-server. Throughput workers are separate
 * processes (this file re-run as `… queue.ts worker <config>`), one per GPU as in production; the
 * latency and burst workers run in this process.
 * Env: BENCH_SIZE (image side, default 512), BENCH_JOBS (jobs per measurement, default 100).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UserError } from '../../core/errors.ts';
import type { JobSpecInput } from '../../core/jobspec.ts';
import { createJobs, type JobsOptions } from '../jobs.ts';
import { silentLogger } from '../logger.ts';
import { createNoopEngine } from '../noop-engine.ts';
import { startRedis } from '../redis-launcher.ts';
import type { GridRecord, Jobs } from '../types.ts';
import { type QueueWorker, startWorker } from '../worker.ts';
import { runWorkerProcess } from '../worker-process.ts';

const SIZE = Number(process.env.BENCH_SIZE ?? 512);
const JOBS = Number(process.env.BENCH_JOBS ?? 100);

let serial = 0;
function spec(user: string, size = SIZE): JobSpecInput {
  serial++;
  return {
    v: 1,
    kind: 'imagine',
    prompts: ['a lighthouse at dusk', 'a lighthouse at dusk', 'a lighthouse at dusk', 'a lighthouse at dusk'],
    seeds: [serial, serial + 1, serial + 2, serial + 3],
    negative: '',
    sampler: 'euler_a',
    steps: 4,
    guidance: 7,
    width: size,
    height: size,
    origin: { surface: 'discord', user, channel: 'bench', interactionId: `bench-${process.pid}-${serial}` },
    requestedAt: Date.now(),
  };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
const line = (label: string, values: readonly number[]): string =>
  `${label.padEnd(44)} p50 ${fmt(percentile(values, 50)).padStart(10)}   p99 ${fmt(percentile(values, 99)).padStart(10)}`;

interface Harness {
  readonly jobs: Jobs;
  readonly delivered: Map<string, number>;
  waitDelivered(ids: readonly string[], timeoutMs: number): Promise<void>;
  workers(count: number): Promise<QueueWorker[]>;
  close(): Promise<void>;
}

async function harness(url: string, prefix: string, options: Partial<JobsOptions> = {}): Promise<Harness> {
  const jobs = createJobs({ connection: url, prefix, logger: silentLogger, ...options });
  const delivered = new Map<string, number>();
  let wake: (() => void) | undefined;
  jobs.onDelivery('discord', async (event, ctx) => {
    await ctx.once('post', async () => 'posted');
    delivered.set(event.record.id, Date.now());
    wake?.();
  });
  const started: QueueWorker[] = [];
  return {
    jobs,
    delivered,
    waitDelivered: async (ids, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (!ids.every((id) => delivered.has(id))) {
        if (Date.now() > deadline) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
    workers: async (count) => {
      const made = await Promise.all(
        Array.from({ length: count }, (_, k) =>
          startWorker({
            connection: url,
            prefix,
            engine: createNoopEngine(),
            logger: silentLogger,
            workerId: `bench-${k}`,
            previewEveryMs: 0,
          }),
        ),
      );
      started.push(...made);
      return made;
    },
    close: async () => {
      await Promise.all(started.map((w) => w.close()));
      await jobs.close();
    },
  };
}

async function latency(url: string): Promise<void> {
  const h = await harness(url, `bench-lat-${process.pid}`);
  await h.workers(1);
  const startLatency: number[] = [];
  const overhead: number[] = [];
  const compose: number[] = [];
  const store: number[] = [];
  const deliver: number[] = [];
  const inference: number[] = [];
  // Warm-up (sharp, scripts, connections).
  for (let i = 0; i < 3; i++) {
    const { jobId } = await h.jobs.submit(spec('warm'));
    await h.waitDelivered([jobId], 30_000);
  }
  for (let i = 0; i < JOBS; i++) {
    const t0 = Date.now();
    const { jobId } = await h.jobs.submit(spec(`user-${i % 10}`));
    await h.waitDelivered([jobId], 30_000);
    const record = (await h.jobs.record(jobId)) as GridRecord;
    const t = record.state.timings;
    const p = t.phases ?? {};
    const deliveredAt = h.delivered.get(jobId) ?? Number.NaN;
    const inferenceMs = (p.textEncode ?? 0) + (p.denoise ?? 0) + (p.decode ?? 0);
    startLatency.push((t.startedAt ?? Number.NaN) - t0);
    inference.push(inferenceMs);
    overhead.push(deliveredAt - (t.startedAt ?? Number.NaN) - inferenceMs);
    compose.push(p.compose ?? Number.NaN);
    store.push(p.store ?? Number.NaN);
    deliver.push(deliveredAt - (t.finishedAt ?? Number.NaN));
  }
  console.log(`\n## Latency (1 idle worker, ${JOBS} jobs one at a time, 4 × ${SIZE}×${SIZE} images)`);
  console.log(line('submit → start', startLatency));
  console.log(line('overhead outside inference (start → posted)', overhead));
  console.log(line('  of which grid compose + 5 PNG encodes', compose));
  console.log(line('  of which store in Redis', store));
  console.log(line('  of which delivery (finished → posted)', deliver));
  console.log(line('(no-op "inference", for reference)', inference));
  await h.close();
}

/** A worker process running this file in `worker` mode; resolves once it takes jobs. */
async function workerProcess(url: string, prefix: string, id: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), 'worker', JSON.stringify({ url, prefix, id })],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
  });
  return child;
}

async function throughput(url: string, workers: number, size: number, count: number): Promise<number> {
  const prefix = `bench-tp-${workers}-${size}-${process.pid}`;
  const h = await harness(url, prefix, { limits: { perUser: 1000, queueDepth: 10_000 } });
  const children = await Promise.all(
    Array.from({ length: workers }, (_, k) => workerProcess(url, prefix, `bench-${k}`)),
  );
  const warm = await Promise.all(
    Array.from({ length: workers * 2 }, () => h.jobs.submit(spec('warm', size))),
  );
  await h.waitDelivered(
    warm.map((r) => r.jobId),
    30_000,
  );
  const started = performance.now();
  const ids = await Promise.all(
    Array.from({ length: count }, (_, i) => h.jobs.submit(spec(`u${i % 50}`, size))),
  );
  await h.waitDelivered(
    ids.map((r) => r.jobId),
    300_000,
  );
  const seconds = (performance.now() - started) / 1000;
  const done = ids.filter((r) => h.delivered.has(r.jobId)).length;
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    ),
  );
  await h.close();
  return done / seconds;
}

async function burst(
  url: string,
  label: string,
  limits: { perUser?: number; queueDepth?: number },
): Promise<void> {
  const h = await harness(url, `bench-burst-${label}-${process.pid}`, { limits });
  await h.workers(2);
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      h.jobs.submit(spec(`burst-user-${i % 100}`, 64)).then(
        (r) => ({ ok: true as const, id: r.jobId }),
        (e: unknown) => ({ ok: false as const, reason: (e as UserError).code ?? String(e) }),
      ),
    ),
  );
  const submitMs = performance.now() - started;
  const accepted = results.flatMap((r) => (r.ok ? [r.id] : []));
  const refused = new Map<string, number>();
  for (const r of results) if (!r.ok) refused.set(r.reason, (refused.get(r.reason) ?? 0) + 1);
  await h.waitDelivered(accepted, 120_000);
  const states = await Promise.all(accepted.map((id) => h.jobs.status(id)));
  const lost = accepted.filter((id, k) => !h.delivered.has(id) || states[k]?.state !== 'done').length;
  console.log(
    `\n## Burst: 1000 concurrent submits from 100 users (${label}; 2 workers running, 64×64 jobs)\n` +
      `submitted in ${submitMs.toFixed(0)} ms; accepted ${accepted.length}; refused ${results.length - accepted.length} ` +
      `(${[...refused].map(([k, v]) => `${k} × ${v}`).join(', ')}); lost ${lost}`,
  );
  await h.close();
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagine-bench-redis-'));
  const redis = await startRedis({ url: process.env.REDIS_URL, dataDir });
  try {
    console.log(`# queue benchmark (no-op engine; redis ${redis.owned ? 'private' : redis.url})`);
    await latency(redis.url);
    console.log('\n## Throughput (1 or 2 worker processes; jobs submitted at once, until all delivered)');
    for (const [size, count] of [
      [64, JOBS * 3],
      [SIZE, JOBS],
    ] as const) {
      const one = await throughput(redis.url, 1, size, count);
      const two = await throughput(redis.url, 2, size, count);
      console.log(
        `${`${count} jobs of 4 × ${size}×${size}`.padEnd(30)} 1 worker ${one.toFixed(1).padStart(6)} jobs/s   ` +
          `2 workers ${two.toFixed(1).padStart(6)} jobs/s`,
      );
    }
    await burst(redis.url, 'defaults: 2 per user, depth 200', {});
    await burst(redis.url, 'depth 100', { queueDepth: 100 });
  } finally {
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'worker') {
  const config = JSON.parse(process.argv[3] ?? '{}') as { url: string; prefix: string; id: string };
  await runWorkerProcess({
    connection: config.url,
    prefix: config.prefix,
    workerId: config.id,
    engine: async () => createNoopEngine(),
    previewEveryMs: 0,
    logger: silentLogger,
  });
  process.stdout.write('ready\n');
} else {
  await main();
}
