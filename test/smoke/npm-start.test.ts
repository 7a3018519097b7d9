import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import { call, SHARED_MODELS_DIR, waitForJob } from '../web/app-helper.ts';
import { cleanEnv, ensureStopped, isAlive, type Running, redisPid, run } from './processes.ts';

const TOKEN = 'smoke-playground-token-7d1e';

describe('npm start (all-in-one) as a child process', () => {
  let dir: string;
  let app: Running | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-smoke-'));
  });
  afterAll(async () => {
    ensureStopped(app);
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the URL, serves imagine and refine to done, and stops on SIGTERM within 20 s with its Redis', async () => {
    app = run(
      'npm',
      ['start'],
      cleanEnv({
        REDIS_DATA_DIR: join(dir, 'redis'),
        MODELS_DIR: SHARED_MODELS_DIR,
        PORT: '0',
        DEFAULT_STEPS: '4',
        // Set but unused on loopback: it must never reach the logs.
        PLAYGROUND_TOKEN: TOKEN,
      }),
    );
    const ready = await app.waitForLog('playground ready');
    const url = String(ready.url);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await app.waitForLog('worker ready');
    expect(app.stderr()).toContain(`imagine playground: ${url}`);
    const started = await app.waitForLog('redis-server started on');
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(String(started.msg))?.[1]);
    const redis = redisPid(port);
    expect(redis).toBeDefined();

    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await call(`${url}/readyz`)).body).toEqual({
      status: 'ready',
      checks: { redis: 'ok', model: 'ok' },
    });
    const made = await call<{ id: string; seeds: number[] }>(`${url}/api/imagine`, {
      method: 'POST',
      headers: auth,
      json: { text: '/imagine a smoke test --seed 7' },
    });
    expect(made.status).toBe(202);
    expect(made.body.seeds).toEqual([7, 8, 9, 10]);
    await waitForJob(url, made.body.id, ['done'], { headers: auth });
    const refined = await call<{ id: string; seeds: number[] }>(`${url}/api/jobs/${made.body.id}/refine/1`, {
      method: 'POST',
      headers: auth,
    });
    expect(refined.status).toBe(202);
    expect(refined.body.seeds).toEqual([7, 7, 7, 7]);
    const refine = await waitForJob(url, refined.body.id, ['done'], { headers: auth });
    expect(refine.parent).toEqual({ id: made.body.id, n: 1 });
    const grid = await fetch(`${url}${refine.grid}`, { headers: auth });
    expect(grid.headers.get('content-type')).toBe('image/png');

    const metrics = await (await fetch(`${url}/metrics`, { headers: auth })).text();
    expect(metrics).toMatch(/^imagine_jobs_finished_total\{state="done"\} 2$/mu);

    const signalled = Date.now();
    app.child.kill('SIGTERM');
    const exit = await app.exited();
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.at - signalled).toBeLessThan(20_000);
    // The private redis-server went with it.
    const deadline = Date.now() + 2000;
    while (isAlive(redis!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(isAlive(redis!)).toBe(false);
    expect(app.stdout()).toContain('"msg":"stopped"');
    expect(app.stdout()).not.toContain(TOKEN);
  });
});

