/**
 * Numeric building blocks that reproduce what diffusers' schedulers compute, rounding for rounding.
 *
 * diffusers mixes two worlds: schedule construction in numpy float64 (linspace, interp, Karras ramps) and
 * per-step maths on float32 torch tensors. JavaScript numbers are float64, so numpy maths maps 1:1, and
 * float32 torch maths is emulated with `Math.fround` after every single operation: the exact result of
 * `+ - * /` or `sqrt` on two float32 values, rounded once to float32, is what the CPU's float op returns.
 */

export const f32 = Math.fround;

/** Float32 `fma(a, b, c)`, i.e. `a * b + c` rounded once (what GCC emits for `start + step * idx`). */
export function fmaf(a: number, b: number, c: number): number {
  // a*b of two float32 (b a small integer) is exact in float64; the sum may round, so recover its error.
  const p = a * b;
  const s = p + c;
  const bp = s - c;
  const err = p - bp + (c - (s - bp));
  const r = f32(s);
  if (err === 0) return r;
  // Double rounding only goes wrong when `s` lands exactly halfway between two float32 values.
  const other = nextFloat32Toward(r, s > r ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY);
  if (s - r !== other - s) return r;
  return err > 0 === other > r ? other : r;
}

const nb = new Float32Array(1);
const nu = new Uint32Array(nb.buffer);

function nextFloat32Toward(x: number, dir: number): number {
  nb[0] = x;
  if (x === 0) {
    nu[0] = 1;
    return dir > 0 ? nb[0] : -nb[0];
  }
  if (x > 0 === dir > x) nu[0] = nu[0]! + 1;
  else nu[0] = nu[0]! - 1;
  return nb[0];
}

/** `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU (ATen's scalar `linspace_kernel`). */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? fmaf(step, i, s) : fmaf(-step, steps - i - 1, e);
  }
  return out;
}

/** `np.linspace(start, stop, num, endpoint)` in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  const out = new Array<number>(num);
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) out[i] = step === 0 ? (i / div) * delta + start : i * step + start;
  } else {
    for (let i = 0; i < num; i++) out[i] = i * delta + start;
  }
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for float steps: numpy fills `start + i * ((start + step) - start)`. */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Array<number>(len);
  if (len === 0) return out;
  out[0] = start;
  if (len === 1) return out;
  const second = start + step;
  out[1] = second;
  const delta = second - start;
  for (let i = 2; i < len; i++) out[i] = start + i * delta;
  return out;
}

/** `np.round` / `np.rint`: round half to even. */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const diff = x - fl;
  if (diff < 0.5) return fl;
  if (diff > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** `np.interp(x, np.arange(len(fp)), fp)` (float64, numpy's formula `slope * (x - xp[j]) + fp[j]`). */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (Number.isNaN(x)) return x;
  if (x < 0) return fp[0]!;
  if (x >= n - 1) return fp[n - 1]!;
  const j = Math.floor(x);
  if (j === x) return fp[j]!;
  const slope = fp[j + 1]! - fp[j]!;
  return slope * (x - j) + fp[j]!;
}

/**
 * diffusers' `_sigma_to_t(sigma, log_sigmas)`: fractional training timestep whose sigma matches, by
 * linear interpolation in log-sigma. `logSigmas` are numpy float32 values (ascending).
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // cumsum(dists >= 0).argmax(): the last index with log_sigmas[i] <= log_sigma (0 when none).
  let count = 0;
  for (let i = 0; i < n; i++) if (logSigma - logSigmas[i]! >= 0) count = i + 1;
  let lowIdx = count === 0 ? 0 : count - 1;
  if (lowIdx > n - 2) lowIdx = n - 2;
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[highIdx]!;
  // `low - high` is a numpy float32 scalar subtraction; the rest is float64.
  let w = (low - logSigma) / f32(low - high);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/** Karras et al. (2022) noise levels, rho = 7 (`_convert_to_karras`). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const rho = 7.0;
  const ramp = npLinspace(0, 1, steps);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** `_convert_to_exponential`. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  return npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), steps).map((v) => Math.exp(v));
}

/** `np.log` of a float32 array (numpy keeps float32). */
export function logF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.log(values[i]!);
  return out;
}
