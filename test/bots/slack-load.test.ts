import { afterAll, beforeAll, expect, it } from 'vitest';
import { jobIdFor } from '../../core/jobspec.ts';
import { createNoopEngine } from '../../queue/index.ts';
import { percentile, type RemoteFakeSlack, startRemoteFakeSlack } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { startTestWorker, TestBot } from './slack-harness.ts';

/**
 * 200 signed /imagine at once (what `npm run bench:chat` measures), with the fake Slack and the
 * 200 clients in a child process as Slack would be: every one is acknowledged well inside Slack's
 * 3 s, and every one is queued and shown. No worker runs, so the jobs stay queued.
 */

let redis: TestRedis;
let slack: RemoteFakeSlack;
let bot: TestBot;
const prefix = uniquePrefix('slack-load');
/** Receipt → ack, measured inside the bot (the adapter's onAck hook). */
const serverAcks: number[] = [];

beforeAll(async () => {
  [redis, slack] = await Promise.all([startTestRedis(), startRemoteFakeSlack()]);
  bot = await TestBot.start({
    redisUrl: redis.url,
    prefix,
    fake: slack,
    queueDepth: 1000,
    adapter: { onAck: ({ ms }) => serverAcks.push(ms) },
  });
});

afterAll(async () => {
  await bot?.stop();
  await slack?.stop();
  await redis?.stop();
});

it('acks 200 concurrent /imagine within Slack’s 3 s, queues and then posts every one', async () => {
  const run = await slack.fire({ url: bot.url, count: 200, text: 'a small load --steps 2 --size 64x64' });
  const inside = [...serverAcks].sort((a, b) => a - b);
  console.log(
    `slack ack, 200 concurrent /imagine — at the client: p50 ${run.p50.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms, ` +
      `max ${run.max.toFixed(1)} ms (wall ${run.wallMs.toFixed(0)} ms); receipt→ack in the bot: ` +
      `p50 ${percentile(inside, 50).toFixed(2)} ms, p99 ${percentile(inside, 99).toFixed(2)} ms`,
  );
  expect(run.failures).toBe(0);
  expect(inside).toHaveLength(200);
  expect(run.max).toBeLessThan(3000);
  // Every command got its public queued message (one chat.postMessage each), none an error.
  const deadline = Date.now() + 30_000;
  let counts = await slack.counts();
  while ((counts.okCalls['chat.postMessage'] ?? 0) < 200 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    counts = await slack.counts();
  }
  expect(counts.okCalls['chat.postMessage']).toBe(200);
  expect(counts.ephemerals).toBe(0);
  // The trigger ids the generator reports name the queued jobs (how the benchmark finds them).
  const ids = run.entries.map((e) => jobIdFor('slack', e.triggerId));
  const states = await Promise.all(ids.map((id) => bot.jobs.status(id)));
  expect(states.every((s) => s?.state === 'queued')).toBe(true);

  // A no-op worker drains them; each grid's share time against the worker's finishedAt.
  const worker = await startTestWorker(redis.url, prefix, async () => createNoopEngine());
  try {
    let shared: Readonly<Record<string, number>> = {};
    const until = Date.now() + 120_000;
    while (Object.keys(shared).length < ids.length && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      shared = await slack.fileSharedAt(ids.map((id) => `${id}-grid`));
    }
    expect(Object.keys(shared)).toHaveLength(ids.length);
    const records = await Promise.all(ids.map((id) => bot.jobs.record(id)));
    const posted = records
      .map((r) => (shared[`${r!.id}-grid`] ?? Number.NaN) - (r!.state.timings.finishedAt ?? Number.NaN))
      .sort((a, b) => a - b);
    expect(posted.every((ms) => ms >= 0)).toBe(true);
    console.log(
      `slack job completion → grid shared, 200 jobs: p50 ${percentile(posted, 50).toFixed(0)} ms, ` +
        `p99 ${percentile(posted, 99).toFixed(0)} ms`,
    );
  } finally {
    await worker.close({ releaseNow: true });
  }
});
