import { App, LogLevel, webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FAKE_BOT_TOKEN,
  FAKE_SIGNING_SECRET,
  FakeSlack,
  SignedSender,
  slackSignature,
} from '../fakes/slack/index.ts';

/**
 * The fake must speak the protocol the real clients use, or the adapter tests prove nothing:
 * these drive it with the real @slack/web-api WebClient and a real bolt HTTP receiver.
 */

const fake = new FakeSlack();
let client: webApi.WebClient;

beforeAll(async () => {
  await fake.start();
  client = new webApi.WebClient(FAKE_BOT_TOKEN, {
    slackApiUrl: fake.apiUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logLevel: LogLevel.ERROR,
  });
});

afterAll(async () => {
  await fake.stop();
});

describe('fake Slack Web API with the real WebClient', () => {
  it('answers auth.test and refuses a wrong token', async () => {
    const auth = await client.auth.test();
    expect(auth.user_id).toBe('U0BOT');
    const wrong = new webApi.WebClient('xoxb-wrong', {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
    });
    await expect(wrong.auth.test()).rejects.toMatchObject({ data: { error: 'invalid_auth' } });
  });

  it('posts, updates and records messages with blocks', async () => {
    const posted = await client.chat.postMessage({
      channel: 'C1',
      text: 'hello',
      blocks: [
        {
          type: 'actions',
          elements: [
            { type: 'button', action_id: 'a_1', value: 'v1', text: { type: 'plain_text', text: '1' } },
          ],
        },
      ],
    });
    expect(posted.ts).toBeTypeOf('string');
    await client.chat.update({ channel: 'C1', ts: posted.ts!, text: 'edited' });
    const message = fake.message('C1', posted.ts!);
    expect(message?.text).toBe('edited');
    expect(message?.edits).toBe(1);
    expect(message?.history).toEqual(['hello', 'edited']);
    expect(fake.messagesWithButtons('a_').map((m) => m.ts)).toContain(posted.ts);
  });

  it('runs the three files.uploadV2 steps and shares the bytes in a thread', async () => {
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4, 5]);
    await client.filesUploadV2({
      channel_id: 'C1',
      thread_ts: '123.000001',
      initial_comment: 'the grid',
      file: bytes,
      filename: 'grid.png',
      title: 'grid',
    });
    const methods = fake.calls.map((c) => c.method);
    const i = methods.lastIndexOf('files.getUploadURLExternal');
    expect(methods.slice(i, i + 3)).toEqual([
      'files.getUploadURLExternal',
      'upload',
      'files.completeUploadExternal',
    ]);
    const shared = fake.fileMessages('C1').at(-1)!;
    expect(shared.threadTs).toBe('123.000001');
    expect(shared.text).toBe('the grid');
    expect(shared.files[0]?.bytes?.equals(bytes)).toBe(true);
  });

  it('injects 429 with Retry-After, then succeeds', async () => {
    fake.fail('chat.postMessage', { status: 429, retryAfter: 7 });
    await expect(client.chat.postMessage({ channel: 'C1', text: 'x' })).rejects.toMatchObject({
      code: 'slack_webapi_rate_limited_error',
      retryAfter: 7,
    });
    await expect(client.chat.postMessage({ channel: 'C1', text: 'x' })).resolves.toMatchObject({ ok: true });
  });

  it('injects 5xx and platform errors', async () => {
    fake.fail('chat.update', { status: 503 }, { error: 'fatal_error' });
    await expect(client.chat.update({ channel: 'C1', ts: '1', text: 'x' })).rejects.toMatchObject({
      code: 'slack_webapi_http_error',
      statusCode: 503,
    });
    await expect(client.chat.update({ channel: 'C1', ts: '1', text: 'x' })).rejects.toMatchObject({
      data: { error: 'fatal_error' },
    });
  });

  it('turns response_url posts into ephemerals, in-channel messages or replacements', async () => {
    const posted = await client.chat.postMessage({ channel: 'C2', text: 'original' });
    const eph = fake.responseUrl({ channel: 'C2', user: 'U1' });
    await fetch(eph, {
      method: 'POST',
      body: JSON.stringify({ text: 'only you', response_type: 'ephemeral' }),
    });
    expect(fake.ephemerals.at(-1)).toMatchObject({
      channel: 'C2',
      user: 'U1',
      text: 'only you',
      via: 'response_url',
    });
    const replace = fake.responseUrl({ channel: 'C2', messageTs: posted.ts! });
    await fetch(replace, {
      method: 'POST',
      body: JSON.stringify({ text: 'replaced', replace_original: true }),
    });
    expect(fake.message('C2', posted.ts!)?.text).toBe('replaced');
  });
});

describe('signed requests against a real bolt HTTP receiver', () => {
  it('is accepted when signed, refused (401) when forged or stale', async () => {
    const seen: string[] = [];
    const app = new App({
      token: FAKE_BOT_TOKEN,
      signingSecret: FAKE_SIGNING_SECRET,
      clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } },
      logLevel: LogLevel.ERROR,
      deferInitialization: true,
    });
    app.command('/imagine', async ({ ack, command }) => {
      await ack();
      seen.push(command.text);
    });
    await app.init();
    const server = (await app.start({ port: 0, host: '127.0.0.1' })) as import('node:http').Server;
    const { port } = server.address() as import('node:net').AddressInfo;
    const sender = new SignedSender({ url: `http://127.0.0.1:${port}/slack/events`, fake });
    try {
      const ok = await sender.slashCommand({ text: 'a cat' });
      expect(ok.status).toBe(200);
      expect(seen).toEqual(['a cat']);
      const forged = await sender.slashCommand({ text: 'forged' }, { secret: 'not-the-secret' });
      expect(forged.status).toBe(401);
      const stale = await sender.slashCommand(
        { text: 'stale' },
        { timestampSec: Math.floor(Date.now() / 1000) - 600 },
      );
      expect(stale.status).toBe(401);
      expect(seen).toEqual(['a cat']);
      expect(slackSignature('s', 1, 'b')).toMatch(/^v0=[0-9a-f]{64}$/u);
    } finally {
      sender.close();
      await app.stop();
    }
  });
});
