import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDiscord } from '../fakes/discord/server.ts';
import { FAKE_APP_TOKEN, FAKE_BOT_TOKEN, FakeSlack, SignedSender } from '../fakes/slack/index.ts';
import { newUser, raw, startTestApp, type TestApp } from './app-helper.ts';

const DISCORD_TOKEN = 'fake-discord-bot-token-metrics-7d1e';

async function invalidCount(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const match = /^imagine_submissions_total\{outcome="invalid"\} (\d+)$/mu.exec(text);
  if (match === null) throw new Error('no invalid-submissions series in /metrics');
  return Number(match[1]);
}

/**
 * `imagine_submissions_total{outcome="invalid"}` counts every refused /imagine: bad flags or values on
 * Discord, Slack and the web (the service's parser), and web bodies refused before it (JSON, types).
 */
describe('the invalid-submissions counter', () => {
  let t: TestApp;
  let discord: FakeDiscord;
  let slack: FakeSlack;

  beforeAll(async () => {
    discord = await FakeDiscord.start({ token: DISCORD_TOKEN });
    slack = await new FakeSlack().start();
    t = await startTestApp({
      DISCORD_TOKEN,
      DISCORD_APP_ID: discord.appId,
      DISCORD_GUILD_ID: discord.guildId,
      DISCORD_API_URL: discord.apiUrl,
      SLACK_BOT_TOKEN: FAKE_BOT_TOKEN,
      SLACK_APP_TOKEN: FAKE_APP_TOKEN,
      SLACK_API_URL: slack.apiUrl,
    });
  });
  afterAll(async () => {
    await t?.stop();
    await discord?.close();
    await slack?.stop();
  });

  it('counts refused submissions from the web, Discord and Slack, and nothing else', async () => {
    expect(await invalidCount(t.url)).toBe(0);
    const user = await newUser(t.url);
    const json = { 'content-type': 'application/json', ...user };
    const web: [string, number][] = [
      ['{"text": "a cat --foo 3"}', 400], // the service's parser
      ['{"prompt": "a cat", "steps": 9999}', 400], // the service's parser, typed
      ['{"prompt": "x", "negative": 5}', 400], // a wrong type, refused before the service
      ['{"text": "a cat"', 400], // not JSON
    ];
    for (const [body, status] of web) {
      expect((await raw(t.url, 'POST', '/api/imagine', body, json)).status, body).toBe(status);
    }
    expect(await invalidCount(t.url)).toBe(web.length);

    // A valid one is not counted as invalid.
    const ok = await raw(t.url, 'POST', '/api/imagine', '{"text": "a fine cat --steps 1"}', json);
    expect(ok.status).toBe(202);
    expect(await invalidCount(t.url)).toBe(web.length);

    const interaction = discord.slashCommand({
      options: { prompt: 'a cat', aspect: '9:1' },
      user: { id: '4242', username: 'alice' },
    });
    await discord.waitFor(() => discord.callbacks.get(interaction.id), 20_000, 'the Discord reply');

    const sender = new SignedSender({ url: slack.url, fake: slack });
    await slack.sendEnvelope('slash_commands', sender.slashCommandPayload({ text: 'a cat --seed -1' }));
    await slack.waitFor(() => slack.ephemerals.length > 0, 20_000, 'the Slack error reply');

    // Both replies went out after their request was counted.
    expect(await invalidCount(t.url)).toBe(web.length + 2);
  });
});
