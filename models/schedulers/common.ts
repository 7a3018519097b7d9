import { ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import type { NoiseGenerator } from '../types.ts';
import type { ConfigReader } from './config.ts';
import { f32, torchLinspaceF32 } from './numeric.ts';

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number];
export const TIMESTEP_SPACINGS = ['linspace', 'leading', 'trailing'] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

export interface BetaDefaults {
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly betaSchedule: BetaSchedule;
}

/** diffusers' `__init__` defaults shared by PNDM, DDIM, Euler, Euler ancestral and DPM-Solver. */
export const DEFAULT_BETAS: BetaDefaults = { betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear' };

export interface NoiseSchedule {
  readonly numTrainTimesteps: number;
  /** float32, like the torch tensor. */
  readonly alphasCumprod: Float32Array;
}

/**
 * Betas and `alphas_cumprod` exactly as the scheduler constructors build them: float32 torch tensors,
 * with `torch.cumprod` accumulating in float64 (ATen's CPU accumulate type for float) and storing float32.
 * `zeroSnrPinsLast`: Euler, Euler ancestral and DPM-Solver then set `alphas_cumprod[-1] = 2**-24`.
 */
export function readNoiseSchedule(
  cfg: ConfigReader,
  defaults: BetaDefaults,
  options: { readonly rescaleKey: boolean; readonly zeroSnrPinsLast: boolean },
): NoiseSchedule {
  const n = cfg.integer('num_train_timesteps', 1000);
  if (n < 2) throw cfg.invalid('num_train_timesteps', n, 'at least 2');
  const trained = cfg.numberArray('trained_betas');
  let betas: Float32Array;
  if (trained !== null) {
    if (trained.length !== n) throw cfg.invalid('trained_betas', trained.length, `${n} values`);
    betas = Float32Array.from(trained);
  } else {
    const schedule = cfg.choice('beta_schedule', BETA_SCHEDULES, defaults.betaSchedule);
    const start = cfg.number('beta_start', defaults.betaStart);
    const end = cfg.number('beta_end', defaults.betaEnd);
    if (schedule === 'linear') betas = torchLinspaceF32(start, end, n);
    else if (schedule === 'scaled_linear') {
      betas = torchLinspaceF32(Math.sqrt(start), Math.sqrt(end), n);
      for (let i = 0; i < n; i++) betas[i] = f32(betas[i]! * betas[i]!);
    } else betas = betasForAlphaBarCosine(n);
  }
  const rescale = options.rescaleKey && cfg.boolean('rescale_betas_zero_snr', false);
  if (rescale) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprodOneMinus(betas);
  if (rescale && options.zeroSnrPinsLast) alphasCumprod[n - 1] = 2 ** -24;
  return { numTrainTimesteps: n, alphasCumprod };
}

/** `torch.cumprod(1.0 - betas)`: float32 `1 - beta`, float64 running product, float32 outputs. */
function cumprodOneMinus(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/** `betas_for_alpha_bar(n)` with the cosine transform (`squaredcos_cap_v2`), computed in Python floats. */
function betasForAlphaBarCosine(n: number): Float32Array {
  const alphaBar = (t: number): number => {
    const c = Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2);
    return c * c;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
  return out;
}

/** `rescale_zero_terminal_snr(betas)` (Lin et al. 2023), in float32 tensor arithmetic. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtBar = cumprodOneMinus(betas);
  for (let i = 0; i < n; i++) sqrtBar[i] = f32(Math.sqrt(sqrtBar[i]!));
  const first = sqrtBar[0]!;
  const last = sqrtBar[n - 1]!;
  const scale = f32(first / f32(first - last));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtBar[i]! - last) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i]! / bar[i - 1]!));
  return out;
}

/** float32 `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`. */
export function sigmaTable(alphasCumprod: Float32Array): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = Math.sqrt(f32(f32(1 - a) / a));
  }
  return out;
}

export function checkSteps(scheduler: string, steps: number): void {
  if (!Number.isSafeInteger(steps) || steps < 1) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      `Steps must be a whole number of at least 1 (got ${steps}).`,
      {
        context: { scheduler, steps },
      },
    );
  }
}

export function notReady(scheduler: string): InternalError {
  return new InternalError(ErrorCode.Internal, `${scheduler}: call setTimesteps() before stepping`, {
    context: { scheduler },
  });
}

/** diffusers would raise an IndexError here (e.g. 1000 steps with steps_offset 1 reach t = 1000). */
export function timestepOutOfRange(
  scheduler: string,
  timestep: number,
  numTrainTimesteps: number,
): InternalError {
  return new InternalError(
    ErrorCode.Internal,
    `${scheduler}: timestep ${timestep} is outside the training schedule 0..${numTrainTimesteps - 1}`,
    { context: { scheduler, timestep } },
  );
}

/**
 * `index_for_timestep`: the position of `timestep` in the schedule; when it occurs twice the second one
 * (so that image-to-image starting mid-schedule doesn't skip a sigma).
 */
export function indexForTimestep(
  scheduler: string,
  timesteps: readonly number[],
  timestep: number,
  whenMissing: 'throw' | 'last',
): number {
  let first = -1;
  for (let i = 0; i < timesteps.length; i++) {
    if (timesteps[i] === timestep) {
      if (first >= 0) return i;
      first = i;
    }
  }
  if (first >= 0) return first;
  if (whenMissing === 'last') return timesteps.length - 1;
  throw new InternalError(ErrorCode.Internal, `${scheduler}: timestep ${timestep} is not in the schedule`, {
    context: { scheduler, timestep },
  });
}

