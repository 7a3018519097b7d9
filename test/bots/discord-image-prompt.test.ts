import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { APIAttachment, APIMessage } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
import type { GenerateOptions, GenerateRequest } from '../../models/engine.ts';
import { shownContent } from '../fakes/discord/payloads.ts';
import { buttonsOf, type FakeDiscord, type InjectedInteraction } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import { ALICE, GatedEngine, type Harness, loadTinyEngine, startHarness } from './discord-harness.ts';

/**
 * `/imagine` with the `image` attachment option, end to end: real discord.js against the fake (which
 * delivers the attachment in the interaction's resolved data and serves it from its CDN), the real
 * queue on Redis, tiny-sd on onnxruntime.
 */

const PICTURE = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png'));

/** The engine, remembering the starting picture of each batch it ran. */
class RecordingEngine extends GatedEngine {
  readonly initImages: (Uint8Array | undefined)[] = [];
  override generate(request: GenerateRequest, options: GenerateOptions = {}) {
    this.initImages.push(request.initImage);
    return super.generate(request, options);
  }
}

/** A grid message: one image attachment and the two button rows. */
function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  const labels = buttonsOf(message).map((row) => row.map((b) => b.label));
  return labels.length >= 2 && labels[0]?.[0] === '1' ? message : undefined;
}

/** The private answer a deferred command got (a follow-up with the ephemeral flag). */
function privateAnswer(fake: FakeDiscord, command: InjectedInteraction): Promise<string> {
  return fake.waitFor(
    () => {
      const content = fake.messagesOf(command).find((m) => ((m.flags ?? 0) & 64) !== 0)?.content;
      return content === undefined ? undefined : shownContent(content);
    },
    20_000,
    'the private answer',
  );
}

