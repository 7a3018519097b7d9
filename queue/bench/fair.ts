/**
 * `npm run bench:fair`: fair sharing of the GPU between teams (queue/fairness.ts) against plain
 * FIFO, in the same run, with the real Redis, real worker processes and a fake engine whose grids
 * take a fixed time.
 *
 *   - team A submits a burst of grids at once, then team B one: after how many of A's grids does
 *     B's start (in all, and of those A's that had not yet started when B asked), and how long B
 *     waited;
 *   - throughput of the whole run (grids/s, first submit → last delivered), fair over FIFO, and of
 *     the worker alone draining a backlog of as many grids from three teams;
 *   - the same with 0 ms grids, where the queue's own costs (the stamp script, the prioritized
 *     set) are all there is;
 *   - submit latency p50/p99 in each mode (the burst's submits all at once).
 *
 * Uses REDIS_URL when set, else starts a private redis-server. The worker is a separate process
 * (this file re-run as `… fair.ts worker <config>`), as in production.
 * Env: BENCH_BURST (A's grids, default 100), BENCH_GRID_MS (one grid's time, default 100),
 * BENCH_WORKERS (worker processes, default 1), BENCH_REPEAT (runs per mode, default 3),
 * BENCH_SAME_ARMS=1 (calibration: the "FIFO" arm is fair too, so any difference is noise or bias).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import type { JobSpecInput } from '../../core/jobspec.ts';
import { createJobs } from '../jobs.ts';
import { generateQueueName } from '../keys.ts';
import { silentLogger } from '../logger.ts';
import { createNoopEngine } from '../noop-engine.ts';
import { startRedis } from '../redis-launcher.ts';
import type { GridRecord } from '../types.ts';
import { runWorkerProcess } from '../worker-process.ts';

const BURST = Number(process.env.BENCH_BURST ?? 100);
const GRID_MS = Number(process.env.BENCH_GRID_MS ?? 100);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
/** Calibration: both arms fair, so their difference is the machine's and the method's, not FIFO's. */
const SAME_ARMS = process.env.BENCH_SAME_ARMS === '1';
const STEPS = 4;

interface WorkerConfig {
  readonly url: string;
  readonly prefix: string;
  readonly id: string;
  readonly gridMs: number;
}

let serial = 0;
function spec(team: string, user: string): JobSpecInput {
  serial++;
  return {
    v: 1,
    kind: 'imagine',
    prompts: ['a lighthouse at dusk', 'a lighthouse at dusk', 'a lighthouse at dusk', 'a lighthouse at dusk'],
    seeds: [serial, serial + 1, serial + 2, serial + 3],
    negative: '',
    sampler: 'euler_a',
    steps: STEPS,
    guidance: 7,
    width: 64,
    height: 64,
    origin: {
      surface: 'slack',
      user,
      channel: `${team}-general`,
      workspace: team,
      interactionId: `fair-${process.pid}-${serial}`,
    },
    requestedAt: Date.now(),
  };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

async function workerProcess(config: WorkerConfig): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), 'worker', JSON.stringify(config)],
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

async function stopChildren(children: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          child.removeAllListeners('exit');
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    ),
  );
}

interface RunResult {
  /** A's grids that started before B's. */
  readonly aBeforeB: number;
  /** Of those, the ones that had not started yet when B was submitted. */
  readonly aBeforeBAfterAsking: number;
  /** B's submit → start, ms. */
  readonly bWaitMs: number;
  readonly gridsPerSecond: number;
  /** A backlog of BURST grids from three teams, queued while the queue was paused, then drained. */
  readonly drainGridsPerSecond: number;
  readonly submitMs: readonly number[];
  /** One worker: from a grid's end to the next one's start (the worker's side of the queue), ms. */
  readonly gapMs: readonly number[];
  readonly done: number;
}

