import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
import { jobIdFor } from '../../core/jobspec.ts';
import { closeRedisClient, createRedisClient, type RedisClient } from '../../queue/connection.ts';
import type { QueueWorker } from '../../queue/index.ts';
import { queueKeys } from '../../queue/keys.ts';
import { FAKE_BOT_TOKEN, FakeSlack, newTriggerId, shownText, textOf } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { buildDemo, startTestWorker, TestBot, waitForGrid } from './slack-harness.ts';

/**
 * Image prompts on Slack, end to end: the real bolt app (HTTP mode) on the real service, queue and
 * worker (demo model, which encodes pictures), and the fake Slack, which lists users' shared files
 * (files.list) and serves them from its file host only with the bot token.
 */

const PICTURE = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png'));
const CHANNEL = 'C0PICTURES';
const ALICE = 'U0ALICE';

let redis: TestRedis;
let demo: Awaited<ReturnType<typeof buildDemo>>;
const fake = new FakeSlack();
const prefix = uniquePrefix('slack-img');
let worker: QueueWorker | undefined;
let bot: TestBot;
let admin: RedisClient;
/** Another host: neither the bot nor its token may ever reach it. */
let other: Server;
let otherOrigin: string;
const otherRequests: { url: string; authorization: string | undefined }[] = [];

beforeAll(async () => {
  [redis, demo] = await Promise.all([startTestRedis(), buildDemo(), fake.start()]).then(
    ([r, d]) => [r, d] as const,
  );
  worker = await startTestWorker(redis.url, prefix, demo.load);
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake });
  admin = createRedisClient(redis.url, { blocking: false });
  other = createServer((req, res) => {
    otherRequests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'image/png' });
    res.end(PICTURE);
  });
  other.listen(0, '127.0.0.1');
  await once(other, 'listening');
  otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await bot?.stop();
  await worker?.close({ releaseNow: true });
  if (admin !== undefined) await closeRedisClient(admin);
  await fake.stop();
  await redis?.stop();
  await demo?.remove();
  other?.closeAllConnections();
  await new Promise((resolve) => other?.close(resolve));
});

async function imagine(text: string, user = ALICE) {
  const triggerId = newTriggerId();
  const result = await bot.sender.slashCommand({ text, triggerId, user, channel: CHANNEL });
  expect(result.status).toBe(200);
  return jobIdFor('slack', triggerId);
}

/** The ephemeral answer (through response_url) that contains `text`. */
function ephemeralWith(text: string): Promise<string> {
  return fake.waitFor(
    () => fake.ephemerals.map((e) => shownText(e)).find((t) => t.includes(text)),
    20_000,
    `an ephemeral answer with "${text}"`,
  );
}

