import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../bots/logger.ts';
import { Health } from '../../bots/ops/health.ts';
import { createMetrics } from '../../bots/ops/metrics.ts';
import type { RunningServer } from '../../bots/ops/server.ts';
import { ConversationService } from '../../bots/service.ts';
import { type PlaygroundService, startPlayground } from '../../bots/web/server.ts';
import { WebSurface } from '../../bots/web/surface.ts';
import {
  createJobs,
  createNoopEngine,
  type Jobs,
  type QueueWorker,
  silentLogger,
} from '../../queue/index.ts';
import { startTestWorker, TEST_SETTINGS } from '../bots/slack-harness.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { call, newUser, waitForJob } from './app-helper.ts';

/**
 * The job id is the queue's to make: the playground answers with the id the service reports for the
 * job it made, never one it derives from the request itself. Here the real service is asked under
 * an interaction id of its own (as a service that scopes interactions, e.g. per team, would), so the
 * queue's ids differ from anything the server could derive from the request. A repeated
 * Idempotency-Key (no new job, so no queued view to read the id from) must still answer with the job
 * that was made; a server predicting `jobIdFor('web', key)` finds no such job and answers 503.
 */

let redis: TestRedis;
let jobs: Jobs;
let worker: QueueWorker;
let service: ConversationService;
let web: RunningServer;
let url: string;

beforeAll(async () => {
  redis = await startTestRedis();
  const prefix = uniquePrefix('job-id');
  jobs = createJobs({ connection: redis.url, prefix, logger: silentLogger });
  worker = await startTestWorker(redis.url, prefix, async () => createNoopEngine());
  service = new ConversationService({ jobs, settings: TEST_SETTINGS });
  const surface = new WebSurface();
  service.attach(surface);
  const scoped: PlaygroundService = {
    imagine: (command, reply) =>
      service.imagine({ ...command, interactionId: `team1-${command.interactionId}` }, reply),
    press: (press, reply) =>
      service.press({ ...press, interactionId: `team1-${press.interactionId}` }, reply),
  };
  web = await startPlayground({
    host: '127.0.0.1',
    port: 0,
    service: scoped,
    jobs,
    surface,
    health: new Health(),
    metrics: createMetrics(),
    log: createLogger({ destination: new Writable({ write: (_c, _e, done) => done() }) }),
  });
  url = web.url;
});

afterAll(async () => {
  await web?.close();
  await service?.close();
  await worker?.close({ releaseNow: true });
  await jobs?.close();
  await redis?.stop();
});

describe('job ids in the playground’s answers', () => {
  it('imagine, refine and reroll answer with the id of the job actually made, also for a repeated Idempotency-Key', async () => {
    const user = await newUser(url);
    const post = (path: string, key: string, json?: unknown) =>
      call<{ id: string }>(`${url}${path}`, {
        method: 'POST',
        headers: { ...user, 'idempotency-key': key },
        ...(json === undefined ? {} : { json }),
      });

    const imagineKey = `key-${randomBytes(6).toString('hex')}`;
    const made = await post('/api/imagine', imagineKey, { text: 'a lighthouse --steps 2 --size 64x64' });
    expect(made.status).toBe(202);
    expect(made.body.id).toMatch(/^web-team1-/u);
    expect((await jobs.record(made.body.id))?.spec.kind).toBe('imagine');
    const again = await post('/api/imagine', imagineKey, { text: 'a lighthouse --steps 2 --size 64x64' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(made.body.id);
    await waitForJob(url, made.body.id, ['done'], { headers: user });

    for (const [path, kind] of [
      [`/api/jobs/${made.body.id}/refine/2`, 'refine'],
      [`/api/jobs/${made.body.id}/reroll`, 'reroll'],
    ] as const) {
      const key = `key-${randomBytes(6).toString('hex')}`;
      const first = await post(path, key);
      expect(first.status, path).toBe(202);
      const record = await jobs.record(first.body.id);
      expect(record?.spec.kind).toBe(kind);
      expect(record?.spec.parent?.gridId).toBe(made.body.id);
      const repeated = await post(path, key);
      expect(repeated.status, `${path} repeated`).toBe(200);
      expect(repeated.body.id).toBe(first.body.id);
      await waitForJob(url, first.body.id, ['done'], { headers: user });
    }
  });
});