describe('entry point errors', () => {
  it('bad configuration: one message listing every bad variable, exit 1, no stack trace', async () => {
    const child = run(
      'npx',
      ['tsx', 'bots/main.ts', 'all'],
      cleanEnv({ PORT: 'eighty', DEFAULT_STEPS: 'many', QUEUE_PREFIX: 'has space', ORT_EP: 'tpu' }),
    );
    const exit = await child.exited();
    expect(exit.code).toBe(1);
    const err = child.stderr();
    expect(err).toContain('Invalid configuration:');
    for (const key of ['PORT:', 'DEFAULT_STEPS:', 'QUEUE_PREFIX:', 'ORT_EP:'])
      expect(err).toContain(`  - ${key}`);
    expect(err).not.toMatch(/\n\s+at /u);
    expect(child.stdout()).toBe('');
  });

  it('a non-loopback HOST needs PLAYGROUND_TOKEN', async () => {
    const child = run('npx', ['tsx', 'bots/main.ts', 'bot'], cleanEnv({ HOST: '0.0.0.0' }));
    const exit = await child.exited();
    expect(exit.code).toBe(1);
    expect(child.stderr()).toContain(
      'PLAYGROUND_TOKEN: required when HOST (0.0.0.0) is not a loopback address',
    );
  });

  it('a model that cannot load stops the process with exit 1 and its Redis', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imagine-badmodel-'));
    try {
      const child = run(
        'npx',
        ['tsx', 'bots/main.ts', 'worker'],
        cleanEnv({
          REDIS_DATA_DIR: join(dir, 'redis'),
          MODEL_DIR: join(dir, 'no-such-model'),
          WORKER_PORT: '0',
        }),
      );
      const started = await child.waitForLog('redis-server started on');
      const redis = redisPid(Number(/127\.0\.0\.1:(\d+)/.exec(String(started.msg))?.[1]));
      expect(redis).toBeDefined();
      const exit = await child.exited();
      expect(exit.code).toBe(1);
      expect(child.stderr()).toContain('the worker could not start:');
      expect(child.stderr()).toContain('no-such-model');
      // Its redis-server goes with it: awaited by stop(), or, when a slow part ran past its close
      // deadline (a loaded machine), by the exit hook's SIGTERM, which takes effect a moment later.
      const deadline = Date.now() + 10_000;
      while (isAlive(redis!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(isAlive(redis!)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an unknown role prints the usage', async () => {
    const child = run('npx', ['tsx', 'bots/main.ts', 'everything'], cleanEnv({}));
    expect((await child.exited()).code).toBe(2);
    expect(child.stderr()).toContain('Usage: tsx bots/main.ts [all|bot|worker]');
  });
});

describe('production roles: npm run bot + npm run worker on one Redis', () => {
  let redis: TestRedis;
  let dir: string;
  let bot: Running | undefined;
  let worker: Running | undefined;

  beforeAll(async () => {
    redis = await startTestRedis();
    dir = await mkdtemp(join(tmpdir(), 'imagine-roles-'));
  });
  afterAll(async () => {
    ensureStopped(bot);
    ensureStopped(worker);
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the bot queues, the worker generates, both report health and stop cleanly', async () => {
    const shared = {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: 'roles',
      MODELS_DIR: SHARED_MODELS_DIR,
      DEFAULT_STEPS: '3',
    };
    worker = run('npm', ['run', 'worker'], cleanEnv({ ...shared, WORKER_PORT: '0' }));
    bot = run('npm', ['run', 'bot'], cleanEnv({ ...shared, PORT: '0' }));
    const workerUrl = String((await worker.waitForLog('worker endpoints ready')).url);
    const botUrl = String((await bot.waitForLog('playground ready')).url);
    const workerReady = await worker.waitForLog('worker ready');

    // The bot has no worker: its readiness is Redis only.
    expect((await call(`${botUrl}/readyz`)).body).toEqual({ status: 'ready', checks: { redis: 'ok' } });
    expect((await call(`${workerUrl}/readyz`)).body).toEqual({
      status: 'ready',
      checks: { redis: 'ok', model: 'ok' },
    });

    const made = await call<{ id: string }>(`${botUrl}/api/imagine`, {
      method: 'POST',
      json: { text: 'split roles' },
    });
    expect(made.status).toBe(202);
    const job = await waitForJob(botUrl, made.body.id, ['done']);
    expect(job.worker).toBe(workerReady.workerId);

    const workerMetrics = await (await fetch(`${workerUrl}/metrics`)).text();
    expect(workerMetrics).toMatch(/^imagine_jobs_finished_total\{state="done"\} 1$/mu);
    expect(workerMetrics).toMatch(/^imagine_job_phase_seconds_count\{phase="denoise"\} 1$/mu);
    // The delivery (posting the result) follows the record reading done: wait for it to be counted.
    const delivered = /^imagine_job_phase_seconds_count\{phase="deliver"\} 1$/mu;
    let botMetrics = '';
    for (const deadline = Date.now() + 15_000; !delivered.test(botMetrics) && Date.now() < deadline; ) {
      botMetrics = await (await fetch(`${botUrl}/metrics`)).text();
      if (!delivered.test(botMetrics)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(botMetrics).toMatch(delivered);
    expect(botMetrics).toMatch(/^imagine_submissions_total\{outcome="accepted"\} 1$/mu);

    for (const child of [bot, worker]) child.child.kill('SIGTERM');
    for (const child of [bot, worker]) {
      const exit = await child.exited();
      expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    }
  });
});
