import sharp from 'sharp';
import type { RgbImage } from './engine.ts';
import type { ClipImagePreprocess } from './loader.ts';

const f = Math.fround;

/** numpy/torch `round`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The VAE's planar [3, H, W] output in [-1, 1] → interleaved 8-bit RGB, the way diffusers' postprocess
 * does it in float32: `(x * 0.5 + 0.5).clamp(0, 1)`, then `(x * 255).round()` as the reference images were made.
 */
export function vaeOutputToRgb(
  planar: Float32Array,
  offset: number,
  width: number,
  height: number,
): Uint8Array {
  const plane = width * height;
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) {
      let x = f(planar[base + p]! * 0.5 + 0.5);
      if (!(x > 0))
        x = 0; // also maps NaN to 0, as clamp-then-uint8 would not be defined anyway
      else if (x > 1) x = 1;
      out[p * 3 + c] = roundHalfEven(f(x * 255));
    }
  }
  return out;
}

/**
 * The well-known SD 1.x latent→RGB linear approximation (rows: latent channels 0-3; columns: R, G, B),
 * the "approx cheap" preview of AUTOMATIC1111's web UI. Output is in [-1, 1] image space.
 */
export const SD1_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/**
 * A preview of image `index` at latent resolution. `noiseScale` divides the latents first (for sigma-based
 * samplers the latents carry sigma-scaled noise; 1/sqrt(sigma^2 + 1) brings them back to unit scale).
 */
export function latentPreview(
  latents: Float32Array,
  index: number,
  channels: number,
  latentWidth: number,
  latentHeight: number,
  noiseScale = 1,
): RgbImage {
  const plane = latentWidth * latentHeight;
  const base = index * channels * plane;
  const data = new Uint8Array(plane * 3);
  const used = Math.min(channels, SD1_LATENT_RGB_FACTORS.length);
  for (let p = 0; p < plane; p++) {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let c = 0; c < used; c++) {
      const v = latents[base + c * plane + p]! * noiseScale;
      const k = SD1_LATENT_RGB_FACTORS[c]!;
      r += v * k[0];
      g += v * k[1];
      b += v * k[2];
    }
    data[p * 3] = toByte(r);
    data[p * 3 + 1] = toByte(g);
    data[p * 3 + 2] = toByte(b);
  }
  return { width: latentWidth, height: latentHeight, data };
}

function toByte(v: number): number {
  const x = (v + 1) * 127.5;
  return x <= 0 ? 0 : x >= 255 ? 255 : Math.round(x);
}

/**
 * transformers' CLIPImageProcessor: resize the shortest edge to `shortestEdge` (bicubic), centre-crop,
 * rescale to [0, 1] and normalise per channel. Returns planar [3, cropH, cropW] float32.
 */
export async function clipPixelValues(
  image: RgbImage,
  pre: ClipImagePreprocess,
): Promise<{ readonly pixels: Float32Array; readonly width: number; readonly height: number }> {
  const { width, height } = image;
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newShort = pre.shortestEdge;
  const newLong = Math.trunc((newShort * long) / short);
  const rw = width <= height ? newShort : newLong;
  const rh = width <= height ? newLong : newShort;
  const cropW = Math.min(pre.cropWidth, rw);
  const cropH = Math.min(pre.cropHeight, rh);
  const left = Math.floor((rw - cropW) / 2);
  const top = Math.floor((rh - cropH) / 2);
  const pixels = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width, height, channels: 3 },
  })
    .resize(rw, rh, { kernel: 'cubic', fit: 'fill' })
    .extract({ left, top, width: cropW, height: cropH })
    .raw()
    .toBuffer();
  const plane = cropW * cropH;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const mean = pre.mean[c]!;
    const std = pre.std[c]!;
    for (let p = 0; p < plane; p++)
      out[c * plane + p] = (pixels[p * 3 + c]! * pre.rescaleFactor - mean) / std;
  }
  return { pixels: out, width: cropW, height: cropH };
}