describe('Slack image prompts (the user’s latest shared picture)', () => {
  it('--strength uses the picture the user shared in the channel: the record names it', async () => {
    // An older picture of Alice's and a newer one of Bob's: neither is the one.
    fake.shareUserFile({
      user: ALICE,
      channel: CHANNEL,
      name: 'old.png',
      data: PICTURE,
      created: Math.floor(Date.now() / 1000) - 30,
    });
    const file = fake.shareUserFile({ user: ALICE, channel: CHANNEL, name: 'harbour.png', data: PICTURE });
    fake.shareUserFile({ user: 'U0BOB', channel: CHANNEL, name: 'bob.png', data: PICTURE });
    const downloadsBefore = fake.fileDownloads.length;

    const jobId = await imagine('a harbour at night --seed 8 --steps 3 --strength 0.45');
    const controls = await waitForGrid(fake, jobId);
    const record = await bot.jobs.record(jobId);
    const sha256 = createHash('sha256').update(PICTURE).digest('hex');
    expect(record?.spec.init).toEqual({
      from: 'upload',
      sha256,
      bytes: PICTURE.length,
      width: 96,
      height: 64,
      mime: 'image/png',
      source: 'slack',
      ref: file.id,
      name: 'harbour.png',
    });
    expect(record?.spec.strength).toBe(0.45);
    // The job's picture is the shared file's bytes, stored for the worker.
    expect((await admin.getBuffer(queueKeys(prefix).initImage(sha256)))?.equals(PICTURE)).toBe(true);
    // The result says which picture it started from.
    const shown =
      fake.messages
        .filter((m) => m.files.length > 0)
        .map((m) => textOf(m))
        .join('\n') + textOf(controls);
    expect(shown).toContain('image prompt “harbour.png” (sha256 ');
    // files.list asked for this user's images in this channel; one download, with the token, from the file host.
    const list = fake.okCallsTo('files.list').at(-1);
    expect(list?.params).toMatchObject({ channel: CHANNEL, user: ALICE, types: 'images' });
    const downloads = fake.fileDownloads.slice(downloadsBefore);
    expect(downloads).toEqual([
      { path: new URL(fake.fileUrl(file)).pathname, authorization: `Bearer ${FAKE_BOT_TOKEN}` },
    ]);
  });

  it('without --strength, /imagine draws from the prompt alone and looks for no file', async () => {
    fake.shareUserFile({ user: ALICE, channel: CHANNEL, name: 'recent.png', data: PICTURE });
    const lists = fake.callsTo('files.list').length;
    const jobId = await imagine('a harbour at dawn --seed 2 --steps 2');
    await waitForGrid(fake, jobId);
    expect((await bot.jobs.record(jobId))?.spec.init).toBeUndefined();
    expect(fake.callsTo('files.list').length).toBe(lists);
  });

  it('--strength with no recent picture of the user here: a private, specific refusal', async () => {
    const stale = Math.floor(Date.now() / 1000) - 11 * 60;
    fake.shareUserFile({
      user: 'U0CAROL',
      channel: CHANNEL,
      name: 'stale.png',
      data: PICTURE,
      created: stale,
    });
    const jobId = await imagine('a harbour --strength 0.5', 'U0CAROL');
    expect(
      await ephemeralWith('No picture of yours was shared in this channel in the last 10 minutes'),
    ).toContain('then run /imagine again with --strength');
    expect(await bot.jobs.record(jobId)).toBeNull();
  });

  const refusals: [string, (user: string) => void, string][] = [
    [
      'a file listed on another host',
      (user) =>
        fake.shareUserFile({
          user,
          channel: CHANNEL,
          name: 'x.png',
          data: PICTURE,
          listedUrl: `${otherOrigin}/x.png`,
        }),
      "The shared image is not on the chat platform's own file host",
    ],
    [
      'a download redirected to another host',
      (user) =>
        fake.shareUserFile({
          user,
          channel: CHANNEL,
          name: 'r.png',
          data: PICTURE,
          redirectTo: `${otherOrigin}/r.png`,
        }),
      "The shared image is not on the chat platform's own file host",
    ],
    [
      'an oversize file streamed without Content-Length (reported small)',
      (user) =>
        fake.shareUserFile({
          user,
          channel: CHANNEL,
          name: 'big.png',
          data: Buffer.concat([PICTURE, Buffer.alloc(MAX_INIT_IMAGE_BYTES)]),
          size: 1000,
          noLength: true,
        }),
      'The shared image is larger than 20971520 bytes (20 MiB)',
    ],
    [
      'bytes that are not a picture',
      (user) =>
        fake.shareUserFile({
          user,
          channel: CHANNEL,
          name: 'n.png',
          data: Buffer.from('%PDF-1.7 not a picture'),
        }),
      'The shared image is not a PNG, JPEG or WebP picture',
    ],
  ];

  refusals.forEach(([what, share, message], i) => {
    it(`refuses ${what}, privately; the token never leaves Slack's host`, async () => {
      const user = `U0REFUSED${i}`;
      share(user);
      const before = otherRequests.length;
      const jobId = await imagine('a harbour --strength 0.5', user);
      await ephemeralWith(message);
      expect(await bot.jobs.record(jobId)).toBeNull();
      expect(otherRequests.length).toBe(before);
      expect(otherRequests.some((r) => r.authorization !== undefined)).toBe(false);
    });
  });
});