/** Idle time of a lone worker between grids: next start − previous end, in start order. */
function gaps(records: readonly (GridRecord | null)[]): number[] {
  const spans = records
    .map(
      (r) => [r?.state.timings.startedAt ?? Number.NaN, r?.state.timings.finishedAt ?? Number.NaN] as const,
    )
    .filter(([s, f]) => Number.isFinite(s) && Number.isFinite(f))
    .sort((x, y) => x[0] - y[0]);
  return spans.slice(1).map(([start], k) => start - (spans[k]?.[1] ?? Number.NaN));
}

async function run(url: string, fairSharing: boolean, gridMs: number): Promise<RunResult> {
  const prefix = `bench-fair-${fairSharing ? 'on' : 'off'}-${gridMs}-${process.pid}`;
  const jobs = createJobs({
    connection: url,
    prefix,
    logger: silentLogger,
    limits: { perUser: 1000, queueDepth: 10_000 },
    fairSharing: fairSharing || SAME_ARMS,
  });
  const delivered = new Set<string>();
  let wake: (() => void) | undefined;
  jobs.onDelivery('slack', async (event, ctx) => {
    await ctx.once('post', async () => 'posted');
    delivered.add(event.record.id);
    wake?.();
  });
  const children = await Promise.all(
    Array.from({ length: WORKERS }, (_, k) => workerProcess({ url, prefix, id: `bench-${k}`, gridMs })),
  );
  const waitDelivered = async (ids: readonly string[]): Promise<void> => {
    const deadline = Date.now() + 600_000;
    while (!ids.every((id) => delivered.has(id)) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 200);
      });
    }
  };
  // Warm-up: scripts loaded, sharp and connections ready in every worker.
  const warm = await Promise.all(Array.from({ length: WORKERS * 2 }, () => jobs.submit(spec('warm', 'w'))));
  await waitDelivered(warm.map((w) => w.jobId));

  // The worker's side alone: no submits while it drains.
  const queue = new Queue(generateQueueName(undefined), { connection: { url }, prefix });
  const drain = async (): Promise<number> => {
    await queue.pause();
    const backlog = await Promise.all(
      Array.from({ length: BURST }, (_, i) => jobs.submit(spec(`team-${i % 3}`, `d${i % 30}`))),
    );
    const t0 = performance.now();
    await queue.resume();
    await waitDelivered(backlog.map((r) => r.jobId));
    return backlog.filter((r) => delivered.has(r.jobId)).length / ((performance.now() - t0) / 1000);
  };

  const submitMs: number[] = [];
  const timed = async (input: JobSpecInput): Promise<string> => {
    const t0 = performance.now();
    const { jobId } = await jobs.submit(input);
    submitMs.push(performance.now() - t0);
    return jobId;
  };
  const started = performance.now();
  // Team A's burst: ten people each asking for BURST/10 grids at once.
  const a = await Promise.all(Array.from({ length: BURST }, (_, i) => timed(spec('team-a', `a${i % 10}`))));
  const bAskedAt = Date.now();
  const b = await timed(spec('team-b', 'b0'));
  const all = [...a, b];
  await waitDelivered(all);
  const seconds = (performance.now() - started) / 1000;
  const records = await Promise.all(all.map((id) => jobs.record(id)));
  const startOf = (k: number): number => records[k]?.state.timings.startedAt ?? Number.NaN;
  const bStart = startOf(a.length);
  const aStarts = a.map((_, k) => startOf(k));
  const result: RunResult = {
    aBeforeB: aStarts.filter((t) => t < bStart).length,
    aBeforeBAfterAsking: aStarts.filter((t) => t < bStart && t >= bAskedAt).length,
    bWaitMs: bStart - bAskedAt,
    gridsPerSecond: all.filter((id) => delivered.has(id)).length / seconds,
    submitMs,
    gapMs: gaps(records),
    drainGridsPerSecond: await drain(),
    done: records.filter((r) => r?.state.status.state === 'done').length,
  };
  await stopChildren(children);
  await queue.close();
  await jobs.close();
  return result;
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagine-bench-redis-'));
  const redis = await startRedis({ url: process.env.REDIS_URL, dataDir });
  try {
    console.log(
      `# fair-sharing benchmark${SAME_ARMS ? ' — CALIBRATION: both arms fair' : ''} (team A: ${BURST} grids at once, then team B: 1; ${WORKERS} worker process${WORKERS === 1 ? '' : 'es'}; redis ${redis.owned ? 'private' : redis.url})`,
    );
    for (const gridMs of [GRID_MS, 0]) {
      // Alternating fair / FIFO runs, so a drift in the machine's load hits both alike.
      const runs = { fair: [] as RunResult[], FIFO: [] as RunResult[] };
      for (let k = 0; k < REPEAT; k++) {
        for (const fairSharing of k % 2 === 0 ? [true, false] : [false, true]) {
          runs[fairSharing ? 'fair' : 'FIFO'].push(await run(redis.url, fairSharing, gridMs));
        }
      }
      console.log(
        `\n## ${gridMs} ms per grid${gridMs === 0 ? ' (the queue’s own costs only)' : ''}; ${REPEAT} runs each, medians`,
      );
      console.log(
        'mode   A before B (of them after B asked)   B waited   grids/s   submit p50 / p99   gap p50   done',
      );
      for (const [label, rs] of Object.entries(runs)) {
        const med = (f: (r: RunResult) => number): number => percentile(rs.map(f), 50);
        const before = rs.map((r) => `${r.aBeforeB} (${r.aBeforeBAfterAsking})`).join(', ');
        const waited = `${(med((r) => r.bWaitMs) / 1000).toFixed(2)} s`;
        const rate = med((r) => r.gridsPerSecond).toFixed(2);
        const submit = `${med((r) => percentile(r.submitMs, 50)).toFixed(1)} / ${med((r) => percentile(r.submitMs, 99)).toFixed(1)} ms`;
        const gap = WORKERS === 1 ? `${med((r) => percentile(r.gapMs, 50)).toFixed(1)} ms` : '-';
        const done = `${rs.map((r) => r.done).join(', ')} of ${BURST + 1}`;
        console.log(
          `${label.padEnd(6)} ${before}`.padEnd(43) +
            `${waited.padStart(8)} ${rate.padStart(9)}   ${submit.padStart(17)}   ${gap.padStart(7)}   ${done}`,
        );
      }
      for (const [what, rate] of [
        ['burst run (first submit → last delivered)', (r: RunResult) => r.gridsPerSecond],
        [`backlog of ${BURST} from 3 teams drained`, (r: RunResult) => r.drainGridsPerSecond],
      ] as const) {
        const median = (rs: readonly RunResult[]): number => percentile(rs.map(rate), 50);
        // Each fair run against the FIFO run next to it: how much of the difference is the machine.
        const pairs = runs.fair.map(
          (r, k) => rate(r) / (runs.FIFO[k] === undefined ? Number.NaN : rate(runs.FIFO[k])),
        );
        console.log(
          `throughput fair / FIFO, ${what}: ${median(runs.fair).toFixed(2)} / ${median(runs.FIFO).toFixed(2)} grids/s = ${(median(runs.fair) / median(runs.FIFO)).toFixed(3)} (medians; run by run ${Math.min(...pairs).toFixed(3)} … ${Math.max(...pairs).toFixed(3)})`,
        );
      }
    }
  } finally {
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'worker') {
  const config = JSON.parse(process.argv[3] ?? '{}') as WorkerConfig;
  await runWorkerProcess({
    connection: config.url,
    prefix: config.prefix,
    workerId: config.id,
    engine: async () => createNoopEngine({ stepDelayMs: config.gridMs / STEPS }),
    previewEveryMs: 0,
    logger: silentLogger,
  });
  process.stdout.write('ready\n');
} else {
  await main();
}
