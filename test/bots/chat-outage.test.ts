import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeSlack, newTriggerId, shownText } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { TestBot } from './slack-harness.ts';

/**
 * Redis goes away under a running bot: a chat user is told, privately and at once, that the service is
 * temporarily unavailable (not an internal error id), and nothing is queued for later.
 */
describe('chat while Redis is unreachable (real bolt app, fake Slack)', () => {
  let redis: TestRedis | undefined;
  const fake = new FakeSlack();
  let bot: TestBot | undefined;

  beforeAll(async () => {
    [redis] = await Promise.all([startTestRedis(), fake.start()]);
    bot = await TestBot.start({ redisUrl: redis.url, prefix: uniquePrefix('outage'), fake });
  });
  afterAll(async () => {
    await bot?.stop();
    await fake.stop();
    await redis?.stop();
  });

  it('/imagine answers "temporarily unavailable" within 5 s, naming no error id', async () => {
    await redis!.stop();
    redis = undefined;
    const started = Date.now();
    const result = await bot!.sender.slashCommand({
      text: 'a lighthouse --seed 1',
      triggerId: newTriggerId(),
    });
    expect(result.status).toBe(200);
    const ephemeral = await fake.waitFor(
      () => fake.ephemerals.find((e) => /unavailable/u.test(e.text)),
      10_000,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(shownText(ephemeral)).toMatch(/temporarily unavailable.*try again in about \d+ seconds/u);
    expect(shownText(ephemeral)).not.toMatch(/err_|error id/iu);
    expect(fake.callsTo('chat.postMessage')).toHaveLength(0);
  });
});
