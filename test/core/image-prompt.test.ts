import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, requestLimitsFrom } from '../../core/config.ts';
import {
  checkImageBytes,
  DEFAULT_IMAGE_STRENGTH,
  MAX_INIT_IMAGE_BYTES,
  parseStrength,
  sniffImageType,
} from '../../core/image-prompt.ts';
import { choosesSize, parseImagineOptions, parseImagineText } from '../../core/request.ts';
import { MAX_INIT_IMAGE_BYTES as ENGINE_MAX_BYTES } from '../../models/init-image.ts';

const config = parseConfig({});
if (!config.ok) throw new Error('default config must be valid');
const limits = requestLimitsFrom(config.config);
const PNG = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-a.png'));

describe('sniffImageType', () => {
  it('knows PNG, JPEG and WebP by their first bytes, and nothing else', () => {
    expect(sniffImageType(PNG)).toBe('image/png');
    expect(sniffImageType(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]))).toBe('image/jpeg');
    const webp = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WEBPVP8 ')]);
    expect(sniffImageType(webp)).toBe('image/webp');
    expect(sniffImageType(Buffer.from('GIF89a……'))).toBeUndefined();
    expect(sniffImageType(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeUndefined();
    expect(sniffImageType(Buffer.from('RIFF\0\0\0\0WAVEfmt '))).toBeUndefined();
    expect(sniffImageType(PNG.subarray(0, 7))).toBeUndefined();
  });

  it('checkImageBytes names the file and what is accepted', () => {
    expect(checkImageBytes(PNG, 'The attachment')).toBe('image/png');
    expect(() => checkImageBytes(Buffer.from('hello'), 'The attachment')).toThrow(
      'The attachment is not a PNG, JPEG or WebP picture; only those are accepted as image prompts.',
    );
    expect(() => checkImageBytes(new Uint8Array(0), 'The attachment')).toThrow('The attachment is empty');
    expect(() => checkImageBytes(new Uint8Array(MAX_INIT_IMAGE_BYTES + 1), 'The attachment')).toThrow(
      `The attachment is ${MAX_INIT_IMAGE_BYTES + 1} bytes; at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB)`,
    );
  });

  it('is the limit the engine applies', () => {
    expect(ENGINE_MAX_BYTES).toBe(MAX_INIT_IMAGE_BYTES);
  });
});

describe('--strength', () => {
  it('takes numbers above 0 and at most 1', () => {
    expect(parseStrength('0.6')).toBe(0.6);
    expect(parseStrength('.35')).toBe(0.35);
    expect(parseStrength('1')).toBe(1);
    for (const bad of ['0', '0.0', '1.01', '2', '-0.5', 'strong', '', '1e-1', 'NaN']) {
      const result = parseStrength(bad);
      expect(result, bad).toBeInstanceOf(Error);
      expect((result as Error).message).toBe(
        `Strength must be a number above 0 and at most 1 (how much of the image is repainted; default ${DEFAULT_IMAGE_STRENGTH}), got \`${bad}\`.`,
      );
    }
  });

  it('is a flag of the text form and a typed option, kept only when given', () => {
    const text = parseImagineText('a cat --strength 0.45 --seed 3', limits);
    expect(text.ok && text.value.strength).toBe(0.45);
    const typed = parseImagineOptions({ prompt: 'a cat', strength: 0.3 }, limits);
    expect(typed.ok && typed.value.strength).toBe(0.3);
    const none = parseImagineText('a cat', limits);
    expect(none.ok && 'strength' in none.value).toBe(false);
    const twice = parseImagineText('a cat --strength 0.4 --strength 0.5', limits);
    expect(twice.ok ? '' : twice.error.message).toContain('`--strength` is given twice');
    const bad = parseImagineOptions({ prompt: 'a cat', strength: 1.5 }, limits);
    expect(bad.ok ? '' : bad.error.message).toContain('Strength must be a number above 0 and at most 1');
  });

  it('tells whether the user chose the size, so an image prompt keeps it', () => {
    expect(choosesSize({ text: 'a cat --ar 3:2' })).toBe(true);
    expect(choosesSize({ text: 'a cat --size 512x512' })).toBe(true);
    expect(choosesSize({ options: { prompt: 'a cat', size: '512x512' } })).toBe(true);
    expect(choosesSize({ options: { prompt: 'a cat', width: 512, height: 512 } })).toBe(true);
    expect(choosesSize({ text: 'a cat "--ar 3:2" --seed 4' })).toBe(false);
    expect(choosesSize({ options: { prompt: 'a cat', seed: 4 } })).toBe(false);
  });
});