describe('Discord image prompts (attachment option)', () => {
  let redis: TestRedis;
  let engine: RecordingEngine;
  let h: Harness;
  /** Another host: the bot must never fetch from it. */
  let other: Server;
  let otherOrigin: string;
  const otherRequests: string[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = new RecordingEngine((await loadTinyEngine()).inner);
    h = await startHarness({ redisUrl: redis.url, engine });
    other = createServer((req, res) => {
      otherRequests.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(PICTURE);
    });
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await h?.close();
    await engine?.inner.close();
    await redis?.stop();
    other?.closeAllConnections();
    await new Promise((resolve) => other?.close(resolve));
  });

  it('registers an optional attachment option `image` and a number option `strength` in (0, 1]', () => {
    const options = (h.fake.globalCommands[0]?.options ?? []) as {
      name: string;
      type: number;
      required?: boolean;
      min_value?: number;
      max_value?: number;
    }[];
    expect(options.find((o) => o.name === 'image')).toMatchObject({ type: 11 });
    expect(options.find((o) => o.name === 'image')?.required ?? false).toBe(false);
    expect(options.find((o) => o.name === 'strength')).toMatchObject({
      type: 10,
      min_value: 0.01,
      max_value: 1,
    });
  });

  it('an attached picture is used: the record names it and the worker starts from its bytes', async () => {
    const { fake } = h;
    const file = fake.userAttachment({ name: 'harbour.png', data: PICTURE });
    const command = fake.slashCommand({
      options: { prompt: 'a harbour', seed: 21, strength: 0.5 },
      attachments: { image: file },
      user: ALICE,
    });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 60_000, 'the grid');
    const record = await h.jobs.record(`discord-${command.id}`);
    expect(record?.spec.init).toEqual({
      from: 'upload',
      sha256: createHash('sha256').update(PICTURE).digest('hex'),
      bytes: PICTURE.length,
      width: 96,
      height: 64,
      mime: 'image/png',
      source: 'discord',
      ref: file.id,
      name: 'harbour.png',
    });
    expect(record?.spec.strength).toBe(0.5);
    expect(shownContent(grid.content)).toContain('image prompt “harbour.png” (sha256 ');
    expect(shownContent(grid.content)).toContain('from your picture (strength 0.5)');
    expect(Buffer.from(engine.initImages.at(-1) ?? []).equals(PICTURE)).toBe(true);
    // Fetched once, from the fake's CDN, with no credentials.
    const fetched = fake.fileRequests.filter((r) => r.path.includes(file.id));
    expect(fetched).toHaveLength(1);
    expect(fetched[0]?.headers.authorization).toBeUndefined();
  });

  it('without --strength, the default (0.6); --strength without a picture is refused at once', async () => {
    const { fake } = h;
    const file = fake.userAttachment({ name: 'b.png', data: PICTURE });
    const command = fake.slashCommand({
      options: { prompt: 'a harbour', seed: 3 },
      attachments: { image: file },
      user: ALICE,
    });
    await fake.waitFor(() => isGrid(fake.originalMessage(command)), 60_000, 'the grid');
    expect((await h.jobs.record(`discord-${command.id}`))?.spec.strength).toBe(0.6);

    const bare = fake.slashCommand({ options: { prompt: 'a harbour', strength: 0.5 }, user: ALICE });
    const callback = await fake.waitFor(
      () => fake.find('POST', new RegExp(`^/interactions/${bare.id}/`)).find((r) => r.status !== 0),
      5000,
      'the refusal',
    );
    expect(callback.body).toMatchObject({ type: 4, data: { flags: 64 | 4 } });
    expect(shownContent((callback.body as { data: { content: string } }).data.content)).toContain(
      'Strength applies to an image prompt, but no image came with this command: attach one with the',
    );
    expect(await h.jobs.record(`discord-${bare.id}`)).toBeNull();
  });

  const refusals: [string, (fake: FakeDiscord) => APIAttachment, RegExp][] = [
    [
      'a file on any other host',
      (fake) => ({ ...fake.userAttachment({ name: 'x.png', data: PICTURE }), url: `${otherOrigin}/x.png` }),
      /The attached image is not on the chat platform's own file host/u,
    ],
    [
      'a redirect to another host',
      (fake) => fake.userAttachment({ name: 'r.png', data: PICTURE, redirectTo: `${otherOrigin}/r.png` }),
      /The attached image is not on the chat platform's own file host/u,
    ],
    [
      'an oversize file, streamed without Content-Length and reported small',
      (fake) =>
        fake.userAttachment({
          name: 'big.png',
          data: Buffer.concat([PICTURE, Buffer.alloc(MAX_INIT_IMAGE_BYTES)]),
          size: 1000,
          noLength: true,
        }),
      /The attached image is larger than 20971520 bytes \(20 MiB\)/u,
    ],
    [
      'an oversize file Discord reports as such',
      (fake) => fake.userAttachment({ name: 'big.png', data: PICTURE, size: MAX_INIT_IMAGE_BYTES + 1 }),
      /The attached image is 20971521 bytes; at most 20971520 bytes/u,
    ],
    [
      'bytes that are not a picture',
      (fake) => fake.userAttachment({ name: 'notes.png', data: Buffer.from('just some text, not a PNG') }),
      /The attached image is not a PNG, JPEG or WebP picture/u,
    ],
    [
      'a GIF',
      (fake) =>
        fake.userAttachment({
          name: 'a.gif',
          data: Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;'),
          contentType: 'image/gif',
        }),
      /The attached image is not a PNG, JPEG or WebP picture/u,
    ],
  ];

  for (const [what, attach, message] of refusals) {
    it(`refuses ${what}, privately, and queues nothing`, async () => {
      const { fake } = h;
      const before = otherRequests.length;
      const command = fake.slashCommand({
        options: { prompt: 'a harbour', seed: 1 },
        attachments: { image: attach(fake) },
        user: ALICE,
      });
      expect(await privateAnswer(fake, command)).toMatch(message);
      expect(await h.jobs.record(`discord-${command.id}`)).toBeNull();
      expect(otherRequests.length).toBe(before);
    });
  }
});
