import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridHistory } from '../../bots/history/store.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { jobIdFor } from '../../core/jobspec.ts';
import type { QueueWorker } from '../../queue/index.ts';
import { buttonsOf, type FakeMessage, FakeSlack, newTriggerId, richTextOf } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { buildDemo, startTestWorker, TestBot, waitForGrid } from './slack-harness.ts';

/**
 * `/imagine history` on Slack end to end: real bolt (HTTP mode, signed requests) on the real service,
 * queue, worker and demo model, the history index in real Redis, the fake Slack Web API.
 */

let redis: TestRedis;
let demo: Awaited<ReturnType<typeof buildDemo>>;
const fake = new FakeSlack();
const prefix = uniquePrefix('slack-hist');
let worker: QueueWorker | undefined;
let history: GridHistory;
let bot: TestBot;

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';
const GENERAL = 'C0GENERAL';
const RANDOM = 'C0RANDOM';

beforeAll(async () => {
  [redis, demo] = await Promise.all([startTestRedis(), buildDemo(), fake.start()]).then(
    ([r, d]) => [r, d] as const,
  );
  fake.addChannel({ id: GENERAL, name: 'general' });
  fake.addChannel({ id: RANDOM, name: 'random' });
  worker = await startTestWorker(redis.url, prefix, demo.load);
  history = new GridHistory({ connection: redis.url, prefix, ttlMs: 2 * 86_400_000 });
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake, history });
});

afterAll(async () => {
  await bot?.stop();
  await history?.close();
  await worker?.close({ releaseNow: true });
  await fake.stop();
  await redis?.stop();
  await demo?.remove();
});

async function imagine(text: string, user: string, channel: string): Promise<string> {
  const triggerId = newTriggerId();
  const result = await bot.sender.slashCommand({ text, triggerId, user, channel });
  expect(result.status).toBe(200);
  return jobIdFor('slack', triggerId);
}

/** Sends `/imagine <text>` and waits for the next ephemeral message to `user`. */
async function ephemeralAfter(text: string, user: string, channel: string) {
  const seen = fake.ephemerals.length;
  await imagine(text, user, channel);
  return fake.waitFor(
    () => fake.ephemerals.slice(seen).find((e) => e.user === user),
    10_000,
    `an ephemeral message to ${user}`,
  );
}

describe('Slack /imagine history', () => {
  it("lists the requester's grids in this channel, privately, newest first, with working buttons", async () => {
    const fox = await imagine('a red fox --seed 5 --size 256x256', ALICE, GENERAL);
    await waitForGrid(fake, fox);
    // The word with more after it is a prompt like any other.
    const rome = await imagine('history of rome --seed 6 --size 256x256', ALICE, GENERAL);
    await waitForGrid(fake, rome);
    expect((await bot.jobs.record(rome))?.spec.prompts).toEqual(Array(4).fill('history of rome'));
    await waitForGrid(fake, await imagine('bob’s cat --size 256x256', BOB, GENERAL));
    await waitForGrid(fake, await imagine('elsewhere --size 256x256', ALICE, RANDOM));

    const messagesBefore = fake.messages.length;
    const shown = await ephemeralAfter('  History ', ALICE, GENERAL);
    // Only the requester sees it; nothing was posted in the channel, nothing queued.
    expect(fake.messages.length).toBe(messagesBefore);
    const lines = shown.blocks.filter((b) => b.type === 'rich_text').map(richTextOf);
    expect(lines[0]).toBe('*Your last 2 grids in this channel*, newest first (only you see this):');
    expect(lines.slice(1)).toEqual([
      '*1.* history of rome · ✅ done · just now',
      '*2.* a red fox · ✅ done · just now',
    ]);
    const buttons = buttonsOf(shown);
    expect(buttons.map((b) => b.value)).toEqual(
      [rome, fox].flatMap((id) => [
        ...[0, 1, 2, 3].map((i) => `refine:${id}:${i}`),
        `reroll:${id}:0`,
        ...[0, 1, 2, 3].map((i) => `upscale:${id}:${i}`),
      ]),
    );
    // Block Kit wants action_ids unique within a message.
    expect(new Set(buttons.map((b) => b.action_id)).size).toBe(buttons.length);

    // Refine 2 of the fox, pressed in the ephemeral list: a refine job, posted in the channel.
    const refine = buttons.find((b) => b.value === `refine:${fox}:1`)!;
    const list: FakeMessage = {
      channel: GENERAL,
      ts: '1700000000.999999',
      text: shown.text,
      blocks: shown.blocks,
      files: [],
      edits: 0,
      deleted: false,
      history: [],
      postedAt: Date.now(),
    };
    const triggerId = newTriggerId();
    const pressed = await bot.sender.pressButton({
      message: list,
      actionId: refine.action_id!,
      user: ALICE,
      triggerId,
      ephemeral: true,
    });
    expect(pressed.status).toBe(200);
    const refined = jobIdFor('slack', triggerId);
    const grid = await waitForGrid(fake, refined);
    expect(grid.channel).toBe(GENERAL);
    expect(grid.threadTs).toBeUndefined();
    const record = await bot.jobs.record(refined);
    expect(record?.spec.kind).toBe('refine');
    expect(record?.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a red fox${s}`));

    // Bob's history in the same channel holds only Bob's grid.
    const bobs = await ephemeralAfter('history', BOB, GENERAL);
    expect(
      bobs.blocks
        .filter((b) => b.type === 'rich_text')
        .map(richTextOf)
        .slice(1),
    ).toEqual([expect.stringMatching(/^\*1\.\* bob’s cat · /u)]);
    // Somebody with no grids here is told so.
    const none = await ephemeralAfter('history', 'U0CAROL', GENERAL);
    expect(richTextOf(none.blocks[0]!)).toContain('You have no grids in this channel yet');
  });
});
