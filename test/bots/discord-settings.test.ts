import type { APIMessage } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DailyQuota } from '../../bots/settings/quota.ts';
import type { TeamSettingsStore } from '../../bots/settings/store.ts';
import { shownContent } from '../fakes/discord/payloads.ts';
import type { InjectedInteraction } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { startTeamSupport } from '../helpers/teams.ts';
import {
  ALICE,
  BOB,
  type GatedEngine,
  type Harness,
  loadTinyEngine,
  startHarness,
  TEST_SETTINGS,
} from './discord-harness.ts';

/** Discord permission bits (as Discord sends them, in a decimal string). */
const MANAGE_CHANNELS = String(1 << 4);
const MANAGE_GUILD = String(1 << 5);

describe('Discord /imagine-settings end to end (real discord.js against the fake, real Redis)', () => {
  let redis: TestRedis;
  let engine: GatedEngine;
  let h: Harness;
  let store: TeamSettingsStore;
  let quota: DailyQuota;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = await loadTinyEngine();
    const prefix = uniquePrefix('dset');
    ({ store, quota } = await startTeamSupport(redis.url, prefix, TEST_SETTINGS));
    h = await startHarness({ redisUrl: redis.url, engine, teams: { store, quota } });
  });
  afterAll(async () => {
    await h?.close();
    await store?.close();
    await quota?.close();
    await engine?.inner.close();
    await redis?.stop();
  });

  /** The (ephemeral) answer to an interaction, once it has text. */
  const answerTo = (interaction: InjectedInteraction): Promise<APIMessage> =>
    h.fake.waitFor(
      () => {
        const message = h.fake.originalMessage(interaction);
        return message !== undefined && message.content !== '' ? message : undefined;
      },
      10_000,
      'the answer',
    );

  const settings = (
    subcommand: 'show' | 'set' | 'reset',
    options: Record<string, string | number | boolean>,
    user = ALICE,
    permissions?: string,
  ) =>
    h.fake.slashCommand({
      name: 'imagine-settings',
      subcommand,
      options,
      user,
      ...(permissions === undefined ? {} : { permissions }),
    });

  const channelScope = () => ({
    surface: 'discord' as const,
    workspace: h.fake.guildId,
    channel: h.fake.channelId,
  });

  it('registers /imagine-settings with show, set and reset and typed options', () => {
    const command = h.fake.globalCommands.find((c) => c.name === 'imagine-settings');
    expect(command?.options?.map((o) => o.name)).toEqual(['show', 'set', 'reset']);
    const set = command?.options?.find((o) => o.name === 'set') as {
      options: { name: string; type: number }[];
    };
    expect(set.options.map((o) => [o.name, o.type])).toEqual([
      ['scope', 3],
      ['suffixes', 3],
      ['negative', 3],
      ['sampler', 3],
      ['steps', 4],
      ['guidance', 10],
      ['aspect', 3],
      ['model', 3],
      ['owner_only_buttons', 5],
      ['banned_words', 3],
      ['daily_quota', 4],
      ['admins', 3],
      ['nsfw', 3],
    ]);
    const nsfw = set.options.find((o) => o.name === 'nsfw') as unknown as { choices: { value: string }[] };
    expect(nsfw.choices.map((c) => c.value)).toEqual(['block', 'blur', 'allow']);
  });

  it('refuses a member without Manage Channels, privately, and changes nothing', async () => {
    const asked = settings('set', { scope: 'channel', steps: 5 }, BOB);
    const answer = await answerTo(asked);
    expect((answer.flags ?? 0) & 64).toBe(64);
    expect(shownContent(answer.content)).toContain('needs the Manage Channels permission');
    expect(await store.overrides(channelScope())).toEqual({});
  });

  it('lets a member with Manage Channels set the channel, and the service applies it at once', async () => {
    const asked = settings(
      'set',
      { scope: 'channel', suffixes: ', x|, y', banned_words: 'dragon, kraken', steps: 6 },
      ALICE,
      MANAGE_CHANNELS,
    );
    const answer = await answerTo(asked);
    expect((answer.flags ?? 0) & 64).toBe(64);
    const text = shownContent(answer.content);
    expect(text).toContain('Saved.');
    expect(text).toMatch(/steps`?: 6 \(set for this channel\)/u);
    expect(await store.overrides(channelScope())).toEqual({
      suffixes: [', x', ', y'],
      bannedWords: ['dragon', 'kraken'],
      steps: 6,
    });
    // /imagine in that channel now refuses the banned word, privately, without repeating it.
    const refused = h.fake.slashCommand({ options: { prompt: 'a red Dragon' }, user: BOB });
    const refusal = await answerTo(refused);
    expect((refusal.flags ?? 0) & 64).toBe(64);
    expect(shownContent(refusal.content)).toContain('not allowed here');
    expect(refusal.content.toLowerCase()).not.toContain('dragon');
  });

  it('needs Manage Server for the server scope (Manage Channels is not enough)', async () => {
    const refused = await answerTo(
      settings('set', { scope: 'guild', daily_quota: 8 }, ALICE, MANAGE_CHANNELS),
    );
    expect(shownContent(refused.content)).toContain('needs the Manage Server permission');
    const done = await answerTo(settings('set', { scope: 'guild', daily_quota: 8 }, ALICE, MANAGE_GUILD));
    expect(shownContent(done.content)).toMatch(/dailyQuota`?: 8 \(set for this server\)/u);
    expect(await store.overrides({ surface: 'discord', workspace: h.fake.guildId })).toEqual({
      dailyQuota: 8,
    });
  });

  it('says which setting is wrong and what it takes', async () => {
    const answer = await answerTo(
      settings('set', { scope: 'channel', suffixes: 'a|b|c|d|e' }, ALICE, MANAGE_CHANNELS),
    );
    expect(shownContent(answer.content)).toContain('Setting "suffixes" must be a list of 1 to 4 suffixes');
  });

  it('lets people listed as admins by an admin change settings, and shows settings to anyone', async () => {
    await answerTo(settings('set', { scope: 'channel', admins: `<@${BOB.id}>` }, ALICE, MANAGE_CHANNELS));
    const done = await answerTo(settings('set', { scope: 'channel', negative: 'blurry' }, BOB));
    expect(shownContent(done.content)).toContain('Saved.');
    const shown = shownContent((await answerTo(settings('show', {}, BOB))).content);
    expect(shown).toContain('negative`: blurry (set for this channel)');
    expect(shown).toContain('suffixes`: ", x", ", y" (set for this channel)');
  });

  it('reset drops one setting, or all of them', async () => {
    await answerTo(settings('reset', { scope: 'channel', setting: 'steps' }, ALICE, MANAGE_CHANNELS));
    expect(await store.overrides(channelScope())).not.toHaveProperty('steps');
    await answerTo(settings('reset', { scope: 'channel' }, ALICE, MANAGE_CHANNELS));
    expect(await store.overrides(channelScope())).toEqual({});
  });
});
