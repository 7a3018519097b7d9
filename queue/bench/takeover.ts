/**
 * `npm run bench:takeover`: how long a job whose worker is killed -9 mid-job waits before another,
 * idle worker runs it, measured against STALLED_INTERVAL_MS (the promised bound).
 *
 * Two worker processes (this file re-run as `… takeover.ts worker <config>`) with the settings
 * `npm run worker` uses; worker A takes a long job, B waits idle, A is killed, and the time until B
 * starts the job is printed. Uses REDIS_URL when set, else a private redis-server.
 * Env: STALLED_INTERVAL_MS (default: the config default, 30000), BENCH_RUNS (default 3).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../core/config.ts';
import { createJobs } from '../jobs.ts';
import { silentLogger } from '../logger.ts';
import { createNoopEngine } from '../noop-engine.ts';
import { startRedis } from '../redis-launcher.ts';
import { runWorkerProcess } from '../worker-process.ts';

interface WorkerConfig {
  readonly url: string;
  readonly prefix: string;
  readonly id: string;
  readonly takeoverMs: number;
}

/** A worker process; prints `ready`, then `step <jobId>` at each step it runs. */
async function runChild(config: WorkerConfig): Promise<void> {
  // Slow steps: the job must still be running on A when B is up and A is killed.
  const engine = createNoopEngine({ stepDelayMs: 200 });
  await runWorkerProcess({
    connection: config.url,
    prefix: config.prefix,
    workerId: config.id,
    takeoverMs: config.takeoverMs,
    previewEveryMs: 0,
    logger: silentLogger,
    engine: async () => ({
      info: engine.info,
      close: () => engine.close(),
      generate: (request, options = {}) =>
        engine.generate(request, {
          ...options,
          onStep: async (progress) => {
            process.stdout.write(`step ${progress.step}\n`);
            await options.onStep?.(progress);
          },
        }),
    }),
  });
  process.stdout.write('ready\n');
}

interface Spawned {
  readonly child: ChildProcess;
  /** Resolves at the first stdout line starting with `prefix`. */
  line(prefix: string): Promise<void>;
}

function spawnWorker(config: WorkerConfig): Spawned {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), 'worker', JSON.stringify(config)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let text = '';
  const waiters: { prefix: string; resolve: () => void }[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    for (const w of [...waiters]) {
      if (text.split('\n').some((l) => l.startsWith(w.prefix))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    child,
    line: (prefix) =>
      new Promise<void>((resolve, reject) => {
        if (text.split('\n').some((l) => l.startsWith(prefix))) return resolve();
        waiters.push({ prefix, resolve });
        child.once('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
      }),
  };
}

async function once(url: string, takeoverMs: number, run: number): Promise<number> {
  const prefix = `bench-takeover-${process.pid}-${run}`;
  const jobs = createJobs({ connection: url, prefix, logger: silentLogger });
  const a = spawnWorker({ url, prefix, id: 'a', takeoverMs });
  let b: Spawned | undefined;
  try {
    await a.line('ready');
    await jobs.submit({
      v: 1,
      kind: 'imagine',
      prompts: ['x', 'x', 'x', 'x'],
      seeds: [1, 2, 3, 4],
      negative: '',
      sampler: 'euler',
      steps: 400,
      guidance: 7,
      width: 64,
      height: 64,
      origin: { surface: 'discord', user: 'bench', channel: 'bench', interactionId: `${prefix}-job` },
      requestedAt: Date.now(),
    });
    await a.line('step 2');
    // B starts once A has the job, and waits idle, as a second GPU worker would.
    b = spawnWorker({ url, prefix, id: 'b', takeoverMs });
    await b.line('ready');
    const killedAt = performance.now();
    a.child.kill('SIGKILL');
    await b.line('step');
    return performance.now() - killedAt;
  } finally {
    a.child.kill('SIGKILL');
    b?.child.kill('SIGKILL');
    await jobs.close();
  }
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const takeoverMs = config.STALLED_INTERVAL_MS;
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const dataDir = await mkdtemp(join(tmpdir(), 'imagine-bench-'));
  const redis = await startRedis({ url: config.REDIS_URL, dataDir });
  try {
    console.log(
      `STALLED_INTERVAL_MS=${takeoverMs}: kill -9 a worker mid-job, time until an idle worker runs it`,
    );
    const times: number[] = [];
    for (let run = 0; run < runs; run++) {
      const ms = await once(redis.url, takeoverMs, run);
      times.push(ms);
      console.log(
        `  run ${run + 1}: ${(ms / 1000).toFixed(2)} s (${((100 * ms) / takeoverMs).toFixed(0)} % of the bound)`,
      );
    }
    console.log(
      `  max ${(Math.max(...times) / 1000).toFixed(2)} s, bound ${(takeoverMs / 1000).toFixed(2)} s`,
    );
  } finally {
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'worker') {
  await runChild(JSON.parse(process.argv[3] ?? '{}') as WorkerConfig);
} else {
  await main();
}
