import type { APIMessage } from 'discord.js';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeControl } from '../../bots/service.ts';
import type { DailyQuota } from '../../bots/settings/quota.ts';
import type { TeamSettingsStore } from '../../bots/settings/store.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { shownContent } from '../fakes/discord/payloads.ts';
import { buttonsOf, type InjectedInteraction } from '../fakes/discord/server.ts';
import { FlaggingEngine } from '../helpers/flagging-engine.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { startTeamSupport } from '../helpers/teams.ts';
import {
  ALICE,
  button,
  gridTiles,
  type Harness,
  startHarness,
  TEST_SETTINGS,
  TINY_SD,
} from './discord-harness.ts';

/**
 * The NSFW policy on Discord, end to end: real discord.js against the fake Discord, the real queue
 * and worker on a real Redis, tiny-sd on onnxruntime with a safety checker that flags the images a
 * prompt names (`nsfw2`: image 2).
 */

const MANAGE_CHANNELS = String(1 << 4);

/** Mean squared difference of neighbouring pixels (right and below): high-frequency energy. */
function highFrequency(raw: Buffer, width: number, height: number): number {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < height - 1; y++) {
    for (let x = 0; x < width - 1; x++) {
      for (let c = 0; c < 3; c++) {
        const here = raw[(y * width + x) * 3 + c]!;
        const right = raw[(y * width + x + 1) * 3 + c]!;
        const below = raw[((y + 1) * width + x) * 3 + c]!;
        sum += (here - right) ** 2 + (here - below) ** 2;
        n += 2;
      }
    }
  }
  return sum / n;
}

async function rgb(png: Buffer): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function isGrey(raw: Buffer): boolean {
  return raw.every((v) => v === 128);
}

