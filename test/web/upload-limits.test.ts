import { type ClientRequest, request } from 'node:http';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_UPLOADS_IN_FLIGHT } from '../../bots/web/image-body.ts';
import { call, newUser, startTestApp, type TestApp } from './app-helper.ts';

/**
 * `POST /api/imagine` takes bodies up to 27 MiB (image prompts), each buffered whole while read and
 * decoded: slow or concurrent uploads past MAX_UPLOADS_IN_FLIGHT are refused (503 + Retry-After)
 * before their bodies are read, while small requests and, once slots free up, uploads still work.
 */

/** A real picture whose body is over the small-body limit (16 KiB), so it counts as an upload. */
const PICTURE = await sharp({
  create: {
    width: 128,
    height: 128,
    channels: 3,
    background: '#000',
    noise: { type: 'gaussian', mean: 128, sigma: 40 },
  },
})
  .png()
  .toBuffer();

/** A request that declares a big body, sends its first bytes and then stalls (a slowloris upload). */
function stalledUpload(url: string, cookie: string): { req: ClientRequest; answered: Promise<number> } {
  const u = new URL(`${url}/api/imagine`);
  let req!: ClientRequest;
  const answered = new Promise<number>((resolve) => {
    req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': 20_000_000, cookie },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', () => resolve(-1));
  });
  req.write('{"text": "a slow upload", "init_image": "iVBORw0KGgo');
  return { req, answered };
}

describe('playground uploads in flight', () => {
  let t: TestApp;
  let user: { cookie: string };

  beforeAll(async () => {
    t = await startTestApp();
    user = await newUser(t.url);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('has a picture big enough to count as an upload', () => {
    expect(PICTURE.length).toBeGreaterThan(16_384);
  });

  it('refuses an upload past the cap at once, keeps small requests working, and frees slots', async () => {
    const stalled = Array.from({ length: MAX_UPLOADS_IN_FLIGHT }, () => stalledUpload(t.url, user.cookie));
    // Every stalled upload has reached the server and holds its slot.
    await new Promise((r) => setTimeout(r, 500));

    const started = performance.now();
    const refused = await call<{ error: { code: string; message: string } }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'one upload too many --seed 1', init_image: PICTURE.toString('base64') },
      signal: AbortSignal.timeout(10_000),
    });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('E_UNAVAILABLE');
    expect(refused.body.error.message).toMatch(/Too many pictures are being uploaded/u);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(performance.now() - started).toBeLessThan(5000);

    // A prompt without a picture (a small body) is not held up by the uploads.
    const small = await call(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'a small request --seed 2' },
    });
    expect(small.status).toBe(202);

    for (const { req } of stalled) req.destroy();
    await Promise.all(stalled.map((s) => s.answered));
    // The slots are free again: the same upload is accepted.
    await new Promise((r) => setTimeout(r, 200));
    const accepted = await call(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'an upload after the others --seed 3', init_image: PICTURE.toString('base64') },
    });
    expect(accepted.status).toBe(202);
  }, 60_000);
});
