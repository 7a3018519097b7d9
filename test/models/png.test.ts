import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  encodePng,
  formatParameters,
  type ImageParameters,
  readPngText,
  textChunk,
} from '../../models/png.ts';

const base: ImageParameters = {
  prompt: 'Labrador in the style of Vermeer',
  negative: '',
  steps: 25,
  sampler: 'euler_a',
  guidance: 7.5,
  seed: 42,
  width: 512,
  height: 512,
  model: 'stable-diffusion-v1-5',
  generator: 'cpu',
};

function image(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
  return { width, height, data };
}

describe('formatParameters (AUTOMATIC1111 infotext)', () => {
  it('writes the prompt, then the settings line', () => {
    expect(formatParameters(base)).toBe(
      'Labrador in the style of Vermeer\n' +
        'Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: stable-diffusion-v1-5, RNG: CPU',
    );
  });

  it('adds the negative prompt line and A1111 sampler names', () => {
    const text = formatParameters({
      ...base,
      negative: 'blurry, low quality',
      sampler: 'dpmpp_2m_karras',
      guidance: 7,
    });
    expect(text).toBe(
      'Labrador in the style of Vermeer\nNegative prompt: blurry, low quality\n' +
        'Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model: stable-diffusion-v1-5, RNG: CPU',
    );
  });

  it('quotes values with commas or colons, and omits RNG for the GPU generator like A1111', () => {
    const text = formatParameters({
      ...base,
      model: 'Demo model (procedural, not SD)',
      generator: 'cuda',
      seed: 4294967295,
    });
    expect(text.split('\n')[1]).toBe(
      'Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 4294967295, Size: 512x512, Model: "Demo model (procedural, not SD)"',
    );
  });
});

describe('encodePng / readPngText', () => {
  it('encodes RGB pixels losslessly with a parameters tEXt chunk', async () => {
    const img = image(24, 16);
    const text = formatParameters(base);
    const png = await encodePng(img, text);
    expect(readPngText(png)).toEqual({ parameters: text });
    const decoded = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(decoded.info).toMatchObject({ width: 24, height: 16, channels: 3 });
    expect(Buffer.from(img.data).equals(decoded.data)).toBe(true);
    // tEXt sits before the image data, with a correct CRC.
    const at = png.indexOf('tEXt');
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(png.indexOf('IDAT'));
    const length = png.readUInt32BE(at - 4);
    expect(png.readUInt32BE(at + 4 + length)).toBe(crc32(png.subarray(at, at + 4 + length)));
  });

  it('uses iTXt (UTF-8) for text outside Latin-1, and tEXt for Latin-1 accents', async () => {
    const emoji = formatParameters({ ...base, prompt: '一只猫 🐱, café' });
    const png = await encodePng(image(8, 8), emoji);
    expect(png.indexOf('iTXt')).toBeGreaterThan(0);
    expect(png.indexOf('tEXt')).toBe(-1);
    expect(readPngText(png).parameters).toBe(emoji);

    const latin = formatParameters({ ...base, prompt: 'crème brûlée' });
    const png2 = await encodePng(image(8, 8), latin);
    expect(png2.indexOf('tEXt')).toBeGreaterThan(0);
    expect(readPngText(png2).parameters).toBe(latin);
  });

  it('leaves the PNG alone without parameters', async () => {
    expect(readPngText(await encodePng(image(4, 4)))).toEqual({});
  });

  it('rejects a corrupted chunk when reading', async () => {
    const png = await encodePng(image(4, 4), 'hello');
    const at = png.indexOf('tEXt');
    png[at + 6] = png[at + 6]! ^ 0xff;
    expect(() => readPngText(png)).toThrow(/CRC/);
  });

  it('builds chunks by the spec: length, type, data, CRC over type and data', () => {
    const chunk = textChunk('parameters', 'abc');
    expect(chunk.readUInt32BE(0)).toBe('parameters'.length + 1 + 3);
    expect(chunk.toString('latin1', 4, 8)).toBe('tEXt');
    expect(chunk.toString('latin1', 8, chunk.length - 4)).toBe('parameters\0abc');
    expect(chunk.readUInt32BE(chunk.length - 4)).toBe(crc32(chunk.subarray(4, chunk.length - 4)));
    expect(() => textChunk('', 'x')).toThrow(RangeError);
  });
});