export function checkSameLength(scheduler: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) {
    throw new InternalError(
      ErrorCode.Internal,
      `${scheduler}: model output has ${a.length} values but the sample has ${b.length}`,
      { context: { scheduler } },
    );
  }
}

/**
 * diffusers' `randn_tensor(shape, generator=[g_0..g_B-1])`: image k's noise is `randn((1, ...))` from
 * generator k, so each generator supplies `total / B` values, in image order.
 */
export function drawNoise(
  scheduler: string,
  generators: readonly NoiseGenerator[],
  total: number,
  out: Float32Array,
): Float32Array {
  const batch = generators.length;
  if (batch === 0 || total % batch !== 0) {
    throw new InternalError(
      ErrorCode.Internal,
      `${scheduler}: needs one generator per image (got ${batch} for ${total} values)`,
      { context: { scheduler, generators: batch, values: total } },
    );
  }
  const per = total / batch;
  for (let k = 0; k < batch; k++) {
    const noise = generators[k]!.randn(per);
    if (noise.length !== per) {
      throw new InternalError(
        ErrorCode.Internal,
        `${scheduler}: generator ${k} returned ${noise.length} values`,
      );
    }
    out.set(noise, k * per);
  }
  return out;
}

/** Lazily (re)allocated scratch buffer, so per-step work allocates nothing once warm. */
export function scratch(buffer: Float32Array | null, length: number): Float32Array {
  return buffer !== null && buffer.length === length ? buffer : new Float32Array(length);
}

export interface Thresholding {
  readonly ratio: number;
  readonly maxValue: number;
}

/**
 * `_threshold_sample` (Imagen dynamic thresholding), in place: per image, s = quantile(|x|, ratio)
 * clamped to [1, maxValue]; x = clamp(x, -s, s) / s. `batch` images laid out image-major.
 */
export function thresholdSample(x: Float32Array, batch: number, t: Thresholding): void {
  const per = x.length / batch;
  const sorted = new Float32Array(per);
  const ranks = f32(f32(t.ratio) * (per - 1));
  const below = Math.trunc(ranks);
  const above = Math.ceil(ranks);
  const weight = f32(ranks - below);
  const maxValue = f32(t.maxValue);
  for (let k = 0; k < batch; k++) {
    const off = k * per;
    for (let i = 0; i < per; i++) sorted[i] = Math.abs(x[off + i]!);
    sorted.sort();
    const lo = sorted[below]!;
    const hi = sorted[above]!;
    // torch.lerp, which switches formula at weight 0.5 for accuracy.
    let s =
      Math.abs(weight) < 0.5
        ? f32(lo + f32(weight * f32(hi - lo)))
        : f32(hi - f32(f32(hi - lo) * f32(1 - weight)));
    s = Math.min(Math.max(s, 1), maxValue);
    for (let i = 0; i < per; i++) {
      const v = x[off + i]!;
      x[off + i] = f32(Math.min(Math.max(v, -s), s) / s);
    }
  }
}

/** `clamp(-range, range)` in place. */
export function clipSample(x: Float32Array, range: number): void {
  const r = f32(range);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v < -r) x[i] = -r;
    else if (v > r) x[i] = r;
  }
}

/**
 * DDPM's `add_noise` (PNDM, DDIM, LCM): `sqrt(ᾱ_t) * x + sqrt(1 - ᾱ_t) * noise` in float32, ᾱ looked up
 * by the timestep itself (these schedulers index by timestep, not by a step index).
 */
export function addNoiseByAlpha(
  scheduler: string,
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  timestep: number,
): Float32Array {
  if (original.length !== noise.length) {
    throw new InternalError(ErrorCode.Internal, `${scheduler}: add_noise needs as much noise as sample`);
  }
  const a = alphasCumprod[timestep];
  if (a === undefined || !Number.isInteger(timestep)) {
    throw timestepOutOfRange(scheduler, timestep, alphasCumprod.length);
  }
  const sa = f32(Math.sqrt(a));
  const sb = f32(Math.sqrt(f32(1 - a)));
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(f32(sa * original[i]!) + f32(sb * noise[i]!));
  return out;
}

/**
 * The sigma schedulers' `add_noise` once `set_begin_index` was called (Euler, Euler ancestral):
 * `x + noise * sigmas[begin_index]` in float32.
 */
export function addNoiseBySigma(original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(original.length);
  const s = f32(sigma);
  for (let i = 0; i < out.length; i++) out[i] = f32(original[i]! + f32(noise[i]! * s));
  return out;
}

/**
 * The step index a sigma/step-indexed scheduler starts from: the begin index when the pipeline set one
 * (image-to-image), else where `timestep` sits in the schedule (`_init_step_index`).
 */
export function startIndex(
  scheduler: string,
  beginIndex: number | null,
  timesteps: readonly number[],
  timestep: number,
  whenMissing: 'throw' | 'last',
): number {
  return beginIndex ?? indexForTimestep(scheduler, timesteps, timestep, whenMissing);
}

/**
 * The sigma index a sigma-based `add_noise` uses (diffusers): without a begin index, where `timestep`
 * sits in the schedule; with one, the current step (or the begin index before the first step).
 */
export function addNoiseIndex(
  scheduler: string,
  beginIndex: number | null,
  stepIndex: number | null,
  timesteps: readonly number[],
  timestep: number,
  whenMissing: 'throw' | 'last',
): number {
  return beginIndex === null
    ? indexForTimestep(scheduler, timesteps, timestep, whenMissing)
    : (stepIndex ?? beginIndex);
}
