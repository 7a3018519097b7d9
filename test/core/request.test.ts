import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig, type RequestLimits, requestLimitsFrom } from '../../core/config.ts';
import { ErrorCode, UserError } from '../../core/errors.ts';
import {
  ASPECT_GRID,
  formatImagineText,
  type ImagineRequest,
  parseImagineOptions,
  parseImagineText,
  type Result,
  sizeForAspect,
} from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';

const config = parseConfig({});
if (!config.ok) throw new Error('default config must be valid');
const limits: RequestLimits = requestLimitsFrom(config.config);

function ok(result: Result<ImagineRequest>): ImagineRequest {
  if (!result.ok) throw new Error(`expected ok, got: ${result.error.message}`);
  return result.value;
}
function err(result: Result<ImagineRequest>): UserError {
  if (result.ok) throw new Error(`expected an error, got ${JSON.stringify(result.value)}`);
  expect(result.error).toBeInstanceOf(UserError);
  return result.error;
}

describe('parseImagineText', () => {
  it('parses the example from the issue', () => {
    const r = ok(
      parseImagineText(
        'a lighthouse at dusk --no blurry, text --seed 42 --steps 30 --cfg 6.5 --sampler euler_a --ar 3:2',
        limits,
      ),
    );
    expect(r).toEqual({
      prompt: 'a lighthouse at dusk',
      negative: 'blurry, text',
      seed: 42,
      steps: 30,
      guidance: 6.5,
      sampler: 'euler_a',
      width: 576,
      height: 384,
    });
  });

  it('applies defaults when no flag is given', () => {
    const r = ok(parseImagineText('  a cat  ', limits));
    expect(r).toEqual({
      prompt: 'a cat',
      negative: '',
      steps: limits.defaultSteps,
      guidance: limits.defaultGuidance,
      sampler: limits.defaultSampler,
      width: limits.defaultWidth,
      height: limits.defaultHeight,
    });
    expect('seed' in r).toBe(false);
  });

  it('accepts --size, --flag=value, aliases and flags anywhere', () => {
    const r = ok(
      parseImagineText('--size 640x448 a red --seed=7 fox --guidance 3 --scheduler DPM++-2M-Karras', limits),
    );
    expect(r.prompt).toBe('a red fox');
    expect(r.width).toBe(640);
    expect(r.height).toBe(448);
    expect(r.seed).toBe(7);
    expect(r.guidance).toBe(3);
    expect(r.sampler).toBe('dpmpp_2m_karras');
  });

  it('treats an em dash as -- (phone keyboards and Slack replace --)', () => {
    const r = ok(parseImagineText('a boat —seed 9 —ar 1:1', limits));
    expect(r.seed).toBe(9);
    expect(r.prompt).toBe('a boat');
  });

  it('keeps a lone -- and quoted flag-like words in the prompt', () => {
    expect(ok(parseImagineText('before -- after', limits)).prompt).toBe('before -- after');
    expect(ok(parseImagineText('a sign that says "--seed 5 --no" please', limits))).toMatchObject({
      prompt: 'a sign that says "--seed 5 --no" please',
    });
    expect(ok(parseImagineText('a “--steps 3” poster --seed 1', limits))).toMatchObject({
      prompt: 'a “--steps 3” poster',
      seed: 1,
    });
  });

  it('refuses unknown flags instead of keeping them in the prompt', () => {
    const e = err(parseImagineText('a cat --hd', limits));
    expect(e.code).toBe(ErrorCode.UnknownFlag);
    expect(e.message).toContain('--hd');
    expect(e.message).toContain('--seed');
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['--seed 5', 'empty'],
    ['a --seed', 'needs a value'],
    ['a --seed --steps 3', '`--seed` needs a value'],
    ['a --seed -1', 'from 0 to 4294967295'],
    ['a --seed 4294967296', 'from 0 to 4294967295'],
    ['a --seed 1.5', 'whole number'],
    ['a --seed 0x10', 'whole number'],
    ['a --steps 0', 'from 1 to 50'],
    ['a --steps 51', 'from 1 to 50'],
    ['a --steps 2.5', 'from 1 to 50'],
    ['a --cfg 31', 'from 0 to 30'],
    ['a --cfg -1', 'from 0 to 30'],
    ['a --cfg nan', 'from 0 to 30'],
    ['a --cfg 1e3', 'from 0 to 30'],
    ['a --sampler heun', 'Choose one of: pndm'],
    ['a --ar 3-2', 'like `3:2`'],
    ['a --ar 0:1', 'like `3:2`'],
    ['a --ar 5:1', 'between 1:4 and 4:1'],
    ['a --size 500x512', 'multiple of 8, got 500 (try 496 or 504)'],
    ['a --size 512', 'like `640x448`'],
    ['a --size 32x512', 'from 64 to 4096'],
    ['a --size 1024x1024', 'the limit is 589824'],
    ['a --ar 1:1 --size 512x512', 'either'],
    ['a --seed 1 --seed 2', 'given twice'],
    ['a --cfg 3 --guidance 4', 'given twice'],
    ['a --no', 'needs a value'],
  ])('rejects %j with a specific message', (text, fragment) => {
    const e = err(parseImagineText(text, limits));
    expect(e.message).toContain(fragment);
  });

  it('limits the prompt to 1000 characters, counted after trimming', () => {
    expect(ok(parseImagineText(`  ${'a'.repeat(1000)}  `, limits)).prompt).toHaveLength(1000);
    const e = err(parseImagineText('a'.repeat(1001), limits));
    expect(e.code).toBe(ErrorCode.PromptTooLong);
    expect(e.message).toContain('1001');
  });

  it('accepts the seed bounds 0 and 2^32-1', () => {
    expect(ok(parseImagineText('x --seed 0', limits)).seed).toBe(0);
    expect(ok(parseImagineText('x --seed 4294967295', limits)).seed).toBe(4294967295);
  });

  it('accepts every sampler', () => {
    for (const s of SAMPLERS) expect(ok(parseImagineText(`x --sampler ${s}`, limits)).sampler).toBe(s);
  });

  it('never throws on hostile input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => {
        const r = parseImagineText(text, limits);
        if (r.ok) {
          expect(r.value.prompt.length).toBeGreaterThan(0);
          expect(r.value.prompt.length).toBeLessThanOrEqual(1000);
        } else {
          expect(r.error).toBeInstanceOf(UserError);
          expect(r.error.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips through formatImagineText', () => {
    const word = fc.stringMatching(/^[a-z][a-z0-9,.'!]{0,10}$/);
    const request = fc.record({
      prompt: fc.array(word, { minLength: 1, maxLength: 8 }).map((w) => w.join(' ')),
      negative: fc.oneof(
        fc.constant(''),
        fc.array(word, { minLength: 1, maxLength: 4 }).map((w) => w.join(' ')),
      ),
      seed: fc.option(fc.integer({ min: 0, max: 4294967295 }), { nil: undefined }),
      steps: fc.integer({ min: 1, max: limits.maxSteps }),
      guidance: fc.integer({ min: 0, max: 60 }).map((g) => g / 2),
      sampler: fc.constantFrom(...SAMPLERS),
      width: fc.integer({ min: 8, max: 96 }).map((w) => w * 8),
      height: fc.integer({ min: 8, max: 96 }).map((h) => h * 8),
    });
    fc.assert(
      fc.property(request, (raw) => {
        fc.pre(raw.width * raw.height <= limits.maxPixels);
        const { seed, ...rest } = raw;
        const req: ImagineRequest = seed === undefined ? rest : { ...rest, seed };
        expect(ok(parseImagineText(formatImagineText(req), limits))).toEqual(req);
      }),
      { numRuns: 500 },
    );
  });
});

describe('sizeForAspect', () => {
  it('maps common ratios to the 64-pixel grid sizes SD 1.x models take, near the native area', () => {
    const cases: [string, number, number][] = [
      ['1:1', 512, 512],
      ['3:2', 576, 384],
      ['2:3', 384, 576],
      ['4:3', 576, 448],
      ['16:9', 704, 384],
      ['9:16', 384, 704],
      ['21:9', 768, 320],
      ['4:1', 1024, 256],
    ];
    for (const [ar, w, h] of cases) {
      const r = sizeForAspect(ar, limits);
      expect(r.ok && r.value, ar).toEqual({ width: w, height: h });
    }
  });

  it('keeps every ratio on the 64 grid, within the pixel budget, and near the requested ratio', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 40 }), (a, b) => {
        fc.pre(a / b <= 4 && b / a <= 4);
        const r = sizeForAspect(`${a}:${b}`, limits);
        if (!r.ok) throw r.error;
        const { width, height } = r.value;
        expect(width % ASPECT_GRID).toBe(0);
        expect(height % ASPECT_GRID).toBe(0);
        expect(width * height).toBeLessThanOrEqual(limits.maxPixels);
        // On a 64 grid near 512² the nearest sizes are ~12 % apart, so the best one is within 8 %.
        expect(Math.abs(width / height - a / b) / (a / b)).toBeLessThan(0.08);
      }),
    );
  });

  it('respects a smaller pixel budget', () => {
    const small = { ...limits, maxPixels: 256 * 256 };
    const r = sizeForAspect('16:9', small);
    expect(r.ok && r.value.width * r.value.height).toBeLessThanOrEqual(256 * 256);
  });
});

