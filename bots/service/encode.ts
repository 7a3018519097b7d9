import sharp from 'sharp';
import type { Attachment } from '../surface.ts';

/**
 * Keeps an image under a surface's upload limit: the PNG as it is when it fits (it carries the
 * A1111 `parameters` chunk), else lossless-looking WebP, else JPEG at falling quality, else JPEG
 * downscaled. Pure in, buffer out.
 */
export async function fitUpload(png: Buffer, baseName: string, maxBytes: number): Promise<Attachment> {
  if (png.length <= maxBytes) return { name: `${baseName}.png`, contentType: 'image/png', data: png };
  const webp = await sharp(png).webp({ quality: 92 }).toBuffer();
  if (webp.length <= maxBytes) return { name: `${baseName}.webp`, contentType: 'image/webp', data: webp };
  for (const quality of [90, 80, 70, 60]) {
    const jpeg = await sharp(png).flatten().jpeg({ quality, mozjpeg: true }).toBuffer();
    if (jpeg.length <= maxBytes) return { name: `${baseName}.jpg`, contentType: 'image/jpeg', data: jpeg };
  }
  // Still too big (only for absurd limits): halve the size until it fits.
  const meta = await sharp(png).metadata();
  let width = meta.width ?? 1024;
  for (;;) {
    width = Math.max(1, Math.floor(width / 2));
    const jpeg = await sharp(png).flatten().resize({ width }).jpeg({ quality: 70 }).toBuffer();
    if (jpeg.length <= maxBytes || width === 1) {
      return { name: `${baseName}.jpg`, contentType: 'image/jpeg', data: jpeg };
    }
  }
}
