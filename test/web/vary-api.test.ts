import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  type Job,
  newUser,
  pngTextChunks,
  startTestApp,
  type TestApp,
  waitForJob,
} from './app-helper.ts';

/**
 * `POST /api/jobs/:id/vary/:n` and `POST /api/jobs/:id/upscale2x/:n` on the real application (queue,
 * worker and the demo model, whose VAE encoder makes image-to-image real). 128x128 grids under a
 * 256x256 MAX_PIXELS: one Upscale ×2 fits, a second does not.
 */

interface I2iJob extends Job {
  derivation: string | null;
  strength: number | null;
  init: { from: string; id?: string; n?: number } | null;
}

async function png(url: string, headers: Record<string, string>): Promise<Buffer> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

describe('playground JSON API: vary and upscale ×2', () => {
  let t: TestApp;
  let user: { cookie: string };
  let grid: Job;

  beforeAll(async () => {
    t = await startTestApp({ MAX_PIXELS: String(256 * 256), DEFAULT_WIDTH: '128', DEFAULT_HEIGHT: '128' });
    user = await newUser(t.url);
    const res = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: '/imagine a lighthouse at dusk --seed 40' },
    });
    expect(res.status).toBe(202);
    grid = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  const post = (path: string, json?: unknown) =>
    call<Record<string, unknown>>(`${t.url}${path}`, {
      method: 'POST',
      headers: user,
      ...(json === undefined ? {} : { json }),
    });

  it('vary image 2 (subtle, then strong): 202 with the new id and seeds; the job says where it came from', async () => {
    for (const [strength, value] of [
      ['subtle', 0.35],
      ['strong', 0.6],
    ] as const) {
      const res = await post(`/api/jobs/${grid.id}/vary/2`, { strength });
      expect(res.status).toBe(202);
      const id = res.body.id as string;
      const seeds = res.body.seeds as number[];
      expect(seeds.map((s) => (s - seeds[0]! + 2 ** 32) % 2 ** 32)).toEqual([0, 1, 2, 3]);
      const job = (await waitForJob(t.url, id, ['done'], { headers: user })) as I2iJob;
      expect(job).toMatchObject({
        kind: 'vary',
        seeds,
        prompts: Array(4).fill('a lighthouse at dusk'),
        parent: { id: grid.id, n: 2 },
        init: { from: 'grid', id: grid.id, n: 2 },
        strength: value,
        derivation: `variations of image 2 (${strength}, strength ${value})`,
      });
      const parameters = pngTextChunks(await png(`${t.url}${job.images[0]}`, user)).get('parameters') ?? '';
      expect(parameters).toContain(`Seed: ${seeds[0]}`);
      expect(parameters).toContain(`Denoising strength: ${value}, Init image: ${grid.id} image 2`);
    }
  }, 120_000);

  it('upscale2x image 3: 202, then one image twice the size with its parameters; twice more is over MAX_PIXELS', async () => {
    const res = await post(`/api/jobs/${grid.id}/upscale2x/3`);
    expect(res.status).toBe(202);
    const job = (await waitForJob(t.url, res.body.id as string, ['done'], { headers: user })) as I2iJob;
    expect(job).toMatchObject({
      kind: 'upscale',
      seeds: [42],
      strength: 0.4,
      settings: { width: 256, height: 256 },
      derivation: 'image 3 upscaled ×2',
    });
    expect(job.images).toHaveLength(1);
    const image = await png(`${t.url}${job.images[0]}`, user);
    expect(await sharp(image).metadata()).toMatchObject({ width: 256, height: 256, format: 'png' });
    expect(pngTextChunks(image).get('parameters')).toMatch(
      /Seed: 42, Size: 256x256, .*Denoising strength: 0\.4/u,
    );

    const again = await post(`/api/jobs/${job.id}/upscale2x/1`);
    expect(again.status).toBe(400);
    expect((again.body.error as { message: string }).message).toBe(
      "Upscale ×2 would make 512x512 (262144 pixels); the limit here is 65536 pixels and 4096 per side, so this 256x256 image can't be upscaled.",
    );
    // The upscaled "grid" has one image: there is no image 2 to vary.
    const missing = await post(`/api/jobs/${job.id}/vary/2`, { strength: 'subtle' });
    expect(missing.status).toBe(400);
    expect((missing.body.error as { message: string }).message).toBe(
      'This grid has images 1 to 1; there is no image 2.',
    );
  }, 120_000);

  it('bad input: the image number, the strength and the body are named; an unknown job is not found', async () => {
    const cases: [string, unknown, number, string][] = [
      [`/api/jobs/${grid.id}/vary/5`, { strength: 'subtle' }, 400, 'Image numbers go from 1 to 4, got 5.'],
      [`/api/jobs/${grid.id}/vary/0`, { strength: 'subtle' }, 400, 'Image numbers go from 1 to 4, got 0.'],
      [
        `/api/jobs/${grid.id}/vary/2`,
        { strength: 'wild' },
        400,
        'strength must be "subtle" or "strong", got "wild".',
      ],
      [
        `/api/jobs/${grid.id}/vary/2`,
        { strength: 0.35 },
        400,
        'strength must be "subtle" or "strong", got 0.35.',
      ],
      [`/api/jobs/${grid.id}/vary/2`, undefined, 400, 'strength is required: "subtle" or "strong".'],
      [
        `/api/jobs/${grid.id}/vary/2`,
        { strength: 'subtle', seed: 1 },
        400,
        'Vary takes only "strength" in its body (got seed).',
      ],
      [`/api/jobs/${grid.id}/upscale2x/9`, undefined, 400, 'Image numbers go from 1 to 4, got 9.'],
      [
        `/api/jobs/${grid.id}/upscale2x/1`,
        { strength: 'subtle' },
        400,
        'This action takes no body fields (got strength).',
      ],
      [
        '/api/jobs/web-nope/vary/1',
        { strength: 'subtle' },
        404,
        'No job "web-nope": it never existed or has expired (grids are kept 30 days).',
      ],
      [
        '/api/jobs/web-nope/upscale2x/1',
        undefined,
        404,
        'No job "web-nope": it never existed or has expired (grids are kept 30 days).',
      ],
    ];
    for (const [path, body, status, message] of cases) {
      const res = await post(path, body);
      expect([path, res.status]).toEqual([path, status]);
      expect((res.body.error as { message: string }).message).toBe(message);
    }
  });
});

describe('playground JSON API: upscale ×2 with MAX_PIXELS unset', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({});
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  it('a grid image of the default size (512x512) doubles to 1024x1024, past the built-in 768² limit; once', async () => {
    const user = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: '/imagine a lighthouse at dusk --seed 40 --steps 2' },
    });
    expect(made.status).toBe(202);
    const grid = await waitForJob(t.url, made.body.id, ['done'], { headers: user });
    expect(grid.settings).toMatchObject({ width: 512, height: 512 });

    const res = await call<{ id: string }>(`${t.url}/api/jobs/${grid.id}/upscale2x/1`, {
      method: 'POST',
      headers: user,
    });
    expect(res.status).toBe(202);
    const job = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
    const image = await png(`${t.url}${job.images[0]}`, user);
    expect(await sharp(image).metadata()).toMatchObject({ width: 1024, height: 1024 });

    const again = await call<{ error: { message: string } }>(`${t.url}/api/jobs/${job.id}/upscale2x/1`, {
      method: 'POST',
      headers: user,
    });
    expect(again.status).toBe(400);
    expect(again.body.error.message).toMatch(/2048x2048 .*the limit here is 1048576 pixels/u);
  }, 180_000);
});
