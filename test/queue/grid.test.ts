import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { CodedError, ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import type { GenerateRequest } from '../../models/engine.ts';
import { readPngText } from '../../models/png.ts';
import { cellOrigin, composeGrid, gridLayout } from '../../queue/grid.ts';
import {
  createNoopEngine,
  failFirstCalls,
  failImpossible,
  noopBaseColour,
  noopImage,
} from '../../queue/noop-engine.ts';

const request = (seeds: number[], steps = 3): GenerateRequest => ({
  prompts: seeds.map((s) => `prompt ${s}`),
  negative: '',
  seeds,
  scheduler: 'euler',
  steps,
  guidance: 7,
  width: 48,
  height: 32,
});

async function pixel(png: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * 3;
  return [data[at] ?? -1, data[at + 1] ?? -1, data[at + 2] ?? -1];
}

describe('grid', () => {
  it.each([
    [1, 1, 1],
    [2, 2, 1],
    [3, 3, 1],
    [4, 2, 2],
  ])('%i images → %i×%i cells, each image in its cell', async (count, cols, rows) => {
    const seeds = Array.from({ length: count }, (_, k) => 500 + k);
    const images = seeds.map((seed) => noopImage(seed, 48, 32));
    const layout = gridLayout(count, 48, 32);
    expect([layout.cols, layout.rows, layout.width, layout.height]).toEqual([
      cols,
      rows,
      cols * 48,
      rows * 32,
    ]);
    const png = await composeGrid(images, 'params text');
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([cols * 48, rows * 32]);
    expect(readPngText(png)).toEqual({ parameters: 'params text' });
    for (const [k, seed] of seeds.entries()) {
      const { left, top } = cellOrigin(layout, k);
      expect(await pixel(png, left, top)).toEqual([...noopBaseColour(seed)]);
      // The far corner of the cell too (red rises with x, green with y).
      const [r, g, b] = noopBaseColour(seed);
      expect(await pixel(png, left + 47, top + 31)).toEqual([(r + 47) & 255, (g + 31) & 255, b]);
    }
  });

  it('rejects an empty batch, more than 4 images, mixed sizes and short buffers', async () => {
    await expect(composeGrid([])).rejects.toThrow(RangeError);
    expect(() => gridLayout(5, 8, 8)).toThrow(/1 to 4/u);
    await expect(composeGrid([noopImage(1, 8, 8), noopImage(2, 16, 8)])).rejects.toThrow(/same size/u);
    await expect(
      composeGrid([{ width: 8, height: 8, data: new Uint8Array(10) }, noopImage(1, 8, 8)]),
    ).rejects.toThrow(/does not match/u);
  });
});

describe('noop engine', () => {
  it('is deterministic per seed and reports every step', async () => {
    const engine = createNoopEngine();
    const steps: number[] = [];
    const result = await engine.generate(request([1, 2]), { onStep: (p) => void steps.push(p.step) });
    const again = await engine.generate(request([2]));
    expect(steps).toEqual([1, 2, 3]);
    expect(result.images.map((i) => [i.seed, i.prompt, i.width, i.height])).toEqual([
      [1, 'prompt 1', 48, 32],
      [2, 'prompt 2', 48, 32],
    ]);
    expect(Buffer.from(again.images[0]?.data ?? [])).toEqual(Buffer.from(result.images[1]?.data ?? []));
    expect(Buffer.from(result.images[0]?.data ?? [])).not.toEqual(Buffer.from(result.images[1]?.data ?? []));
    expect(result.timings.stepMs).toHaveLength(3);
    expect(engine.calls).toBe(2);
    await engine.close();
    await expect(engine.generate(request([1]))).rejects.toThrow(/closed/u);
  });

  it('stops at the next step when its signal aborts', async () => {
    const engine = createNoopEngine({ stepDelayMs: 5 });
    const controller = new AbortController();
    const error = await engine
      .generate(request([1], 50), {
        signal: controller.signal,
        onStep: (p) => void (p.step === 2 && controller.abort()),
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect(error).toMatchObject({ code: ErrorCode.Cancelled });
    expect(engine.aborted).toBe(1);
  });

  it('injects transient and permanent failures', async () => {
    const flaky = createNoopEngine({ failWith: failFirstCalls(1) });
    await expect(flaky.generate(request([1]))).rejects.toBeInstanceOf(InternalError);
    await expect(flaky.generate(request([1]))).resolves.toBeDefined();
    const impossible = createNoopEngine({ failWith: failImpossible(), failAtStep: 2 });
    const steps: number[] = [];
    await expect(
      impossible.generate(request([1]), { onStep: (p) => void steps.push(p.step) }),
    ).rejects.toBeInstanceOf(UserError);
    expect(steps).toEqual([1, 2]);
  });
});
