import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJobs } from '../../queue/jobs.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { captureLogger, makeSpec } from '../queue/helpers.ts';
import { call, SHARED_MODELS_DIR } from '../web/app-helper.ts';
import { cleanEnv, ensureStopped, type Running, run } from './processes.ts';

/** One worker per GPU on one host is the documented way to scale: with default settings, it must work. */
describe('several workers on one host (npm run worker, one Redis)', () => {
  let redis: TestRedis;
  let dir: string;
  const started: Running[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    dir = await mkdtemp(join(tmpdir(), 'imagine-workers-'));
  });
  afterAll(async () => {
    for (const child of started) ensureStopped(child);
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  function worker(env: Record<string, string>): Running {
    const child = run(
      'npm',
      ['run', 'worker'],
      cleanEnv({ REDIS_URL: redis.url, MODELS_DIR: SHARED_MODELS_DIR, DEFAULT_STEPS: '3', ...env }),
    );
    started.push(child);
    return child;
  }

  it('with WORKER_PORT unset, the second worker takes the next free port, says so, and serves health', async () => {
    const prefix = uniquePrefix('two');
    const first = worker({ QUEUE_PREFIX: prefix });
    const firstUrl = String((await first.waitForLog('worker endpoints ready')).url);
    const second = worker({ QUEUE_PREFIX: prefix });
    const secondUrl = String((await second.waitForLog('worker endpoints ready')).url);

    const port = (url: string) => Number(new URL(url).port);
    expect(port(firstUrl)).toBeGreaterThanOrEqual(8788);
    expect(port(secondUrl)).toBeGreaterThan(8788);
    expect(port(secondUrl)).not.toBe(port(firstUrl));
    // 8788 is held (by the first worker, or by something else on this machine), so the second says where it went.
    const moved = await second.waitForLog('WORKER_PORT is unset and 8788 is taken');
    expect(moved).toMatchObject({ port: port(secondUrl), defaultPort: 8788 });

    await first.waitForLog('worker ready');
    await second.waitForLog('worker ready');
    for (const url of [firstUrl, secondUrl]) {
      expect((await call(`${url}/healthz`)).status).toBe(200);
      expect((await call(`${url}/readyz`)).body).toEqual({
        status: 'ready',
        checks: { redis: 'ok', model: 'ok' },
      });
    }

    for (const child of [first, second]) child.child.kill('SIGTERM');
    for (const child of [first, second]) {
      const exit = await child.exited();
      expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    }
  });

  it('a WORKER_PORT that is set and taken stops the worker at start, before the model loads or a job is taken', async () => {
    const prefix = uniquePrefix('busy');
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const busy = (holder.address() as { port: number }).port;
    const jobs = createJobs({ connection: redis.url, prefix, logger: captureLogger() });
    try {
      const { jobId } = await jobs.submit(makeSpec());
      const child = worker({ QUEUE_PREFIX: prefix, WORKER_PORT: String(busy) });
      const exit = await child.exited();
      expect(exit.code).toBe(1);
      expect(child.stderr()).toContain(
        `could not start: WORKER_PORT=${busy}: port ${busy} on 127.0.0.1 is already in use.`,
      );
      // Nothing was loaded or taken: no model log line, and the job still waits for a worker.
      expect(child.stdout()).not.toContain('demo model');
      expect(child.stdout()).not.toContain('model loaded');
      expect(await jobs.status(jobId)).toMatchObject({ state: 'queued' });
    } finally {
      await jobs.close();
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
