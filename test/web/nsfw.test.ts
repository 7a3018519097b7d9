import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../models/pipeline.ts';
import { FlaggingEngine } from '../helpers/flagging-engine.ts';
import { call, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

/**
 * The NSFW policy in the playground, black-box over HTTP: the real app (private Redis, queue,
 * worker) with tiny-sd on onnxruntime whose safety checker flags the images a prompt names
 * (`nsfw2`: image 2). The playground is one local team: its `nsfw` setting applies as is, and
 * without one the environment's NSFW_POLICY (default block).
 */

const TINY_SD = path.resolve(import.meta.dirname, '../fixtures/tiny-sd');

/** Mean squared difference of neighbouring pixels (right and below): high-frequency energy. */
function highFrequency(raw: Buffer, width: number, height: number): number {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < height - 1; y++) {
    for (let x = 0; x < width - 1; x++) {
      for (let c = 0; c < 3; c++) {
        const here = raw[(y * width + x) * 3 + c]!;
        sum +=
          (here - raw[(y * width + x + 1) * 3 + c]!) ** 2 + (here - raw[((y + 1) * width + x) * 3 + c]!) ** 2;
        n += 2;
      }
    }
  }
  return sum / n;
}

async function rgb(png: Buffer) {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Tile k of a 2×2 grid as raw RGB. */
async function tile(png: Buffer, k: number): Promise<Buffer> {
  const meta = await sharp(png).metadata();
  const width = (meta.width ?? 0) / 2;
  const height = (meta.height ?? 0) / 2;
  return sharp(png)
    .extract({ left: (k % 2) * width, top: Math.floor(k / 2) * height, width, height })
    .removeAlpha()
    .raw()
    .toBuffer();
}

describe('NSFW policy in the playground (real app, flagged images)', () => {
  let t: TestApp;
  let user: { cookie: string };
  let id: string;

  beforeAll(async () => {
    t = await startTestApp(
      { DEFAULT_WIDTH: '64', DEFAULT_HEIGHT: '64', MAX_PIXELS: String(128 * 128) },
      'all',
      {
        engine: async () => new FlaggingEngine(await loadEngine(TINY_SD, { name: 'tiny-sd' })),
      },
    );
    user = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'a lighthouse nsfw2 --seed 5' },
    });
    expect(made.status).toBe(202);
    id = made.body.id;
    await waitForJob(t.url, id, ['done'], { headers: user });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const png = async (route: string): Promise<Buffer> => {
    const res = await fetch(`${t.url}/api/jobs/${id}/${route}`, { headers: user });
    expect(res.status, route).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  };
  const setPolicy = async (nsfw: string | null) => {
    const res = await call(`${t.url}/api/settings`, { method: 'PUT', headers: user, json: { nsfw } });
    expect(res.status).toBe(200);
  };
  const notes = async () =>
    (await call<{ notes: string[] }>(`${t.url}/api/jobs/${id}`, { headers: user })).body.notes;

  it('block (the environment default): the flagged image is grey in grid.png and images/2.png, and the job says so', async () => {
    await setPolicy(null);
    expect((await tile(await png('grid.png'), 1)).every((v) => v === 128)).toBe(true);
    expect((await tile(await png('grid.png'), 0)).every((v) => v === 128)).toBe(false);
    expect((await rgb(await png('images/2.png'))).data.every((v) => v === 128)).toBe(true);
    expect(await notes()).toContain('Image 2 was withheld: the safety checker flagged it.');
  });

  it('allow (the playground may): the original, untouched by having been blocked', async () => {
    await setPolicy('allow');
    const original = await rgb(await png('images/2.png'));
    expect(original.data.every((v) => v === 128)).toBe(false);
    expect((await tile(await png('grid.png'), 1)).equals(original.data)).toBe(true);
    expect(await notes()).toContain('The safety checker flagged image 2.');
    expect(
      (await call<{ effective: { nsfw: string } }>(`${t.url}/api/settings`, { headers: user })).body.effective
        .nsfw,
    ).toBe('allow');
  });

  it('blur: images/2.png and its grid tile differ from the original with far less high-frequency energy', async () => {
    await setPolicy('allow');
    const original = await rgb(await png('images/2.png'));
    const grid = await png('grid.png');
    await setPolicy('blur');
    const blurred = await rgb(await png('images/2.png'));
    const before = highFrequency(original.data, original.width, original.height);
    const after = highFrequency(blurred.data, blurred.width, blurred.height);
    expect(blurred.data.equals(original.data)).toBe(false);
    expect(after * 10, `high-frequency energy ${before.toFixed(1)} → ${after.toFixed(1)}`).toBeLessThan(
      before,
    );
    const blurredGrid = await png('grid.png');
    const tileBefore = await tile(grid, 1);
    const tileAfter = await tile(blurredGrid, 1);
    expect(tileAfter.equals(tileBefore)).toBe(false);
    expect(highFrequency(tileAfter, original.width, original.height) * 10).toBeLessThan(
      highFrequency(tileBefore, original.width, original.height),
    );
    for (const k of [0, 2, 3]) expect((await tile(blurredGrid, k)).equals(await tile(grid, k))).toBe(true);
    expect(await notes()).toContain('Image 2 is blurred: the safety checker flagged it.');
    console.log(`blur: high-frequency energy of image 2 ${before.toFixed(1)} → ${after.toFixed(1)}`);
  });

  it('PUT {"nsfw": "maybe"} is a 400 naming the field and what it takes', async () => {
    const res = await call<{ error: { code: string; message: string } }>(`${t.url}/api/settings`, {
      method: 'PUT',
      headers: user,
      json: { nsfw: 'maybe' },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('Setting "nsfw" must be one of block, blur, allow.');
  });
});
