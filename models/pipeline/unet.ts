import type { Tensor } from 'onnxruntime-node';
import { ErrorCode, UserError } from '../../core/errors.ts';
import type { UnetModel } from '../loader.ts';
import { floatTensor, numericTensor } from '../tensors.ts';
import type { UnetConstantInput } from './parts.ts';
import type { SessionRunner } from './session.ts';

/** Feeding the UNet: constant inputs made into tensors once, the export's fixed batch, its size limits. */

const f = Math.fround;

/** One UNet call per step: `sample` holds every batch row; returns the noise prediction of each row. */
export type UnetRun = (sample: Float32Array, t: number, step: number) => Promise<Float32Array>;

/** diffusers' `get_guidance_scale_embedding(w, embedding_dim)` for one w, in float32. */
export function guidanceScaleEmbedding(guidance: number, dim: number): Float32Array {
  const w = f(f(guidance - 1) * 1000);
  const half = Math.floor(dim / 2);
  const out = new Float32Array(dim);
  const step = f(f(Math.log(10000)) / (half - 1));
  for (let i = 0; i < half; i++) {
    const freq = f(Math.exp(f(i * -step)));
    const arg = f(w * freq);
    out[i] = Math.sin(arg);
    out[half + i] = Math.cos(arg);
  }
  return out;
}

/** LCM-distilled UNets' timestep_cond input: the guidance embedding, the same in every row. */
export function timestepCondInput(unet: UnetModel, guidance: number, rows: number): UnetConstantInput | null {
  const spec = unet.timestepCond;
  if (spec === null) return null;
  const dim = typeof spec.shape[1] === 'number' ? spec.shape[1] : 256;
  const emb = guidanceScaleEmbedding(guidance, dim);
  const data = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) data.set(emb, r * dim);
  return { spec, data, rowShape: [dim] };
}

/**
 * Prepares the UNet calls of one batch: `rows` latent rows, split into the export's fixed batch when it
 * has one (padding the last chunk by repeating its first row). The constant inputs (text embeddings,
 * guidance embedding) become tensors once here, not at every step (a float16 conversion each step adds up).
 */
export function prepareUnet(
  unet: UnetModel,
  runner: SessionRunner,
  constants: readonly UnetConstantInput[],
  rows: number,
  latentShape: { readonly channels: number; readonly height: number; readonly width: number },
): UnetRun {
  const { channels, height: lh, width: lw } = latentShape;
  const limit = unet.fixedBatch ?? rows;
  const perRow = channels * lh * lw;
  /** Rows start..start+n of `src` (row size `size`), padded to `limit` rows. */
  const rowsOf = (src: Float32Array, size: number, start: number, n: number): Float32Array => {
    if (start === 0 && n === limit && src.length === limit * size) return src;
    const buf = new Float32Array(limit * size);
    buf.set(src.subarray(start * size, (start + n) * size));
    for (let r = n; r < limit; r++) buf.set(src.subarray(start * size, (start + 1) * size), r * size);
    return buf;
  };
  const ts = unet.timestep;
  const tsDims =
    ts.shape.length === 0 ? [] : [typeof ts.shape[0] === 'number' && ts.shape[0] > 0 ? ts.shape[0] : limit];
  const tsCount = tsDims.length === 0 ? 1 : tsDims[0]!;
  const chunks: { start: number; n: number; constant: Record<string, Tensor> }[] = [];
  for (let start = 0; start < rows; start += limit) {
    const n = Math.min(limit, rows - start);
    const constant: Record<string, Tensor> = {};
    for (const input of constants) {
      const size = input.data.length / rows;
      constant[input.spec.name] = floatTensor(input.spec.type, rowsOf(input.data, size, start, n), [
        limit,
        ...input.rowShape,
      ]);
    }
    chunks.push({ start, n, constant });
  }
  return async (sample, t, step) => {
    const timestep = numericTensor(ts.type, new Float64Array(tsCount).fill(t), tsDims);
    const what = `UNet (step ${step + 1})`;
    if (chunks.length === 1 && chunks[0]!.n === limit) {
      const feeds = {
        ...chunks[0]!.constant,
        [unet.sample.name]: floatTensor(unet.sample.type, sample, [limit, channels, lh, lw]),
        [ts.name]: timestep,
      };
      return runner.run(unet.session, feeds, unet.output, what);
    }
    const out = new Float32Array(rows * perRow);
    for (const c of chunks) {
      const feeds = {
        ...c.constant,
        [unet.sample.name]: floatTensor(unet.sample.type, rowsOf(sample, perRow, c.start, c.n), [
          limit,
          channels,
          lh,
          lw,
        ]),
        [ts.name]: timestep,
      };
      const res = await runner.run(unet.session, feeds, unet.output, what);
      out.set(res.subarray(0, c.n * perRow), c.start * perRow);
    }
    return out;
  };
}

/** Pixel multiple every SD 1.x UNet export takes: the latent (1/8) is halved three times. */
const SAFE_SIZE_MULTIPLE = 64;

/**
 * Most ONNX UNet exports upsample by a fixed factor of 2 (torch.onnx traces `interpolate(scale_factor=2)`),
 * so a latent that doesn't halve evenly fails inside the UNet on its first call. That is the request's
 * size, not a fault to retry: say what works.
 */
export function unsupportedSizeError(error: unknown, width: number, height: number): unknown {
  if (width % SAFE_SIZE_MULTIPLE === 0 && height % SAFE_SIZE_MULTIPLE === 0) return error;
  // Only a shape mismatch is the size's fault (e.g. "Non concat axis dimensions must match"); an
  // out-of-memory or a provider failure stays an internal, retryable error.
  const message =
    error instanceof Error ? `${error.message} ${String((error.cause as Error | undefined)?.message)}` : '';
  if (
    !/dimensions? must match|mismatched dimensions|shape mismatch|cannot broadcast|incompatible dimensions/iu.test(
      message,
    )
  ) {
    return error;
  }
  const round = (v: number) =>
    Math.max(SAFE_SIZE_MULTIPLE, Math.round(v / SAFE_SIZE_MULTIPLE) * SAFE_SIZE_MULTIPLE);
  return new UserError(
    ErrorCode.InvalidRequest,
    `This model can't make ${width}x${height}: its UNet needs a width and height that are multiples of ` +
      `${SAFE_SIZE_MULTIPLE} (for example ${round(width)}x${round(height)}).`,
    { cause: error },
  );
}
