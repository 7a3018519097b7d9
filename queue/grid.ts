import sharp from 'sharp';
import type { RgbImage } from '../models/engine.ts';
import { encodePng, insertChunksAfterIhdr, textChunk } from '../models/png.ts';

/**
 * Grid layout by image count: 4 images make a 2×2 grid (A1111 style); 1–3 images sit in one row
 * (1×1, 2×1, 3×1), so no cell is ever empty. Cells touch (no gap), so image k can be cropped back
 * out of the grid at `cellOrigin(layout, k)`.
 */
export interface GridLayout {
  readonly count: number;
  readonly cols: number;
  readonly rows: number;
  readonly cellWidth: number;
  readonly cellHeight: number;
  readonly width: number;
  readonly height: number;
}

export function gridLayout(count: number, cellWidth: number, cellHeight: number): GridLayout {
  if (!Number.isInteger(count) || count < 1 || count > 4) {
    throw new RangeError(`a grid holds 1 to 4 images, got ${count}`);
  }
  const cols = count === 4 ? 2 : count;
  const rows = count === 4 ? 2 : 1;
  return { count, cols, rows, cellWidth, cellHeight, width: cols * cellWidth, height: rows * cellHeight };
}

export function cellOrigin(layout: GridLayout, index: number): { left: number; top: number } {
  return {
    left: (index % layout.cols) * layout.cellWidth,
    top: Math.floor(index / layout.cols) * layout.cellHeight,
  };
}

function rawBuffer(image: RgbImage): Buffer {
  if (image.data.length !== image.width * image.height * 3) {
    throw new RangeError(
      `RGB buffer of ${image.data.length} bytes does not match ${image.width}×${image.height}`,
    );
  }
  return Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
}

/**
 * The grid PNG of a batch. All images must share one size. `parameters` (A1111 text of image 0, as
 * A1111 writes on its grids) goes into a `parameters` text chunk.
 */
export async function composeGrid(images: readonly RgbImage[], parameters?: string): Promise<Buffer> {
  const first = images[0];
  if (first === undefined) throw new RangeError('a grid needs at least one image');
  for (const image of images) {
    if (image.width !== first.width || image.height !== first.height) {
      throw new RangeError('all images of a grid must have the same size');
    }
  }
  const layout = gridLayout(images.length, first.width, first.height);
  if (images.length === 1) return encodePng(first, parameters);
  const png = await sharp({
    create: { width: layout.width, height: layout.height, channels: 3, background: { r: 0, g: 0, b: 0 } },
  })
    .composite(
      images.map((image, index) => ({
        input: rawBuffer(image),
        raw: { width: image.width, height: image.height, channels: 3 as const },
        ...cellOrigin(layout, index),
      })),
    )
    .png({ compressionLevel: 6 })
    .toBuffer();
  return parameters === undefined ? png : insertChunksAfterIhdr(png, [textChunk('parameters', parameters)]);
}
