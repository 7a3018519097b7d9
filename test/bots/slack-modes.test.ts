import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConversationService } from '../../bots/service.ts';
import { SlackAdapter, slackSettingsFrom } from '../../bots/slack/adapter.ts';
import { loadConfig } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { jobIdFor } from '../../core/jobspec.ts';
import { createJobs, type Jobs, silentLogger } from '../../queue/index.ts';
import {
  FAKE_APP_TOKEN,
  FAKE_BOT_TOKEN,
  FakeSlack,
  newTriggerId,
  SignedSender,
  shownText,
} from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { statusMessage, TEST_SETTINGS } from './slack-harness.ts';

/** Socket Mode (the default) against the fake's apps.connections.open + WebSocket, and the settings. */

const silent = pino({ level: 'silent' });
let redis: TestRedis;
let jobs: Jobs;
let service: ConversationService;
const fake = new FakeSlack();

beforeAll(async () => {
  [redis] = await Promise.all([startTestRedis(), fake.start()]);
  jobs = createJobs({ connection: redis.url, prefix: uniquePrefix('slack-socket'), logger: silentLogger });
  service = new ConversationService({ jobs, settings: TEST_SETTINGS });
});

afterAll(async () => {
  await service?.close();
  await jobs?.close();
  await fake.stop();
  await redis?.stop();
});

describe('Socket Mode', () => {
  it('is the default, constructs with an app token and connects nowhere until started', () => {
    const before = fake.calls.length;
    const adapter = new SlackAdapter({
      service,
      log: silent,
      botToken: FAKE_BOT_TOKEN,
      appToken: FAKE_APP_TOKEN,
      apiUrl: fake.apiUrl,
    });
    expect(adapter.mode).toBe('socket');
    expect(adapter.port).toBeUndefined();
    expect(fake.calls.length).toBe(before);
    expect(fake.socketCount).toBe(0);
  });

  it('refuses to construct without an app token, and http mode without a signing secret', () => {
    expect(() => new SlackAdapter({ service, log: silent, botToken: FAKE_BOT_TOKEN })).toThrow(
      expect.objectContaining({
        code: ErrorCode.Config,
        message: expect.stringContaining('SLACK_APP_TOKEN'),
      }),
    );
    expect(() => new SlackAdapter({ service, log: silent, botToken: FAKE_BOT_TOKEN, mode: 'http' })).toThrow(
      expect.objectContaining({
        code: ErrorCode.Config,
        message: expect.stringContaining('SLACK_SIGNING_SECRET'),
      }),
    );
  });

  it('connects over the WebSocket, acks a slash command envelope and runs it', async () => {
    const adapter = new SlackAdapter({
      service,
      log: silent,
      botToken: FAKE_BOT_TOKEN,
      appToken: FAKE_APP_TOKEN,
      apiUrl: fake.apiUrl,
    });
    await adapter.start();
    const sender = new SignedSender({ url: 'unused-in-socket-mode', fake });
    try {
      expect(fake.okCallsTo('apps.connections.open')).toHaveLength(1);
      expect(fake.socketCount).toBe(1);
      const triggerId = newTriggerId();
      const ack = await sender.socketSlashCommand({ text: 'over the socket --seed 3', triggerId });
      expect(ack.ackMs).toBeLessThan(3000);
      const jobId = jobIdFor('slack', triggerId);
      const status = await fake.waitFor(() => statusMessage(fake, jobId), 10_000, 'the queued message');
      expect(shownText(status)).toContain('`3` `4` `5` `6`');

      // A button over the socket: Cancel on the queued job (no worker runs here).
      const press = await sender.socketPressButton({ message: status, actionId: 'imagine_cancel' });
      expect(press.ackMs).toBeLessThan(3000);
      await fake.waitFor(() => /Cancelled/u.test(shownText(status)), 10_000, 'the cancelled edit');
    } finally {
      sender.close();
      await adapter.stop();
    }
    await fake.waitFor(() => fake.socketCount === 0 || undefined, 5000, 'the socket closed');
  });

  it('fails to start with a bad app token or bad bot token', async () => {
    const badApp = new SlackAdapter({
      service,
      log: silent,
      botToken: FAKE_BOT_TOKEN,
      appToken: 'xapp-wrong',
      apiUrl: fake.apiUrl,
    });
    await expect(badApp.start()).rejects.toThrow();
    await badApp.stop();
    const badBot = new SlackAdapter({
      service,
      log: silent,
      botToken: 'xoxb-wrong',
      appToken: FAKE_APP_TOKEN,
      apiUrl: fake.apiUrl,
    });
    await expect(badBot.start()).rejects.toMatchObject({
      code: ErrorCode.ChatApi,
      message: expect.stringContaining('invalid_auth'),
    });
  });
});

describe('settings', () => {
  it('maps the SLACK_* variables; Slack is off without a bot token', () => {
    expect(slackSettingsFrom(loadConfig({}))).toBeUndefined();
    expect(
      slackSettingsFrom(
        loadConfig({
          SLACK_BOT_TOKEN: 'xoxb-1',
          SLACK_MODE: 'http',
          SLACK_SIGNING_SECRET: 's3cret',
          SLACK_PORT: '3999',
          SLACK_API_URL: 'http://127.0.0.1:9/api/',
        }),
      ),
    ).toEqual({
      botToken: 'xoxb-1',
      mode: 'http',
      signingSecret: 's3cret',
      port: 3999,
      apiUrl: 'http://127.0.0.1:9/api/',
    });
    expect(
      slackSettingsFrom(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1' })),
    ).toMatchObject({
      mode: 'socket',
      appToken: 'xapp-1',
      apiUrl: 'https://slack.com/api/',
    });
  });
});

describe('slack-manifest.yaml', () => {
  it('declares the command, the scopes the adapter calls need, interactivity and Socket Mode', async () => {
    const manifest = await readFile(new URL('../../slack-manifest.yaml', import.meta.url), 'utf8');
    const active = manifest
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'))
      .join('\n');
    expect(active).toMatch(/slash_commands:\n\s+- command: \/imagine\n/u);
    expect(active).toMatch(/\n\s+- command: \/imagine-settings\n/u);
    const scopes = /bot:\n((?:\s+- [a-z:.]+\n)+)/u.exec(active)?.[1]?.match(/[a-z:.]+/gu);
    // commands: /imagine; chat:write: postMessage/update/delete/postEphemeral; files:write: uploadV2;
    // files:read: files.info (was a grid shared before a restart?); channels:join: conversations.join;
    // users:read: users.info (is the user of /imagine-settings a workspace admin or owner?).
    expect(scopes?.sort()).toEqual([
      'channels:join',
      'chat:write',
      'commands',
      'files:read',
      'files:write',
      'users:read',
    ]);
    expect(active).toMatch(/interactivity:\n\s+is_enabled: true/u);
    expect(active).toContain('socket_mode_enabled: true');
  });
});
