/**
 * `npm run bench:chat`: the chat layer's latency against the local fakes, with the real client
 * libraries, the real queue on redis-server and a no-op engine (no inference):
 *
 *   - interaction receipt → acknowledgement, p50/p99, with N concurrent `/imagine` (goal p99 < 100 ms),
 *     measured by the fake: from writing INTERACTION_CREATE to its socket to receiving the callback.
 *     Three bursts: cold (first after start) and warm with no worker running, then warm again while
 *     the worker finishes jobs and the bot posts their grids.
 *   - job completion → grid posted, p50/p99: from the worker's `finishedAt` to the fake receiving the
 *     request that carries the grid (both `Date.now()` on this machine).
 *
 * Three processes, as in production: the fake chat API (remote in real life), the bot (this one:
 * adapter + service + Jobs client + delivery consumer), and a no-op worker.
 *
 * Env: REDIS_URL (else a private redis-server), BENCH_N (concurrent commands, default 200),
 * BENCH_SIZE (image side, default 512), BENCH_SURFACES (comma list of drivers, default all).
 *
 * Each surface is a `ChatBenchDriver` in `DRIVERS` (Discord, Slack): its fake in a child process, its real
 * client library in this one.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { jobIdFor, type Surface } from '../../core/jobspec.ts';
import { createJobs, type Jobs, silentLogger } from '../../queue/index.ts';
import { startRedis } from '../../queue/redis-launcher.ts';
import { FAKE_BOT_TOKEN, FAKE_SIGNING_SECRET } from '../../test/fakes/slack/index.ts';
import { type RemoteFakeSlack, startRemoteFakeSlack } from '../../test/fakes/slack/remote.ts';
import { DiscordBot } from '../discord/bot.ts';
import { ConversationService, type ServiceSettings } from '../service.ts';
import { SlackAdapter } from '../slack/adapter.ts';
import type { FakeCommand, FakeReply } from './discord-fake-child.ts';

const N = Number(process.env.BENCH_N ?? 200);
const SIZE = Number(process.env.BENCH_SIZE ?? 512);
const STEPS = 4;
const TSX = { execArgv: ['--import', 'tsx'] };

export interface BenchContext {
  readonly jobs: Jobs;
  readonly service: ConversationService;
  readonly settings: ServiceSettings;
}

export interface BurstEntry {
  readonly jobId: string;
  /** Interaction sent → acknowledgement received, ms. */
  readonly ackMs: number;
}

/** One surface under benchmark: its fake API (another process) and its real adapter (this one). */
export interface ChatBenchDriver {
  readonly surface: Surface;
  start(ctx: BenchContext): Promise<void>;
  /** Sends `n` `/imagine` at once (distinct users); resolves when all are acknowledged. */
  burst(n: number, tag: string): Promise<BurstEntry[]>;
  /** `Date.now()` at which the fake received each job's grid, for those received so far. */
  gridsPosted(jobIds: readonly string[]): Promise<ReadonlyMap<string, number>>;
  stop(): Promise<void>;
}

/** Sends one command to a child and waits for its reply of the same type. */
async function ask<R extends FakeReply>(child: ChildProcess, command: FakeCommand): Promise<R> {
  const reply = new Promise<R>((resolve) => {
    const onMessage = (message: FakeReply) => {
      if (message.type !== command.type) return;
      child.off('message', onMessage);
      resolve(message as R);
    };
    child.on('message', onMessage);
  });
  child.send(command);
  return reply;
}

function discordDriver(): ChatBenchDriver {
  let child: ChildProcess | undefined;
  let bot: DiscordBot | undefined;
  return {
    surface: 'discord',
    async start(ctx) {
      child = fork(new URL('./discord-fake-child.ts', import.meta.url), [], { ...TSX, stdio: 'inherit' });
      const [ready] = (await once(child, 'message')) as [Extract<FakeReply, { type: 'ready' }>];
      bot = new DiscordBot({
        service: ctx.service,
        token: ready.token,
        appId: ready.appId,
        apiUrl: ready.apiUrl,
        limits: ctx.settings.limits,
      });
      await bot.start();
    },
    async burst(n, tag) {
      const reply = await ask<Extract<FakeReply, { type: 'burst' }>>(child!, {
        type: 'burst',
        n,
        steps: STEPS,
        tag,
      });
      return [...reply.entries];
    },
    async gridsPosted(jobIds) {
      const reply = await ask<Extract<FakeReply, { type: 'posted' }>>(child!, { type: 'posted', jobIds });
      return new Map(Object.entries(reply.at));
    },
    async stop() {
      await bot?.stop();
      if (child !== undefined && child.exitCode === null) {
        child.send({ type: 'stop' } satisfies FakeCommand);
        await once(child, 'exit');
      }
    },
  };
}

/** Slack: the fake Web API and its 200 signing clients in a child process, bolt (HTTP mode) here. */
function slackDriver(): ChatBenchDriver {
  let slack: RemoteFakeSlack | undefined;
  let adapter: SlackAdapter | undefined;
  return {
    surface: 'slack',
    async start(ctx) {
      slack = await startRemoteFakeSlack();
      adapter = new SlackAdapter({
        service: ctx.service,
        log: pino({ level: 'silent' }),
        botToken: FAKE_BOT_TOKEN,
        mode: 'http',
        signingSecret: FAKE_SIGNING_SECRET,
        port: 0,
        host: '127.0.0.1',
        apiUrl: slack.apiUrl,
      });
      await adapter.start();
    },
    async burst(n, tag) {
      const run = await slack!.fire({
        url: `http://127.0.0.1:${adapter!.port}/slack/events`,
        count: n,
        userPrefix: `U${tag.toUpperCase()}`,
        text: `bench prompt --steps ${STEPS} --size ${SIZE}x${SIZE}`,
      });
      if (run.failures > 0) throw new Error(`${run.failures} of ${n} slash commands failed`);
      return run.entries.map((e) => ({ jobId: jobIdFor('slack', e.triggerId), ackMs: e.ackMs }));
    },
    async gridsPosted(jobIds) {
      const at = await slack!.fileSharedAt(jobIds.map((id) => `${id}-grid`));
      return new Map(
        jobIds.flatMap((id) => (at[`${id}-grid`] === undefined ? [] : [[id, at[`${id}-grid`]!]])),
      );
    },
    async stop() {
      await adapter?.stop();
      await slack?.stop();
    },
  };
}

