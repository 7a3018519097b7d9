import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_OK, runCli } from '../../models/cli/run.ts';
import { readPngText } from '../../models/png.ts';
import { imagineOk } from './cli-run.ts';
import {
  closeness,
  loadCases,
  type OracleCase,
  referenceRgb,
  TINY_SD2,
  TINY_SD2_CASES,
  TINY_SDXL,
  TINY_SDXL_CASES,
} from './tiny-sd.ts';

/**
 * `imagine generate` on the SD 2.x and SDXL fixtures, in a child process as a user runs it, against
 * diffusers' images. A case without `negative` passes no --negative (diffusers' None); case 05 of
 * tiny-sdxl passes `--negative ""`, which SDXL must encode rather than zero.
 */

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-families-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function generateArgs(model: string, c: OracleCase, out: string): string[] {
  const args = ['generate', '--model', model, '--out', out];
  for (const p of c.prompts) args.push('--prompt', p);
  for (const s of c.seeds) args.push('--seed', String(s));
  if (c.negative !== undefined) args.push('--negative', c.negative);
  args.push('--scheduler', c.scheduler, '--steps', String(c.steps), '--guidance', String(c.guidance));
  args.push('--width', String(c.width), '--height', String(c.height));
  return args;
}

async function rgbOf(file: string): Promise<Uint8Array> {
  const { data } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

for (const [name, model, casesDir] of [
  ['tiny-sd2', TINY_SD2, TINY_SD2_CASES],
  ['tiny-sdxl', TINY_SDXL, TINY_SDXL_CASES],
] as const) {
  describe(`imagine generate reproduces diffusers on ${name}`, () => {
    for (const [index, c] of loadCases(casesDir).entries()) {
      const negative =
        c.negative === undefined ? 'no --negative' : `--negative ${JSON.stringify(c.negative)}`;
      it(`case ${String(index).padStart(2, '0')} (${c.scheduler} ${c.steps} steps, ${negative})`, async () => {
        const out = path.join(work, `${name}-case${index}`);
        const { stderr } = await imagineOk(generateArgs(model, c, out));
        expect(stderr).toMatch(/image\(s\) in/);
        expect((await readdir(out)).sort()).toEqual(c.images.map((_, k) => `${k}.png`));
        for (const [k, ref] of c.images.entries()) {
          const file = path.join(out, `${k}.png`);
          const close = closeness(await rgbOf(file), await referenceRgb(ref.file, casesDir));
          expect(close.within1, `${ref.file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
          expect(close.maxDiff, `${ref.file}: largest difference`).toBeLessThanOrEqual(2);
          const parameters = readPngText(await readFile(file)).parameters!;
          expect(parameters).toContain(`Seed: ${c.seeds[k]}, Size: ${c.width}x${c.height}, Model: ${name}`);
        }
      });
    }
  });
}

describe('imagine inspect on the other families', () => {
  async function inspect(dir: string): Promise<Record<string, unknown>> {
    const out: string[] = [];
    const io = { stdout: { write: (t: string) => out.push(t) }, stderr: { write: () => {} } };
    expect(await runCli(['inspect', '--model', dir], {}, io)).toBe(EXIT_OK);
    return JSON.parse(out.join(''));
  }

  it('tells SD 2.x by its OpenCLIP tokenizer', async () => {
    expect((await inspect(TINY_SD2)).family).toBe('sd2');
  });

  it('shows SDXL text encoders, pooled output and the UNet extra inputs', async () => {
    const info = (await inspect(TINY_SDXL)) as {
      family: string;
      textEncoders: { inputIds: { type: string }; penultimate: string; textEmbeds: string | null }[];
      forceZerosForEmptyPrompt: boolean;
      unet: { textEmbeds: { name: string }; timeIds: { name: string; shape: unknown[] } };
      vaeScalingFactor: number;
    };
    expect(info.family).toBe('sdxl');
    expect(info.textEncoders.map((t) => [t.inputIds.type, t.penultimate, t.textEmbeds])).toEqual([
      ['int64', 'hidden_states.2', null],
      ['int64', 'hidden_states.2', 'text_embeds'],
    ]);
    expect(info.forceZerosForEmptyPrompt).toBe(true);
    expect(info.unet.timeIds).toMatchObject({ name: 'time_ids', shape: ['batch', 6] });
    expect(info.vaeScalingFactor).toBe(0.13025);
  });

  it('prints the defaults the engine will report (the SDXL-Turbo fixture: 1 step, no guidance, 512²)', async () => {
    expect((await inspect(TINY_SDXL)).defaults).toMatchObject({
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      scheduler: 'euler_a',
      source: 'family',
    });
  });
});

describe('imagine generate without flags uses the model’s defaults', () => {
  it('takes steps, guidance, scheduler and size from imagine.json; given flags still win', async () => {
    const model = path.join(work, 'sd2-with-defaults');
    await cp(TINY_SD2, model, { recursive: true });
    await writeFile(
      path.join(model, 'imagine.json'),
      JSON.stringify({ defaults: { steps: 2, guidance: 0, width: 64, height: 96, scheduler: 'euler' } }),
    );
    const run = async (out: string, extra: string[]) => {
      await imagineOk([
        'generate',
        '--model',
        model,
        '--prompt',
        'a boat',
        '--seed',
        '5',
        '--out',
        out,
        ...extra,
      ]);
      return readPngText(await readFile(path.join(out, '0.png'))).parameters!;
    };
    const plain = await run(path.join(work, 'defaults-plain'), []);
    expect(plain).toMatch(/Steps: 2, Sampler: Euler, CFG scale: 0, Seed: 5, Size: 64x96/);
    const given = await run(path.join(work, 'defaults-given'), [
      '--steps',
      '3',
      '--guidance',
      '4',
      '--width',
      '96',
    ]);
    expect(given).toMatch(/Steps: 3, Sampler: Euler, CFG scale: 4, Seed: 5, Size: 96x96/);
  });
});
