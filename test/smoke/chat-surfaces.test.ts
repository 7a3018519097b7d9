import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customIdsOf, FakeDiscord } from '../fakes/discord/server.ts';
import { FAKE_APP_TOKEN, FAKE_BOT_TOKEN, FakeSlack, SignedSender } from '../fakes/slack/index.ts';
import { call, SHARED_MODELS_DIR, waitForJob } from '../web/app-helper.ts';
import { cleanEnv, ensureStopped, type Running, run } from './processes.ts';

const DISCORD_TOKEN = 'fake-discord-bot-token-91c2';

/**
 * `npm start` with chat tokens set connects to Discord and Slack besides the playground, all on the
 * one in-process worker. Local fakes stand in for both platforms (the real client libraries talk
 * to them), so the entry point's wiring is checked end to end.
 */
describe('npm start with Discord and Slack tokens', () => {
  let dir: string;
  let discord: FakeDiscord;
  let slack: FakeSlack;
  let app: Running | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-chat-smoke-'));
    discord = await FakeDiscord.start({ token: DISCORD_TOKEN });
    slack = await new FakeSlack().start();
  });
  afterAll(async () => {
    ensureStopped(app);
    await discord?.close();
    await slack?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves /imagine on Discord, Slack and the playground, then stops cleanly', async () => {
    app = run(
      'npm',
      ['start'],
      cleanEnv({
        REDIS_DATA_DIR: join(dir, 'redis'),
        MODELS_DIR: SHARED_MODELS_DIR,
        PORT: '0',
        DEFAULT_STEPS: '3',
        DISCORD_TOKEN,
        DISCORD_APP_ID: discord.appId,
        DISCORD_GUILD_ID: discord.guildId,
        DISCORD_API_URL: discord.apiUrl,
        SLACK_BOT_TOKEN: FAKE_BOT_TOKEN,
        SLACK_APP_TOKEN: FAKE_APP_TOKEN,
        SLACK_API_URL: slack.apiUrl,
      }),
    );
    const url = String((await app.waitForLog('playground ready')).url);
    await app.waitForLog('discord bot ready');
    await app.waitForLog('slack adapter started');
    await app.waitForLog('worker ready');

    const web = await call<{ id: string }>(`${url}/api/imagine`, {
      method: 'POST',
      json: { text: 'from the web' },
    });
    expect(web.status).toBe(202);

    discord.slashCommand({
      options: { prompt: 'from discord', seed: 3 },
      user: { id: '4242', username: 'alice' },
    });
    const grid = await discord
      .waitFor(
        () =>
          [...discord.messages.values()].find((m) => customIdsOf(m).some((id) => id.startsWith('upscale:'))),
        45_000,
        'a Discord grid with U buttons',
      )
      .catch((error: unknown) => {
        console.log(app?.stdout().slice(-6000));
        throw error;
      });
    expect(customIdsOf(grid).filter((id) => id.startsWith('refine:'))).toHaveLength(4);

    const sender = new SignedSender({ url: slack.url, fake: slack });
    const ack = await slack.sendEnvelope(
      'slash_commands',
      sender.slashCommandPayload({ text: 'from slack --seed 9' }),
    );
    expect(ack.envelopeId).toMatch(/^env-/);
    await slack.waitFor(() => slack.fileMessages().length > 0, 45_000, 'a Slack grid upload');

    await waitForJob(url, web.body.id, ['done']);

    app.child.kill('SIGTERM');
    const exit = await app.exited();
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    for (const secret of [DISCORD_TOKEN, FAKE_BOT_TOKEN, FAKE_APP_TOKEN])
      expect(app.stdout()).not.toContain(secret);
  });
});
