import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../core/jobspec.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { type QueueWorker, startWorker } from '../../queue/worker.ts';
import { customIdsOf, FakeDiscord } from '../fakes/discord/server.ts';
import { FAKE_APP_TOKEN, FAKE_BOT_TOKEN, FakeSlack, SignedSender } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { captureLogger, waitFor } from '../queue/helpers.ts';
import { cleanEnv, ensureStopped, type Running, run } from './processes.ts';

/**
 * A bot process killed -9 after the chat platform has a grid but before the bot recorded that it
 * posted it: after a restart, the delivery resumes and the channel shows exactly one grid. The
 * fakes hold their answer to the grid's call, so the kill lands at exactly that point.
 */

const DISCORD_TOKEN = 'fake-discord-bot-token-5e1a';
const TAKEOVER_MS = 3000;

let redis: TestRedis;
let slack: FakeSlack;
let discord: FakeDiscord;
const bots: Running[] = [];
let worker: QueueWorker | undefined;

beforeAll(async () => {
  redis = await startTestRedis();
  slack = await new FakeSlack().start();
  discord = await FakeDiscord.start({ token: DISCORD_TOKEN });
});
afterEach(async () => {
  for (const bot of bots.splice(0)) ensureStopped(bot);
  await worker?.close({ releaseNow: true });
  worker = undefined;
});
afterAll(async () => {
  await slack?.stop();
  await discord?.close();
  await redis?.stop();
});

function startBot(prefix: string, surface: 'slack' | 'discord'): Running {
  const chat =
    surface === 'slack'
      ? { SLACK_BOT_TOKEN: FAKE_BOT_TOKEN, SLACK_APP_TOKEN: FAKE_APP_TOKEN, SLACK_API_URL: slack.apiUrl }
      : {
          DISCORD_TOKEN,
          DISCORD_APP_ID: discord.appId,
          DISCORD_GUILD_ID: discord.guildId,
          DISCORD_API_URL: discord.apiUrl,
        };
  // node itself (not npm), so SIGKILL hits the process that holds the delivery.
  const bot = run(
    process.execPath,
    ['--import', 'tsx', 'bots/main.ts', 'bot'],
    cleanEnv({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      PORT: '0',
      STALLED_INTERVAL_MS: String(TAKEOVER_MS),
      LOG_LEVEL: 'info',
      ...chat,
    }),
  );
  bots.push(bot);
  return bot;
}

async function startNoopWorker(prefix: string): Promise<void> {
  worker = await startWorker({
    connection: redis.url,
    prefix,
    engine: createNoopEngine(),
    logger: captureLogger(),
    previewEveryMs: 0,
  });
}

async function killNow(bot: Running): Promise<void> {
  bot.child.kill('SIGKILL');
  const exit = await bot.exited();
  expect(exit.signal).toBe('SIGKILL');
}

/** Waits until the delivery of `id` to `surface` has completed (after the restart). */
async function deliveryCompleted(prefix: string, surface: 'slack' | 'discord', id: string): Promise<void> {
  const queue = new Queue(`deliver-${surface}`, { connection: { url: redis.url }, prefix });
  try {
    await waitFor(
      `the ${surface} delivery of ${id} to complete`,
      async () => ((await queue.getJobState(id)) === 'completed' ? true : null),
      60_000,
    );
  } finally {
    await queue.close();
  }
}

describe('a bot killed -9 between posting a grid and recording it', () => {
  it('Slack: after the restart the channel has exactly one grid', async () => {
    const prefix = uniquePrefix('rs');
    await startNoopWorker(prefix);
    const held = slack.holdNext('files.completeUploadExternal');
    const first = startBot(prefix, 'slack');
    await first.waitForLog('slack adapter started');
    const sender = new SignedSender({ url: slack.url, fake: slack });
    const payload = sender.slashCommandPayload({ text: 'a lighthouse --seed 7', channel: 'C0RESTART' });
    await slack.sendEnvelope('slash_commands', payload);

    // Slack has shared the grid into the channel; the bot has not heard back.
    await held.arrived;
    expect(slack.fileMessages('C0RESTART')).toHaveLength(1);
    await killNow(first);
    held.release();

    const second = startBot(prefix, 'slack');
    await second.waitForLog('slack adapter started');
    await deliveryCompleted(prefix, 'slack', jobIdFor('slack', String(payload.trigger_id)));
    expect(slack.fileMessages('C0RESTART')).toHaveLength(1);
    // The delivery went on to post the buttons, once.
    expect(slack.messagesWithButtons('', 'C0RESTART').filter((m) => m.files.length === 0)).toHaveLength(1);
  });

  it('Slack: killed after the grid was recorded but before its buttons, the restart posts only the buttons', async () => {
    const prefix = uniquePrefix('rb');
    await startNoopWorker(prefix);
    const isControls = (params: Readonly<Record<string, unknown>>) =>
      String(params.blocks ?? '').includes('upscale');
    const held = slack.holdNext('chat.postMessage', isControls);
    const first = startBot(prefix, 'slack');
    await first.waitForLog('slack adapter started');
    const sender = new SignedSender({ url: slack.url, fake: slack });
    const payload = sender.slashCommandPayload({ text: 'a harbour --seed 8', channel: 'C0RESTART2' });
    await slack.sendEnvelope('slash_commands', payload);

    // The grid's steps were recorded (in Redis, through the delivery's log) before the buttons went out.
    await held.arrived;
    expect(slack.fileMessages('C0RESTART2')).toHaveLength(1);
    await killNow(first);
    held.release();

    const second = startBot(prefix, 'slack');
    await second.waitForLog('slack adapter started');
    await deliveryCompleted(prefix, 'slack', jobIdFor('slack', String(payload.trigger_id)));
    expect(slack.fileMessages('C0RESTART2')).toHaveLength(1);
  });

  it('Discord: after the restart the channel has exactly one grid', async () => {
    const prefix = uniquePrefix('rd');
    await startNoopWorker(prefix);
    const isGrid = (body: unknown): boolean => JSON.stringify(body ?? null).includes('"upscale:');
    const held = discord.holdNext((request) => request.method !== 'GET' && isGrid(request.body));
    const first = startBot(prefix, 'discord');
    await first.waitForLog('discord bot ready');
    const interaction = discord.slashCommand({
      options: { prompt: 'a lighthouse', seed: 7 },
      user: { id: '4343', username: 'bob' },
    });

    await held.arrived;
    const grids = () =>
      [...discord.messages.values()].filter((m) => customIdsOf(m).some((c) => c.startsWith('upscale:')));
    expect(grids()).toHaveLength(1);
    await killNow(first);
    held.release();

    const second = startBot(prefix, 'discord');
    await second.waitForLog('discord bot ready');
    await deliveryCompleted(prefix, 'discord', jobIdFor('discord', interaction.id));
    expect(grids()).toHaveLength(1);
  });
});
