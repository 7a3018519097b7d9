import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { WebClient } from '@slack/web-api';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recentSlackImage } from '../../bots/slack/files.ts';
import { reportError, UserError } from '../../core/errors.ts';
import { FAKE_BOT_TOKEN, FakeSlack } from '../fakes/slack/index.ts';

/**
 * The Slack picture lookup on its own, against the wire-level fake: only the asking user's file from
 * this channel is ever used, even if files.list answers with more than it was asked; and no failure
 * path puts the bot token in a log line (the real pino serializer, the service's reportError).
 */

const PICTURE = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png'));
const CHANNEL = 'C0FILES';
const ALICE = 'U0ALICE';

const fake = new FakeSlack();
let client: WebClient;

beforeAll(async () => {
  await fake.start();
  client = new WebClient(FAKE_BOT_TOKEN, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
});
afterAll(async () => {
  await fake.stop();
});

function lookup(user = ALICE, token = FAKE_BOT_TOKEN) {
  return recentSlackImage(CHANNEL, user, {
    client,
    botToken: token,
    origins: [fake.url],
    windowMs: 10 * 60_000,
    now: () => Date.now(),
  }).load();
}

describe('Slack image prompt lookup', () => {
  it("never takes another user's file, or a file from another channel, even when files.list lists them", async () => {
    fake.listIgnoresFilters = true;
    try {
      // Newer than anything of Alice's here: a listing that ignores the filters puts them first.
      fake.shareUserFile({ user: ALICE, channel: 'C0ELSEWHERE', name: 'elsewhere.png', data: PICTURE });
      fake.shareUserFile({ user: 'U0BOB', channel: CHANNEL, name: 'bob.png', data: PICTURE });
      await expect(lookup()).rejects.toThrow(/No picture of yours was shared in this channel/u);
      const mine = fake.shareUserFile({
        user: ALICE,
        channel: CHANNEL,
        name: 'mine.png',
        data: PICTURE,
        created: Math.floor(Date.now() / 1000) - 5,
      });
      expect((await lookup()).ref).toBe(mine.id);
    } finally {
      fake.listIgnoresFilters = false;
    }
  });

  it('logs no token on any failure path', async () => {
    const lines: string[] = [];
    const log = pino(
      { level: 'debug' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const failures: unknown[] = [];
    const attempt = async (user: string, token?: string) => {
      try {
        await lookup(user, token);
      } catch (error) {
        failures.push(error);
        reportError(log, error, { user });
      }
    };
    // files.list refused (a revoked token), and a server error.
    fake.fail('files.list', { error: 'invalid_auth' }, { status: 500 });
    await attempt(ALICE);
    await attempt(ALICE);
    // The download refused (wrong token: Slack redirects to its sign-in page), and a file gone (404).
    const user = 'U0DL';
    fake.shareUserFile({ user, channel: CHANNEL, name: 'x.png', data: PICTURE });
    await attempt(user, 'xoxb-wrong-token-0000');
    fake.userFiles.splice(0, fake.userFiles.length);
    fake.shareUserFile({
      user,
      channel: CHANNEL,
      name: 'gone.png',
      data: PICTURE,
      listedUrl: `${fake.url}/files-pri/T0-F999/download/gone.png`,
    });
    await attempt(user);
    expect(failures).toHaveLength(4);
    expect(failures.filter((f) => f instanceof UserError).length).toBeGreaterThan(0);
    expect(lines.length).toBeGreaterThan(0);
    const logged = lines.join('\n');
    expect(logged).not.toContain(FAKE_BOT_TOKEN);
    expect(logged).not.toContain('xoxb-wrong-token-0000');
  });
});
