import { crc32, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { GeneratorKind, SamplerName } from '../core/samplers.ts';
import type { RgbImage } from './engine.ts';

/**
 * PNG output with AUTOMATIC1111-style generation parameters in a `parameters` text chunk, which
 * A1111's "PNG Info", ComfyUI, Civitai and others read back.
 */

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A1111's sampler names for ours; A1111 has no PNDM sampler, so it keeps diffusers' name. */
export const A1111_SAMPLER_NAMES: Readonly<Record<SamplerName, string>> = {
  pndm: 'PNDM',
  ddim: 'DDIM',
  euler: 'Euler',
  euler_a: 'Euler a',
  dpmpp_2m: 'DPM++ 2M',
  dpmpp_2m_karras: 'DPM++ 2M Karras',
  lcm: 'LCM',
};

export interface ImageParameters {
  readonly prompt: string;
  /** Empty: no "Negative prompt:" line. */
  readonly negative: string;
  readonly steps: number;
  readonly sampler: SamplerName;
  readonly guidance: number;
  readonly seed: number;
  readonly width: number;
  readonly height: number;
  /** Model name; omitted when empty. */
  readonly model: string;
  /** Revision of the model's files (A1111's `Model hash`); omitted when absent. */
  readonly modelHash?: string;
  readonly generator: GeneratorKind;
  /** Image-to-image's strength, A1111's "Denoising strength"; absent for text-to-image. */
  readonly strength?: number;
  /** Image-to-image: where the starting picture came from (written as "Init image"); absent for text-to-image. */
  readonly initImage?: string;
}

/** A1111's `quote`: values with a comma, newline or colon are JSON-quoted so the line parses back. */
function quote(value: string): string {
  if (!value.includes(',') && !value.includes('\n') && !value.includes(':')) return value;
  return JSON.stringify(value);
}

/**
 * `prompt\nNegative prompt: …\nSteps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: …, RNG: CPU`,
 * as A1111's `create_infotext` writes it. Like A1111, RNG is omitted for the GPU (CUDA) generator, which
 * is what a missing RNG field means when A1111 reads the text back.
 */
export function formatParameters(p: ImageParameters): string {
  const fields: [string, string][] = [
    ['Steps', String(p.steps)],
    ['Sampler', A1111_SAMPLER_NAMES[p.sampler]],
    ['CFG scale', String(p.guidance)],
    ['Seed', String(p.seed)],
    ['Size', `${p.width}x${p.height}`],
  ];
  if (p.modelHash !== undefined && p.modelHash !== '') fields.push(['Model hash', p.modelHash]);
  if (p.model !== '') fields.push(['Model', p.model]);
  if (p.strength !== undefined) fields.push(['Denoising strength', String(p.strength)]);
  if (p.initImage !== undefined && p.initImage !== '') fields.push(['Init image', p.initImage]);
  if (p.generator === 'cpu') fields.push(['RNG', 'CPU']);
  const line = fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ');
  const negative = p.negative === '' ? '' : `\nNegative prompt: ${p.negative}`;
  return `${p.prompt}${negative}\n${line}`.trim();
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

/**
 * A tEXt chunk when the text is Latin-1 (what PIL writes), else an uncompressed iTXt chunk (UTF-8),
 * as PIL's `PngInfo.add_text` decides.
 */
export function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || keyword.startsWith(' ') || keyword.endsWith(' ')) {
    throw new RangeError(`invalid PNG text keyword "${keyword}"`);
  }
  const key = Buffer.from(keyword, 'latin1');
  if (isLatin1(text))
    return chunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0, UTF-8 text.
  return chunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** Inserts chunks right after IHDR (before any image data, where readers look first). */
export function insertChunksAfterIhdr(png: Buffer, chunks: readonly Buffer[]): Buffer {
  if (
    png.length < 33 ||
    !png.subarray(0, 8).equals(PNG_SIGNATURE) ||
    png.toString('latin1', 12, 16) !== 'IHDR'
  ) {
    throw new Error('not a PNG (missing signature or IHDR)');
  }
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** Encodes RGB pixels as PNG (sharp), with an optional A1111 `parameters` text chunk. */
export async function encodePng(image: RgbImage, parameters?: string): Promise<Buffer> {
  const png = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
  if (parameters === undefined) return png;
  return insertChunksAfterIhdr(png, [textChunk('parameters', parameters)]);
}

/**
 * Every tEXt / iTXt / zTXt entry of a PNG, keyword → text. Throws on a bad signature or a chunk
 * whose CRC does not match.
 */
export function readPngText(png: Buffer): Record<string, string> {
  if (!png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG (bad signature)');
  const out: Record<string, string> = {};
  let pos = 8;
  while (pos + 12 <= png.length) {
    const length = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    const end = pos + 8 + length;
    if (end + 4 > png.length) throw new Error(`truncated PNG chunk ${type}`);
    const data = png.subarray(pos + 8, end);
    if (crc32(png.subarray(pos + 4, end)) !== png.readUInt32BE(end))
      throw new Error(`bad CRC in PNG chunk ${type}`);
    if (type === 'tEXt') {
      const nul = data.indexOf(0);
      out[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    } else if (type === 'zTXt') {
      const nul = data.indexOf(0);
      out[data.toString('latin1', 0, nul)] = inflateSync(data.subarray(nul + 2)).toString('latin1');
    } else if (type === 'iTXt') {
      const nul = data.indexOf(0);
      const keyword = data.toString('latin1', 0, nul);
      const compressed = data[nul + 1] === 1;
      const langEnd = data.indexOf(0, nul + 3);
      const tkeyEnd = data.indexOf(0, langEnd + 1);
      const body = data.subarray(tkeyEnd + 1);
      out[keyword] = (compressed ? inflateSync(body) : body).toString('utf8');
    }
    if (type === 'IEND') break;
    pos = end + 4;
  }
  return out;
}
