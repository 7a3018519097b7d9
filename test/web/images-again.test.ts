import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueKeys } from '../../queue/keys.ts';
import { call, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

async function png(url: string, headers: Record<string, string>): Promise<Buffer> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('image/png');
  return Buffer.from(await response.arrayBuffer());
}

/**
 * The images of a grid are a cache of its record: once they are gone (IMAGE_TTL_HOURS, the byte
 * budget), U2 and the PNG URLs make them again through the queue, with the same pixels.
 */
describe('a grid whose images are gone (real app, queue, worker and demo model)', () => {
  let t: TestApp;
  let redis: Redis;

  beforeAll(async () => {
    t = await startTestApp();
    redis = new Redis(String(t.app.redis));
  });
  afterAll(async () => {
    redis?.disconnect();
    await t?.stop();
  });

  it('U2 and the image URLs give the same PNGs as before', async () => {
    const user = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'a harbour at night --seed 77 --steps 3' },
    });
    const job = await waitForJob(t.url, made.body.id, ['done'], { headers: user });
    const gridBefore = await png(`${t.url}/api/jobs/${job.id}/grid.png`, user);
    const u2Before = await png(`${t.url}/api/jobs/${job.id}/images/2.png`, user);

    const keys = queueKeys('imagine');
    const removed = await redis.del(keys.grid(job.id), ...[0, 1, 2, 3].map((k) => keys.image(job.id, k)));
    expect(removed).toBe(5);

    const u2 = await call<{ id: string; n: number; image: string }>(`${t.url}/api/jobs/${job.id}/upscale/2`, {
      method: 'POST',
      headers: user,
    });
    expect(u2.status).toBe(200);
    expect(u2.body).toMatchObject({ id: job.id, n: 2, image: `/api/jobs/${job.id}/images/2.png` });
    expect(await png(`${t.url}${u2.body.image}`, user)).toEqual(u2Before);
    expect(await png(`${t.url}/api/jobs/${job.id}/grid.png`, user)).toEqual(gridBefore);
    expect(t.logs()).toContain('PNGs made again from the record');
  }, 120_000);
});