describe('parseImagineOptions (typed, Discord)', () => {
  it('validates like the text form', () => {
    expect(
      ok(
        parseImagineOptions(
          { prompt: 'a fox', seed: 3, steps: 10, guidance: 2.5, sampler: 'ddim', aspect: '2:3' },
          limits,
        ),
      ),
    ).toEqual({
      prompt: 'a fox',
      negative: '',
      seed: 3,
      steps: 10,
      guidance: 2.5,
      sampler: 'ddim',
      width: 384,
      height: 576,
    });
    expect(ok(parseImagineOptions({ prompt: 'a', width: 256, height: 320 }, limits))).toMatchObject({
      width: 256,
      height: 320,
    });
    expect(err(parseImagineOptions({ prompt: 'a', width: 256 }, limits)).message).toContain(
      'both width and height',
    );
    expect(err(parseImagineOptions({ prompt: 'a', seed: -5 }, limits)).message).toContain('0 to 4294967295');
    expect(
      err(parseImagineOptions({ prompt: 'a', aspect: '1:1', size: '512x512' }, limits)).message,
    ).toContain('either');
  });

  it('keeps flag-like text in a typed prompt verbatim (no flag parsing)', () => {
    expect(ok(parseImagineOptions({ prompt: 'a --seed 5 poster' }, limits)).prompt).toBe('a --seed 5 poster');
  });
});
