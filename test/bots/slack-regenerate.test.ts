import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../core/jobspec.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { queueKeys } from '../../queue/keys.ts';
import type { QueueWorker } from '../../queue/worker.ts';
import { FakeSlack, newTriggerId } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { TINY_SD } from '../models/tiny-sd.ts';
import { fileMessages, startTestWorker, TestBot, waitForGrid } from './slack-harness.ts';

/**
 * PNGs are a cache of the record (issue 9 item 14): once they are gone (IMAGE_TTL, the budget),
 * pressing U2 makes image 2 again from its record, through the queue, on real onnxruntime (tiny-sd),
 * and posts the same PNG, byte for byte, through the real bolt client into the fake Slack.
 */

let redis: TestRedis;
let admin: Redis;
const fake = new FakeSlack();
const prefix = uniquePrefix('regen');
let worker: QueueWorker | undefined;
let bot: TestBot;

beforeAll(async () => {
  [redis] = await Promise.all([startTestRedis(), fake.start()]);
  admin = new Redis(redis.url);
  worker = await startTestWorker(redis.url, prefix, () => loadEngine(TINY_SD, { intraOpThreads: 1 }));
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake });
});

afterAll(async () => {
  await bot?.stop();
  await worker?.close({ releaseNow: true });
  admin?.disconnect();
  await fake.stop();
  await redis?.stop();
});

describe('a grid whose PNGs are gone', () => {
  it('U2 makes image 2 again from the record: the same PNG as before', async () => {
    const triggerId = newTriggerId();
    await bot.sender.slashCommand({ text: 'a red fox --seed 41 --steps 3 --size 64x64', triggerId });
    const jobId = jobIdFor('slack', triggerId);
    const controls = await waitForGrid(fake, jobId, 60_000);

    expect((await bot.sender.pressButton({ message: controls, actionId: 'imagine_upscale_2' })).status).toBe(
      200,
    );
    const first = await fake.waitFor(() => fileMessages(fake, `${jobId}-2`)[0], 30_000, 'U2');
    const before = first.files[0]!.bytes!;

    // As if IMAGE_TTL had passed (or the budget had dropped them): every PNG of the grid is gone.
    const keys = queueKeys(prefix);
    expect(await admin.del(keys.grid(jobId), ...[0, 1, 2, 3].map((k) => keys.image(jobId, k)))).toBe(5);

    expect((await bot.sender.pressButton({ message: controls, actionId: 'imagine_upscale_2' })).status).toBe(
      200,
    );
    const again = await fake.waitFor(
      () => fileMessages(fake, `${jobId}-2`)[1],
      30_000,
      'U2 after the PNGs expired',
    );
    expect(again.files[0]!.bytes!.equals(before)).toBe(true);
    expect(fake.ephemerals.filter((e) => /expired/u.test(e.text))).toHaveLength(0);
  });
});
