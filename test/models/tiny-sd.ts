import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { SamplerName } from '../../core/samplers.ts';
import type { GenerateRequest } from '../../models/engine.ts';

/** Shared by the models tests: the tiny-sd fixture folder and its diffusers oracle cases. */

export const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');
export const TINY_SD = path.join(FIXTURES, 'tiny-sd');
export const TINY_SD_CASES = path.join(FIXTURES, 'tiny-sd-cases');

export interface OracleCase {
  readonly prompts: string[];
  readonly negative?: string;
  readonly seeds: number[];
  readonly scheduler: SamplerName;
  readonly steps: number;
  readonly guidance: number;
  readonly height: number;
  readonly width: number;
  readonly images: { readonly file: string; readonly sha256_rgb: string; readonly mean: number }[];
}

/** The oracle cases in `<casesDir>/cases.json`. */
export function loadCases(casesDir: string): readonly OracleCase[] {
  return JSON.parse(readFileSync(path.join(casesDir, 'cases.json'), 'utf8'));
}

export const CASES: readonly OracleCase[] = loadCases(TINY_SD_CASES);

/** The other families' fixtures (see each folder's README). */
export const TINY_SD2 = path.join(FIXTURES, 'tiny-sd2');
export const TINY_SD2_CASES = path.join(FIXTURES, 'tiny-sd2-cases');
export const TINY_SDXL = path.join(FIXTURES, 'tiny-sdxl');
export const TINY_SDXL_CASES = path.join(FIXTURES, 'tiny-sdxl-cases');

/** The case as diffusers ran it: a case without `negative` had none (`None`), not an empty one. */
export function requestOf(c: OracleCase): GenerateRequest {
  return {
    prompts: c.prompts,
    negative: c.negative ?? '',
    negativeGiven: c.negative !== undefined,
    seeds: c.seeds,
    scheduler: c.scheduler,
    steps: c.steps,
    guidance: c.guidance,
    width: c.width,
    height: c.height,
  };
}

/** The oracle PNG (in `casesDir`, tiny-sd's by default) as interleaved RGB bytes. */
export async function referenceRgb(file: string, casesDir = TINY_SD_CASES): Promise<Uint8Array> {
  const { data, info } = await sharp(path.join(casesDir, file))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`${file}: expected RGB`);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export interface Closeness {
  /** Share of channel values within 1 level. */
  readonly within1: number;
  readonly exact: number;
  readonly maxDiff: number;
}

export function closeness(actual: Uint8Array, expected: Uint8Array): Closeness {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let within1 = 0;
  let exact = 0;
  let maxDiff = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (d === 0) exact++;
    if (d <= 1) within1++;
    if (d > maxDiff) maxDiff = d;
  }
  return { within1: within1 / actual.length, exact: exact / actual.length, maxDiff };
}

/** diffusers' image-to-image oracle cases (see the folder's README). */
export const IMG2IMG_CASES = path.join(FIXTURES, 'img2img-cases');

export interface Img2ImgCase {
  readonly model: 'tiny-sd' | 'tiny-sdxl';
  readonly prompts: string[];
  readonly negative?: string;
  readonly seeds: number[];
  readonly scheduler: SamplerName;
  readonly steps: number;
  readonly strength: number;
  readonly guidance: number;
  /** File name in IMG2IMG_CASES; already at the output size. */
  readonly init_image: string;
  readonly images: { readonly file: string; readonly sha256_rgb: string; readonly mean: number }[];
}

export const IMG2IMG: readonly Img2ImgCase[] = JSON.parse(
  readFileSync(path.join(IMG2IMG_CASES, 'cases.json'), 'utf8'),
);
