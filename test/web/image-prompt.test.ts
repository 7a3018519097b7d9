import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';
import { closeRedisClient, createRedisClient, type RedisClient } from '../../queue/connection.ts';
import { queueKeys } from '../../queue/keys.ts';
import { call, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

/**
 * `POST /api/imagine` with `init_image` (image prompts) on the real app: real queue, Redis, worker and
 * demo model (which has a VAE encoder, so image-to-image really runs).
 */

const PICTURE = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png'));
/** The app's QUEUE_PREFIX (the default). */
const PREFIX = loadConfig({}).QUEUE_PREFIX;
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

interface InitJson {
  from: string;
  sha256: string;
  bytes: number;
  width: number;
  height: number;
  mime: string;
  source?: string;
  ref?: string;
  name?: string;
}

async function imageBytes(url: string, headers: Record<string, string>): Promise<Buffer> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

describe('playground image prompts (init_image)', () => {
  let t: TestApp;
  let redis: RedisClient;
  let user: { cookie: string };

  beforeAll(async () => {
    t = await startTestApp();
    redis = createRedisClient(t.app.redis, { blocking: false, name: 'test' });
    user = await newUser(t.url);
  });
  afterAll(async () => {
    if (redis !== undefined) await closeRedisClient(redis);
    await t?.stop();
  });

  const imagine = (json: Record<string, unknown>) =>
    call<{ id: string; error?: { code: string; message: string } }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json,
    });

  it('uses the uploaded picture: the record names it, the queue holds its bytes, the images differ', async () => {
    const res = await imagine({
      text: 'a harbour at night --seed 11 --steps 3',
      init_image: b64(PICTURE),
      init_image_name: 'harbour.png',
      strength: 0.7,
    });
    expect(res.status).toBe(202);
    const job = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
    const { settings } = job;
    const { init, strength } = job as typeof job & { init?: InitJson; strength?: number };
    const sha256 = createHash('sha256').update(PICTURE).digest('hex');
    expect(init).toEqual({
      from: 'upload',
      sha256,
      bytes: PICTURE.length,
      width: 96,
      height: 64,
      mime: 'image/png',
      source: 'upload',
      ref: 'harbour.png',
      name: 'harbour.png',
    });
    expect(strength).toBe(0.7);
    // No --ar or --size: the picture's 3:2, at the model's native area.
    expect(settings.width / settings.height).toBeCloseTo(1.5, 1);
    // The job's picture travelled through the queue's store, byte for byte.
    const stored = await redis.getBuffer(queueKeys(PREFIX).initImage(sha256));
    expect(stored?.equals(PICTURE)).toBe(true);

    // Same prompt, seed and size without the picture: other images.
    const plain = await imagine({
      text: `a harbour at night --seed 11 --steps 3 --size ${settings.width}x${settings.height}`,
    });
    expect(plain.status).toBe(202);
    await waitForJob(t.url, plain.body.id, ['done'], { headers: user });
    const base = `${t.url}/api/jobs`;
    const withImage = await sharp(await imageBytes(`${base}/${res.body.id}/images/1.png`, user))
      .raw()
      .toBuffer();
    const without = await sharp(await imageBytes(`${base}/${plain.body.id}/images/1.png`, user))
      .raw()
      .toBuffer();
    expect(withImage.length).toBe(without.length);
    expect(withImage.equals(without)).toBe(false);
  });

  it('takes typed fields too, with the default strength', async () => {
    const res = await imagine({
      prompt: 'a harbour',
      seed: 3,
      steps: 2,
      size: '128x128',
      init_image: b64(PICTURE),
    });
    expect(res.status).toBe(202);
    const job = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
    const { settings } = job;
    const { init, strength } = job as typeof job & { init?: InitJson; strength?: number };
    expect(strength).toBe(0.6);
    expect(init?.ref).toBe('upload');
    expect([settings.width, settings.height]).toEqual([128, 128]);
  });

  it('refuses bad pictures with a 400 that names the field, before anything is queued', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ text: 'a cat', init_image: 'not base64!' }, '"init_image" is not valid base64'],
      [{ text: 'a cat', init_image: 42 }, '"init_image" must be a string'],
      [
        { text: 'a cat', init_image: b64(Buffer.from('GIF89a\x01\x00\x01\x00')) },
        '"init_image" is not a PNG, JPEG or WebP picture',
      ],
      [
        {
          text: 'a cat',
          init_image: b64(Buffer.concat([PICTURE.subarray(0, 8), Buffer.alloc(MAX_INIT_IMAGE_BYTES)])),
        },
        `"init_image" is ${MAX_INIT_IMAGE_BYTES + 8} bytes; at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB)`,
      ],
      [
        { text: 'a cat', init_image: b64(Buffer.concat([PICTURE.subarray(0, 8), Buffer.from('garbage')])) },
        'The uploaded image could not be read as a picture',
      ],
      [
        { text: 'a cat --strength 0.5' },
        'Strength applies to an image prompt, but no image came with this command',
      ],
      [{ text: 'a cat', strength: 0.5 }, 'Strength applies to an image prompt'],
      [
        { text: 'a cat', init_image: b64(PICTURE), strength: 1.5 },
        'Strength must be a number above 0 and at most 1',
      ],
      [{ text: 'a cat', init_image: b64(PICTURE), strength: '0.5 --seed 1' }, '"strength" must be a number'],
      [
        { text: 'a cat --strength 0.4', init_image: b64(PICTURE), strength: 0.5 },
        '`--strength` is given twice',
      ],
      [{ text: 'a cat', init_image_name: 'a.png' }, '"init_image_name" was sent without "init_image"'],
      [
        { text: 'a cat --steps 2', init_image: b64(PICTURE), strength: 0.35 },
        'Strength 0.35 with 2 steps runs no denoising step: use a strength of at least 0.500, or more steps.',
      ],
    ];
    const before = await redis.keys(`${PREFIX}:*init:*`);
    for (const [json, message] of cases) {
      const res = await imagine(json);
      expect(res.status, message).toBe(400);
      expect(res.body.error?.message, message).toContain(message);
    }
    expect(await redis.keys(`${PREFIX}:*init:*`)).toEqual(before);
  });

  it('says so when Redis refuses to store the picture, and queues nothing', async () => {
    const other = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#246' } })
      .png()
      .toBuffer();
    const sha256 = createHash('sha256').update(other).digest('hex');
    const recordsBefore = await redis.keys(`${queueKeys(PREFIX).recordPrefix}*`);
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', '1');
    let res: Awaited<ReturnType<typeof imagine>>;
    try {
      res = await imagine({ text: 'a refused picture --seed 1', init_image: b64(other) });
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(res.body.error?.message).toMatch(/\S/u);
    expect(t.logs()).toContain('OOM');
    expect(await redis.exists(queueKeys(PREFIX).initImage(sha256))).toBe(0);
    // No record was made (so no job): the refusal came before queueing.
    expect(await redis.keys(`${queueKeys(PREFIX).recordPrefix}*`)).toEqual(recordsBefore);
  });
});
