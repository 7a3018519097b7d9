import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIMessage } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordBot } from '../../bots/discord/bot.ts';
import { ConversationService } from '../../bots/service.ts';
import type { DailyQuota } from '../../bots/settings/quota.ts';
import type { TeamSettingsStore } from '../../bots/settings/store.ts';
import { folderDefaults } from '../../models/download/installed.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { modelFolderFacts } from '../../models/revision.ts';
import type { ServedModel } from '../../queue/engine-pool.ts';
import { createJobs, type Jobs, type QueueWorker, silentLogger, startWorker } from '../../queue/index.ts';
import { buttonsOf, FakeDiscord } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { startTeamSupport } from '../helpers/teams.ts';
import { TINY_SD } from '../models/tiny-sd.ts';
import { ALICE, TEST_SETTINGS } from './discord-harness.ts';

/** turbo's imagine.json: SD-Turbo's kind of defaults, at a tiny size. */
const TURBO = { steps: 1, guidance: 0, width: 128, height: 64, scheduler: 'euler_a' } as const;

function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  return buttonsOf(message).length === 3 ? message : undefined;
}

/** A served model as bots/app.ts makes one: its defaults read from its folder before it loads. */
async function served(name: string, dir: string): Promise<ServedModel> {
  const facts = await modelFolderFacts(dir);
  const defaults = await folderDefaults(dir);
  return {
    name,
    load: () => loadEngine(dir),
    sizeBytes: facts.weightBytes,
    revision: facts.revision,
    ...(defaults === undefined ? {} : { defaults }),
  };
}

describe('Discord: /imagine without options uses the chosen model’s defaults (real discord.js, queue, worker)', () => {
  let dir: string;
  let redis: TestRedis;
  let fake: FakeDiscord;
  let jobs: Jobs;
  let worker: QueueWorker;
  let store: TeamSettingsStore;
  let quota: DailyQuota;
  let service: ConversationService;
  let bot: DiscordBot;
  // No DEFAULT_* set in the environment: the harness's base defaults (4 steps, 64²) are the built-in layer.
  const settings = {
    ...TEST_SETTINGS,
    limits: { ...TEST_SETTINGS.limits, envDefaults: {}, models: ['base', 'turbo'] },
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-dmodel-defaults-'));
    await cp(TINY_SD, join(dir, 'turbo'), { recursive: true });
    await writeFile(join(dir, 'turbo', 'imagine.json'), JSON.stringify({ defaults: TURBO }));
    redis = await startTestRedis();
    fake = await FakeDiscord.start({ token: 'fake-bot-token' });
    const prefix = uniquePrefix('dmdefaults');
    jobs = createJobs({ connection: redis.url, prefix, logger: silentLogger, limits: { perUser: 10 } });
    // turbo is not the first model, so it is not loaded at start: its defaults come from its folder.
    worker = await startWorker({
      connection: redis.url,
      prefix,
      models: [await served('base', TINY_SD), await served('turbo', join(dir, 'turbo'))],
      logger: silentLogger,
      previewEveryMs: 0,
    });
    ({ store, quota } = await startTeamSupport(redis.url, prefix, settings));
    service = new ConversationService({ jobs, settings, teams: { store, quota } });
    bot = new DiscordBot({
      service,
      token: fake.token,
      appId: fake.appId,
      apiUrl: fake.apiUrl,
      limits: settings.limits,
    });
    await bot.start();
  });
  afterAll(async () => {
    await bot?.stop();
    await service?.close();
    await worker?.close({ releaseNow: true });
    await store?.close();
    await quota?.close();
    await jobs?.close();
    await fake?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const imagine = async (options: Record<string, string | number>) => {
    const command = fake.slashCommand({ options: { prompt: 'a cat', ...options }, user: ALICE });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    const record = await jobs.record(`discord-${command.id}`);
    return { grid, spec: record!.spec };
  };
  const settingsOf = (spec: {
    steps: number;
    guidance: number;
    sampler: string;
    width: number;
    height: number;
  }) => ({
    steps: spec.steps,
    guidance: spec.guidance,
    sampler: spec.sampler,
    width: spec.width,
    height: spec.height,
  });
  const turbo = { steps: 1, guidance: 0, sampler: 'euler_a', width: 128, height: 64 };

  it('model:turbo alone: turbo’s steps, guidance, sampler and size; a refine keeps them', async () => {
    const { grid, spec } = await imagine({ model: 'turbo' });
    expect(spec.model).toBe('turbo');
    expect(settingsOf(spec)).toEqual(turbo);

    // A channel setting made since does not change the grid's buttons.
    const channel = { surface: 'discord' as const, workspace: fake.guildId, channel: fake.channelId };
    await store.update(channel, { steps: 3 }, { surface: 'discord', user: ALICE.id });
    const press = fake.pressButton({
      messageId: grid.id,
      customId: buttonsOf(grid)[0]![0]!.customId,
      user: ALICE,
    });
    await fake.waitFor(() => isGrid(fake.messagesOf(press)[0]), 30_000, 'the refined grid');
    const refined = await jobs.record(`discord-${press.id}`);
    expect(refined?.spec.kind).toBe('refine');
    expect(settingsOf(refined!.spec)).toEqual(turbo);
  });

  it('the channel’s steps win over the model’s; the user’s options win over both', async () => {
    expect(settingsOf((await imagine({ model: 'turbo' })).spec)).toEqual({ ...turbo, steps: 3 });
    expect(settingsOf((await imagine({ model: 'turbo', steps: 2, guidance: 1 })).spec)).toEqual({
      ...turbo,
      steps: 2,
      guidance: 1,
    });
  });
});
