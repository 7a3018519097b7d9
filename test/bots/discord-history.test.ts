import type { APIMessage } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridHistory } from '../../bots/history/store.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { buttonsOf } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import {
  ALICE,
  BOB,
  type GatedEngine,
  type Harness,
  loadTinyEngine,
  startHarness,
} from './discord-harness.ts';

/** A grid message: one image attachment and the two button rows. */
function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  const labels = buttonsOf(message).map((row) => row.map((b) => b.label));
  return labels.length === 2 && labels[0]?.[0] === '1' ? message : undefined;
}

const EPHEMERAL = 1 << 6;

/** `/imagine-history` end to end: real discord.js against the fake, real queue and tiny-sd, real Redis. */
describe('Discord /imagine-history', () => {
  let redis: TestRedis;
  let engine: GatedEngine;
  let history: GridHistory;
  let h: Harness;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = await loadTinyEngine();
    history = new GridHistory({
      connection: redis.url,
      prefix: uniquePrefix('dhist'),
      ttlMs: 31 * 86_400_000,
    });
    h = await startHarness({ redisUrl: redis.url, engine, history });
  });
  afterAll(async () => {
    await h?.close();
    await history?.close();
    await engine?.inner.close();
    await redis?.stop();
  });

  const imagine = async (prompt: string, user: typeof ALICE) => {
    const command = h.fake.slashCommand({ options: { prompt, seed: 1000 }, user });
    await h.fake.waitFor(() => isGrid(h.fake.originalMessage(command)), 30_000, `the grid of ${prompt}`);
    return `discord-${command.id}`;
  };

  /** Sends `/imagine-history` and waits for its answer and the `entries` follow-ups. */
  const historyOf = async (user: typeof ALICE, entries: number, options: Record<string, number> = {}) => {
    const command = h.fake.slashCommand({ name: 'imagine-history', options, user });
    const messages = await h.fake.waitFor(
      () => {
        const all = h.fake.messagesOf(command);
        return all.length === entries + 1 && all[0]?.content !== '' ? all : undefined;
      },
      10_000,
      'the history',
    );
    return { command, messages };
  };

  it('is registered next to /imagine', () => {
    const registered = h.fake.globalCommands.map((c) => c.name);
    expect(registered).toEqual(expect.arrayContaining(['imagine', 'imagine-history']));
  });

  it("shows the requester's grids here, only to them, newest first, each with its buttons that work", async () => {
    const fox = await imagine('a red fox', ALICE);
    const rome = await imagine('history of rome', ALICE);
    await imagine('bob’s [cat](https://x.example)', BOB);

    const { messages } = await historyOf(ALICE, 2);
    expect(messages.every((m) => ((m.flags ?? 0) & EPHEMERAL) !== 0)).toBe(true);
    expect(messages[0]?.content).toBe(
      '**Your last 2 grids in this channel**, newest first (only you see this):',
    );
    expect(messages.slice(1).map((m) => m.content)).toEqual([
      '**1.** history of rome · ✅ done · just now',
      '**2.** a red fox · ✅ done · just now',
    ]);
    expect(messages.slice(1).map((m) => buttonsOf(m).map((row) => row.map((b) => b.customId)))).toEqual(
      [rome, fox].map((id) => [
        [0, 1, 2, 3].map((i) => `refine:${id}:${i}`).concat(`reroll:${id}:0`),
        [0, 1, 2, 3].map((i) => `upscale:${id}:${i}`),
      ]),
    );

    // Refine 2 from the private list: a public refine grid of the fox.
    const press = h.fake.pressButton({
      messageId: messages[2]!.id,
      customId: `refine:${fox}:1`,
      user: ALICE,
    });
    const refined = await h.fake.waitFor(
      () => isGrid(h.fake.messagesOf(press)[0]),
      30_000,
      'the refined grid',
    );
    expect((refined.flags ?? 0) & EPHEMERAL).toBe(0);
    const record = await h.jobs.record(`discord-${press.id}`);
    expect(record?.spec.kind).toBe('refine');
    expect(record?.spec.parent).toEqual({ gridId: fox, index: 1 });
    expect(record?.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a red fox${s}`));

    // `count` asks for fewer: the newest (the refine just made).
    const one = await historyOf(ALICE, 1, { count: 1 });
    expect(one.messages[0]?.content).toBe(
      '**Your last grid in this channel**, newest first (only you see this):',
    );
    expect(one.messages[1]?.content).toMatch(/^\*\*1\.\*\* a red fox · refine of image 2 · /u);

    // Bob sees his own grid only, its text literal (escaped: no link).
    const bobs = await historyOf(BOB, 1);
    expect(bobs.messages[1]?.content).toBe(
      '**1.** bob’s \\[cat\\]\\(https\\:\\/\\/x\\.example\\) · ✅ done · just now',
    );
  });

  it('tells someone without grids here', async () => {
    const { messages } = await historyOf({ id: '333333333333333333', username: 'carol' }, 0);
    expect(messages[0]?.content).toContain('You have no grids in this channel yet');
  });
});
