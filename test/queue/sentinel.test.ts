import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { createJobs } from '../../queue/jobs.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { startWorker } from '../../queue/worker.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { startTestApp } from '../web/app-helper.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Redis Sentinel, for real: a redis-server master and a redis-server in sentinel mode watching it.
 * The queue and the worker reach the master only through the Sentinel, with the options the
 * REDIS_SENTINELS / REDIS_SENTINEL_NAME settings produce.
 */

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

describe('Redis Sentinel', () => {
  let master: TestRedis;
  let sentinel: ChildProcess;
  let sentinelPort: number;
  let dir: string;

  beforeAll(async () => {
    master = await startTestRedis();
    const masterPort = Number(new URL(master.url).port);
    dir = await mkdtemp(join(tmpdir(), 'sentinel-'));
    sentinelPort = await freePort();
    const conf = join(dir, 'sentinel.conf');
    await writeFile(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor imagine-master 127.0.0.1 ${masterPort} 1`,
        'sentinel down-after-milliseconds imagine-master 5000',
        '',
      ].join('\n'),
    );
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    // Ready once it answers with the master's address.
    await waitFor('sentinel up', async () => {
      const probe = new Redis({
        port: sentinelPort,
        host: '127.0.0.1',
        lazyConnect: true,
        retryStrategy: () => null,
      });
      probe.on('error', () => {});
      try {
        await probe.connect();
        const addr = (await probe.call('SENTINEL', 'get-master-addr-by-name', 'imagine-master')) as
          | string[]
          | null;
        return addr?.[1] === String(masterPort);
      } catch {
        return false;
      } finally {
        probe.disconnect();
      }
    });
  });

  afterAll(async () => {
    if (sentinel !== undefined && sentinel.exitCode === null) {
      sentinel.kill('SIGTERM');
      await once(sentinel, 'exit');
    }
    await master?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('runs a job end to end through the master the Sentinel names', async () => {
    const config = loadConfig({
      REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
      REDIS_SENTINEL_NAME: 'imagine-master',
    });
    const connection = { sentinels: config.REDIS_SENTINELS, name: config.REDIS_SENTINEL_NAME };
    const prefix = uniquePrefix('sentinel');
    const logger = captureLogger();
    const jobs = createJobs({ connection, prefix, logger });
    const worker = await startWorker({
      connection,
      prefix,
      engine: createNoopEngine(),
      logger,
      previewEveryMs: 0,
    });
    try {
      const deliveries = recordDeliveries(jobs, 'discord');
      const { jobId } = await jobs.submit(makeSpec());
      await waitFor('delivered', () => deliveries.delivered.length === 1);
      expect(deliveries.delivered[0]?.event.type).toBe('done');
      expect((await jobs.record(jobId))?.state.status.state).toBe('done');
      // The data really is on the master behind the Sentinel.
      const direct = new Redis(master.url);
      expect((await direct.keys(`${prefix}*`)).length).toBeGreaterThan(0);
      direct.disconnect();
    } finally {
      await worker.close();
      await jobs.close();
    }
  });

  it('npm start wiring: the app serves /imagine through the Sentinel, starting no Redis of its own', async () => {
    const test = await startTestApp({
      REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
      REDIS_SENTINEL_NAME: 'imagine-master',
      QUEUE_PREFIX: uniquePrefix('sentinel-app'),
    });
    try {
      expect(test.app.redis).toMatchObject({ name: 'imagine-master', sentinels: [{ port: sentinelPort }] });
      const submitted = await fetch(`${test.url}/api/imagine`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'a lighthouse --seed 3 --steps 2 --size 64x64' }),
      });
      expect(submitted.status).toBe(202);
      const { id } = (await submitted.json()) as { id: string };
      await waitFor('done', async () => {
        const job = (await (await fetch(`${test.url}/api/jobs/${id}`)).json()) as { status: string };
        return job.status === 'done';
      });
      const ready = await fetch(`${test.url}/readyz`);
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { redis: 'ok' } });
    } finally {
      await test.stop();
    }
  });

  it('refuses REDIS_URL and REDIS_SENTINELS together, and bad sentinel entries', () => {
    expect(() =>
      loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_SENTINELS: '127.0.0.1:26379' }),
    ).toThrow(/REDIS_SENTINELS: give either REDIS_URL or REDIS_SENTINELS/);
    expect(() => loadConfig({ REDIS_SENTINELS: 'nohost, 127.0.0.1:99999' })).toThrow(/host:port/);
    expect(loadConfig({ REDIS_SENTINELS: 's1:26379, [::1]:26380' }).REDIS_SENTINELS).toEqual([
      { host: 's1', port: 26379 },
      { host: '::1', port: 26380 },
    ]);
  });
});
