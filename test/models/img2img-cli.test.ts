import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_USAGE, runCli } from '../../models/cli/run.ts';
import { readPngText } from '../../models/png.ts';
import { imagineOk } from './cli-run.ts';
import {
  closeness,
  IMG2IMG,
  IMG2IMG_CASES,
  type Img2ImgCase,
  referenceRgb,
  TINY_SD,
  TINY_SDXL,
} from './tiny-sd.ts';

/**
 * `imagine generate --init-image PNG --strength S` on every image-to-image case, in a child process as a
 * user runs it, against diffusers' images; the size comes from the picture (no --width/--height).
 */

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-img2img-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function generateArgs(c: Img2ImgCase, out: string): string[] {
  const model = c.model === 'tiny-sdxl' ? TINY_SDXL : TINY_SD;
  const args = ['generate', '--model', model, '--out', out];
  for (const p of c.prompts) args.push('--prompt', p);
  for (const s of c.seeds) args.push('--seed', String(s));
  if (c.negative !== undefined) args.push('--negative', c.negative);
  args.push('--scheduler', c.scheduler, '--steps', String(c.steps), '--guidance', String(c.guidance));
  args.push('--init-image', path.join(IMG2IMG_CASES, c.init_image), '--strength', String(c.strength));
  return args;
}

async function rgbOf(file: string): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ...info };
}

describe('imagine generate --init-image reproduces diffusers', () => {
  for (const [index, c] of IMG2IMG.entries()) {
    it(`${c.model} case ${String(index).padStart(2, '0')} (${c.scheduler} ${c.steps} steps, strength ${c.strength})`, async () => {
      const out = path.join(work, `case${index}`);
      const { stderr } = await imagineOk(generateArgs(c, out));
      expect(stderr).toMatch(/image\(s\) in/);
      expect((await readdir(out)).sort()).toEqual(c.images.map((_, k) => `${k}.png`));
      const init = await sharp(path.join(IMG2IMG_CASES, c.init_image)).metadata();
      for (const [k, ref] of c.images.entries()) {
        const file = path.join(out, `${k}.png`);
        const image = await rgbOf(file);
        expect([image.width, image.height]).toEqual([init.width, init.height]);
        const close = closeness(image.rgb, await referenceRgb(ref.file, IMG2IMG_CASES));
        expect(close.within1, `${ref.file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
        expect(close.maxDiff, `${ref.file}: largest difference`).toBeLessThanOrEqual(2);
        const parameters = readPngText(await readFile(file)).parameters!;
        expect(parameters).toContain(`Seed: ${c.seeds[k]}, Size: ${init.width}x${init.height}`);
        expect(parameters).toContain(`Denoising strength: ${c.strength}`);
      }
    });
  }
});

describe('imagine generate --init-image refuses what it cannot use', () => {
  async function run(args: string[]): Promise<{ code: number; stderr: string }> {
    const err: string[] = [];
    const io = { stdout: { write: () => {} }, stderr: { write: (t: string) => err.push(t) } };
    const code = await runCli(['generate', '--model', TINY_SD, '--prompt', 'x', ...args], {}, io);
    return { code, stderr: err.join('') };
  }

  it('--strength without --init-image', async () => {
    const { code, stderr } = await run(['--strength', '0.5']);
    expect(code).toBe(EXIT_USAGE);
    expect(stderr).toContain('--strength needs an --init-image');
  });

  it('a strength outside (0, 1]', async () => {
    const { code, stderr } = await run([
      '--init-image',
      path.join(IMG2IMG_CASES, 'init-a.png'),
      '--strength',
      '1.5',
    ]);
    expect(code).toBe(EXIT_USAGE);
    expect(stderr).toContain('--strength must be above 0 and at most 1, got 1.5');
  });

  it('a file that is not a picture', async () => {
    const file = path.join(work, 'not-an-image.png');
    await writeFile(file, 'hello, not a PNG');
    const { code, stderr } = await run(['--init-image', file]);
    expect(code).toBe(EXIT_USAGE);
    expect(stderr).toContain('could not be read as a picture: send a PNG, JPEG or WebP file');
  });
});