/** Surface drivers by name. */
const DRIVERS: Record<string, () => ChatBenchDriver> = {
  discord: discordDriver,
  slack: slackDriver,
};

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

function row(label: string, values: readonly number[]): string {
  const f = (ms: number) => `${ms.toFixed(1)} ms`.padStart(10);
  return `  ${label.padEnd(52)} p50 ${f(percentile(values, 50))}   p99 ${f(percentile(values, 99))}   max ${f(Math.max(...values))}`;
}

const SETTINGS: ServiceSettings = {
  limits: {
    defaultSteps: STEPS,
    maxSteps: 50,
    defaultGuidance: 7.5,
    defaultSampler: 'pndm',
    defaultWidth: SIZE,
    defaultHeight: SIZE,
    maxPixels: SIZE * SIZE,
    // Set, as DEFAULT_* in the environment would be: they win over the worker's model's own defaults.
    envDefaults: { steps: STEPS, width: SIZE, height: SIZE },
  },
  suffixes: [...DEFAULT_SUFFIXES],
  ownerOnlyButtons: false,
  adminUsers: [],
  recordTtlDays: 1,
};

async function startWorkerChild(redisUrl: string, prefix: string): Promise<ChildProcess> {
  const child = fork(
    new URL('./worker-child.ts', import.meta.url),
    [JSON.stringify({ url: redisUrl, prefix })],
    {
      ...TSX,
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
  return child;
}

async function benchSurface(name: string, redisUrl: string): Promise<void> {
  const make = DRIVERS[name];
  if (make === undefined)
    throw new Error(`unknown surface ${name}; known: ${Object.keys(DRIVERS).join(', ')}`);
  const prefix = `bench-chat-${name}-${process.pid}`;
  const jobs = createJobs({
    connection: redisUrl,
    prefix,
    logger: silentLogger,
    limits: { perUser: 10, queueDepth: 100_000 },
    recordTtlMs: 3_600_000,
  });
  const service = new ConversationService({ jobs, settings: SETTINGS });
  const driver = make();
  let worker: ChildProcess | undefined;
  try {
    await driver.start({ jobs, service, settings: SETTINGS });
    const started = performance.now();
    // Bursts 1 and 2 with no worker running: the bot's own acknowledgement path, cold then warm.
    const cold = await driver.burst(N, 'cold');
    await new Promise((r) => setTimeout(r, 3000));
    const warm = await driver.burst(N, 'warm');
    await new Promise((r) => setTimeout(r, 3000));
    // Burst 3 while the worker finishes jobs and the bot posts their grids (deliveries, progress).
    worker = await startWorkerChild(redisUrl, prefix);
    await new Promise((r) => setTimeout(r, 2000));
    const loaded = await driver.burst(N, 'loaded');
    const all = [...cold, ...warm, ...loaded];
    const deadline = Date.now() + 600_000;
    let posted: ReadonlyMap<string, number> = new Map();
    while (posted.size < all.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      posted = await driver.gridsPosted(all.map((a) => a.jobId));
    }
    const elapsed = (performance.now() - started) / 1000;
    const toPost: number[] = [];
    for (const [jobId, at] of posted) {
      const finishedAt = (await jobs.record(jobId))?.state.timings.finishedAt;
      if (finishedAt !== undefined) toPost.push(at - finishedAt);
    }
    const late = all.filter((a) => a.ackMs >= 3000).length;
    console.log(
      `\n${name}: 3 bursts of ${N} concurrent /imagine; ${posted.size}/${all.length} grids posted in ${elapsed.toFixed(1)} s; ` +
        `${late} acknowledgements later than 3 s`,
    );
    console.log(
      row(
        'interaction sent → ack (1: cold, idle worker)',
        cold.map((a) => a.ackMs),
      ),
    );
    console.log(
      row(
        'interaction sent → ack (2: warm, idle worker)',
        warm.map((a) => a.ackMs),
      ),
    );
    console.log(
      row(
        'interaction sent → ack (3: warm, during deliveries)',
        loaded.map((a) => a.ackMs),
      ),
    );
    console.log(row('job finished → grid received by the API', toPost));
  } finally {
    await driver.stop();
    await service.close();
    if (worker !== undefined) {
      worker.kill('SIGTERM');
      await once(worker, 'exit');
    }
    await jobs.close();
  }
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-chat-redis-'));
  const redis = await startRedis({ url: process.env.REDIS_URL, dataDir });
  const surfaces = (process.env.BENCH_SURFACES ?? Object.keys(DRIVERS).join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  console.log(
    `bench:chat — load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ' ',
      )} on ${cpus().length} CPUs; ${N} concurrent /imagine per burst; no-op worker ${SIZE}×${SIZE}, ${STEPS} steps; ` +
      `real client libraries against local fakes (separate processes); redis ${redis.url}`,
  );
  try {
    for (const surface of surfaces) await benchSurface(surface, redis.url);
  } finally {
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
