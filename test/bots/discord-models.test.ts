import type { APIMessage } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordBot } from '../../bots/discord/bot.ts';
import { ConversationService } from '../../bots/service.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { modelFolderFacts } from '../../models/revision.ts';
import type { ServedModel } from '../../queue/engine-pool.ts';
import { createJobs, type Jobs, type QueueWorker, silentLogger, startWorker } from '../../queue/index.ts';
import { buttonsOf, FakeDiscord } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { TINY_SD, TINY_SD2 } from '../models/tiny-sd.ts';
import { ALICE, TEST_SETTINGS } from './discord-harness.ts';

function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  return buttonsOf(message).length === 3 ? message : undefined;
}

async function served(name: string, dir: string): Promise<ServedModel> {
  const facts = await modelFolderFacts(dir);
  return { name, load: () => loadEngine(dir), sizeBytes: facts.weightBytes, revision: facts.revision };
}

describe('Discord: the model is a choice (real discord.js against the fake, real queue, two tiny models)', () => {
  let redis: TestRedis;
  let fake: FakeDiscord;
  let jobs: Jobs;
  let worker: QueueWorker;
  let service: ConversationService;
  let bot: DiscordBot;
  const settings = { ...TEST_SETTINGS, limits: { ...TEST_SETTINGS.limits, models: ['sd1', 'sd2', 'sd3'] } };

  beforeAll(async () => {
    redis = await startTestRedis();
    fake = await FakeDiscord.start({ token: 'fake-bot-token' });
    const prefix = uniquePrefix('dmodels');
    jobs = createJobs({ connection: redis.url, prefix, logger: silentLogger, limits: { perUser: 10 } });
    worker = await startWorker({
      connection: redis.url,
      prefix,
      models: [await served('sd1', TINY_SD), await served('sd2', TINY_SD2)],
      logger: silentLogger,
      previewEveryMs: 0,
    });
    service = new ConversationService({ jobs, settings });
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
    await jobs?.close();
    await fake?.close();
    await redis?.stop();
  });

  it('registers a model option whose choices are the served models, the default first', () => {
    const options = fake.globalCommands[0]?.options ?? [];
    const model = options.find((o) => o.name === 'model') as
      | { description: string; choices?: { name: string; value: string }[] }
      | undefined;
    expect(model?.choices).toEqual([
      { name: 'sd1', value: 'sd1' },
      { name: 'sd2', value: 'sd2' },
      { name: 'sd3', value: 'sd3' },
    ]);
    expect(model?.description).toBe('Model (default sd1)');
  });

  it('choosing sd2 runs on sd2: the record names it, and a refine keeps it', async () => {
    const command = fake.slashCommand({
      options: { prompt: 'a red fox', seed: 3, model: 'sd2' },
      user: ALICE,
    });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    const record = await jobs.record(`discord-${command.id}`);
    expect(record?.spec.model).toBe('sd2');
    expect(record?.result?.model).toMatchObject({ name: 'sd2', label: 'tiny-sd2' });

    const refine = buttonsOf(grid)[0]![0]!.customId;
    const press = fake.pressButton({ messageId: grid.id, customId: refine, user: ALICE });
    await fake.waitFor(() => isGrid(fake.messagesOf(press)[0]), 30_000, 'the refined grid');
    const refined = await jobs.record(`discord-${press.id}`);
    expect(refined?.spec).toMatchObject({
      kind: 'refine',
      model: 'sd2',
      modelRevision: record?.result?.model.revision,
    });
    expect(refined?.result?.model.name).toBe('sd2');
    // Both models ran on this one worker, each from its own queue.
    expect(worker.models).toEqual(['sd1', 'sd2']);
  });

  it('a model no running worker serves: queued all the same, and the queued message says so', async () => {
    const command = fake.slashCommand({ options: { prompt: 'a blue fox', model: 'sd3' }, user: ALICE });
    const queued = await fake.waitFor(
      () => {
        const message = fake.originalMessage(command);
        return message?.content.includes('Queued') === true ? message : undefined;
      },
      10_000,
      'the queued message',
    );
    expect(queued.content).toContain('a blue fox');
    expect(queued.content).toContain('No worker serving the model');
    expect(await jobs.status(`discord-${command.id}`)).toMatchObject({ state: 'queued' });
  });
});