describe('NSFW policy on Discord (real discord.js, real queue and worker, flagged images)', () => {
  let redis: TestRedis;
  let engine: FlaggingEngine;
  let h: Harness;
  let store: TeamSettingsStore;
  let quota: DailyQuota;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = new FlaggingEngine(await loadEngine(TINY_SD, { name: 'tiny-sd' }));
    const prefix = uniquePrefix('dnsfw');
    ({ store, quota } = await startTeamSupport(redis.url, prefix, TEST_SETTINGS));
    h = await startHarness({ redisUrl: redis.url, engine, teams: { store, quota } });
  });
  afterAll(async () => {
    await h?.close();
    await store?.close();
    await quota?.close();
    await engine?.close();
    await redis?.stop();
  });
  beforeEach(async () => {
    h.fake.setAgeRestricted(h.fake.channelId, false);
    const scope = { surface: 'discord' as const, workspace: h.fake.guildId };
    const actor = { surface: 'discord' as const, user: 'test' };
    await store.update(scope, { nsfw: null }, actor);
    await store.update({ ...scope, channel: h.fake.channelId }, { nsfw: null }, actor);
  });

  /** Runs /imagine and waits for the grid; returns it with its record's stored grid PNG. */
  async function imagine(prompt: string) {
    const command = h.fake.slashCommand({ options: { prompt: `${prompt} --seed 7` }, user: ALICE });
    const grid = await h.fake.waitFor(
      () => {
        const m = h.fake.originalMessage(command);
        return m !== undefined && m.attachments.length === 1 && buttonsOf(m).length === 3 ? m : undefined;
      },
      30_000,
      'the grid',
    );
    const recordId = recordIdOf(grid);
    const stored = (await h.jobs.gridPng(recordId))!;
    return { command, grid, recordId, shown: h.fake.attachmentData(grid.attachments[0]!), stored };
  }

  /** The record id the grid's buttons carry. */
  function recordIdOf(grid: APIMessage): string {
    const decoded = decodeControl(button(grid, 'U1'));
    if (decoded === null) throw new Error('not a control id');
    return decoded.recordId;
  }

  /** Presses U`n` and waits for the full-size image message. */
  async function upscale(grid: APIMessage, n: number): Promise<APIMessage> {
    const press = h.fake.pressButton({ messageId: grid.id, customId: button(grid, `U${n}`), user: ALICE });
    return h.fake.waitFor(
      () => h.fake.messagesOf(press).find((m) => m.attachments.length === 1),
      15_000,
      'the full-size image',
    );
  }

  async function settingsAnswer(interaction: InjectedInteraction): Promise<string> {
    const message = await h.fake.waitFor(
      () => {
        const m = h.fake.originalMessage(interaction);
        return m !== undefined && m.content !== '' ? m : undefined;
      },
      10_000,
      'the settings answer',
    );
    return message.content;
  }

  it('block (the default): the flagged image is replaced by a grey tile in the grid and U2, and the user is told', async () => {
    const { grid, recordId, shown, stored } = await imagine('a lighthouse nsfw2');
    const record = await h.jobs.record(recordId);
    expect(record?.result?.nsfw).toEqual([false, true, false, false]);
    const shownTiles = (await gridTiles(shown)).tiles;
    const storedTiles = (await gridTiles(stored)).tiles;
    expect(isGrey(shownTiles[1]!)).toBe(true);
    expect(isGrey(storedTiles[1]!)).toBe(false); // the stored original is untouched
    for (const k of [0, 2, 3]) expect(shownTiles[k]!.equals(storedTiles[k]!)).toBe(true);
    expect(grid.content).toContain('Image 2 was withheld: the safety checker flagged it.');
    expect(grid.attachments[0]!.filename.startsWith('SPOILER_')).toBe(false);

    const full = await upscale(grid, 2);
    expect(isGrey((await rgb(h.fake.attachmentData(full.attachments[0]!))).data)).toBe(true);
    expect(full.content).toContain('Image 2 was withheld');
    // An image that was not flagged comes as made.
    const other = await upscale(grid, 3);
    expect(h.fake.attachmentData(other.attachments[0]!).equals((await h.jobs.imagePng(recordId, 2))!)).toBe(
      true,
    );
  });

  it('blur (set through /imagine-settings): blurred strongly, posted as SPOILER_, the original kept', async () => {
    const set = h.fake.slashCommand({
      name: 'imagine-settings',
      subcommand: 'set',
      options: { scope: 'channel', nsfw: 'blur' },
      user: ALICE,
      permissions: MANAGE_CHANNELS,
    });
    expect(await settingsAnswer(set)).toContain('Saved.');
    const { grid, recordId, shown, stored } = await imagine('a harbour nsfw2');
    expect(grid.attachments[0]!.filename).toMatch(/^SPOILER_/u);
    const shownGrid = await gridTiles(shown);
    const storedGrid = await gridTiles(stored);
    const { width, height } = shownGrid;
    const before = highFrequency(storedGrid.tiles[1]!, width, height);
    const after = highFrequency(shownGrid.tiles[1]!, width, height);
    expect(shownGrid.tiles[1]!.equals(storedGrid.tiles[1]!)).toBe(false);
    expect(after * 10, `high-frequency energy ${before.toFixed(1)} → ${after.toFixed(1)}`).toBeLessThan(
      before,
    );
    for (const k of [0, 2, 3]) expect(shownGrid.tiles[k]!.equals(storedGrid.tiles[k]!)).toBe(true);
    expect(grid.content).toContain('Image 2 is blurred: the safety checker flagged it.');

    const full = await upscale(grid, 2);
    expect(full.attachments[0]!.filename).toMatch(/^SPOILER_/u);
    const original = await rgb((await h.jobs.imagePng(recordId, 1))!);
    const posted = await rgb(h.fake.attachmentData(full.attachments[0]!));
    expect(posted.data.equals(original.data)).toBe(false);
    expect(highFrequency(posted.data, posted.width, posted.height) * 10).toBeLessThan(
      highFrequency(original.data, original.width, original.height),
    );
  });

  it('an age-restricted channel allows by default: the flagged image is shown as made (blocked before the mark)', async () => {
    // The same channel, settings and prompt: only Discord's age-restricted mark differs.
    const before = await imagine('a forest nsfw1 nsfw4');
    const tiles = (await gridTiles(before.shown)).tiles;
    expect([0, 1, 2, 3].map((k) => isGrey(tiles[k]!))).toEqual([true, false, false, true]);
    h.fake.setAgeRestricted(h.fake.channelId, true);
    const { grid, shown, stored } = await imagine('a forest nsfw1 nsfw4');
    expect((await rgb(shown)).data.equals((await rgb(stored)).data)).toBe(true);
    expect(grid.attachments[0]!.filename.startsWith('SPOILER_')).toBe(false);
    expect(grid.content).not.toContain('withheld');
    expect(grid.content).toContain('The safety checker flagged image 1, 4.');
  });

  it('refuses allow outside an age-restricted channel, and server-wide; an allow there still blocks', async () => {
    const setAllow = (scope: 'channel' | 'guild') =>
      h.fake.slashCommand({
        name: 'imagine-settings',
        subcommand: 'set',
        options: { scope, nsfw: 'allow' },
        user: ALICE,
        permissions: String((1 << 4) | (1 << 5)),
      });
    const refusal = shownContent(await settingsAnswer(setAllow('channel')));
    expect(refusal).toContain('can be "allow" only for a channel marked age-restricted (NSFW) on Discord');
    expect(shownContent(await settingsAnswer(setAllow('guild')))).toContain('age-restricted');
    expect((await store.overrides({ surface: 'discord', workspace: h.fake.guildId })).nsfw).toBeUndefined();

    // In an age-restricted channel, the channel may allow explicitly.
    h.fake.setAgeRestricted(h.fake.channelId, true);
    expect(await settingsAnswer(setAllow('channel'))).toContain('Saved.');
    // The channel loses its age restriction: the stored allow no longer applies there.
    h.fake.setAgeRestricted(h.fake.channelId, false);
    const { shown } = await imagine('a meadow nsfw3');
    expect(isGrey((await gridTiles(shown)).tiles[2]!)).toBe(true);
  });
});
