/**
 * Float32 emulation of the lane-wise maths torch's CPU `randn` uses on x86-64 (AVX2 build):
 * `log256_ps` and `sincos256_ps` from ATen's avx_mathfun.h (Cephes polynomials, evaluated in float32
 * one rounded operation at a time). Every intermediate is rounded to float32 with `Math.fround`: a
 * product or sum of two floats computed in double and rounded once is the correctly rounded float
 * result, exactly like the SIMD instruction.
 *
 * torch's wheels are built by GCC with -mfma and its default -ffp-contract=fast, so each
 * `mul` whose only use is an `add`/`sub` becomes one fused multiply-add (single rounding). Without
 * that fusion about 1% of values differ from torch by 1-2 ulp (checked against the oracle data), so
 * the fused spots below use `fmaf`.
 */
const f = Math.fround;

/**
 * Single-precision fused multiply-add: round(a*b + c) once, for float32 inputs. a*b is exact in
 * double; the double sum is then exact unless it lost bits, in which case only a result lying
 * exactly on a float32 midpoint can round the wrong way, and the sign of the lost part decides it.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return r;
  const d = s - r;
  if (d === 0) return r;
  const other = r + 2 * d;
  if (f(other) !== other) return r; // s is not a midpoint: the single rounding of s is right
  return err > 0 === d > 0 ? other : r;
}

// Cephes constants, rounded to float32 the way `_mm256_set1_ps(<double literal>)` rounds them
// (literals written as the shortest decimal of the same double the C source's literal gives).
const SQRTHF = f(Math.SQRT1_2); // cephes_SQRTHF
const LOG_P0 = f(7.0376836292e-2);
const LOG_P1 = f(-1.151461031e-1);
const LOG_P2 = f(1.167699874e-1);
const LOG_P3 = f(-1.2420140846e-1);
const LOG_P4 = f(1.4249322787e-1);
const LOG_P5 = f(-1.6668057665e-1);
const LOG_P6 = f(2.0000714765e-1);
const LOG_P7 = f(-2.4999993993e-1);
const LOG_P8 = f(3.3333331174e-1);
const LOG_Q1 = f(-2.1219444e-4);
const LOG_Q2 = f(0.693359375);

const MINUS_DP1 = f(-0.78515625);
const MINUS_DP2 = f(-2.4187564849853516e-4);
const MINUS_DP3 = f(-3.774894977445941e-8);
const SINCOF_P0 = f(-1.9515295891e-4);
const SINCOF_P1 = f(8.3321608736e-3);
const SINCOF_P2 = f(-1.6666654611e-1);
const COSCOF_P0 = f(2.443315711809948e-5);
const COSCOF_P1 = f(-1.388731625493765e-3);
const COSCOF_P2 = f(4.166664568298827e-2);
const FOPI = f(1.27323954473516);

const MIN_NORM_POS = 1.1754943508222875e-38; // 2^-126, the smallest normal float

const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

/** `log256_ps` for one lane. `x` must already be a float32 value; NaN for x <= 0 like the original. */
export function avxLogf(xIn: number): number {
  if (!(xIn > 0)) return Number.NaN;
  bitsF32[0] = Math.max(xIn, MIN_NORM_POS); // cut off denormals like the original
  const bits = bitsU32[0]!;
  // Mantissa with the exponent of 0.5: m in [0.5, 1).
  bitsU32[0] = (bits & 0x807fffff) | 0x3f000000;
  const m = bitsF32[0]!;
  let e = (bits >>> 23) - 127 + 1;
  let x: number;
  if (m < SQRTHF) {
    e -= 1;
    x = f(f(m - 1) + m);
  } else {
    x = f(m - 1);
  }
  const z = f(x * x);
  let y = LOG_P0;
  y = fmaf(y, x, LOG_P1);
  y = fmaf(y, x, LOG_P2);
  y = fmaf(y, x, LOG_P3);
  y = fmaf(y, x, LOG_P4);
  y = fmaf(y, x, LOG_P5);
  y = fmaf(y, x, LOG_P6);
  y = fmaf(y, x, LOG_P7);
  y = fmaf(y, x, LOG_P8);
  y = f(y * x);
  // `y*z + e*q1`: GCC fuses the first product in statement order (y*z).
  y = fmaf(y, z, f(e * LOG_Q1));
  y = f(y - f(z * 0.5)); // z*0.5 is exact, so fused or not gives the same
  x = f(x + y);
  return fmaf(e, LOG_Q2, x);
}

/**
 * `sincos256_ps` for one lane; writes [sin, cos] into `out`. Valid for |x| < 8192 (torch only
 * feeds it angles in [0, 2*pi)).
 */
export function avxSincosf(xIn: number, out: Float64Array): void {
  const negative = xIn < 0;
  let x = Math.abs(xIn);
  // Integer octant, rounded up to even (Cephes' j = (j + 1) & ~1); truncation like cvttps.
  let j = Math.trunc(f(x * FOPI)) | 0;
  j = (j + 1) & ~1;
  const y = j; // cvtepi32_ps: exact for these small integers
  const swapSin = (j & 4) !== 0;
  const sinPoly = (j & 2) === 0;
  const negCos = (~(j - 2) & 4) !== 0;
  // Extended-precision range reduction: x = ((x - y*DP1) - y*DP2) - y*DP3.
  x = fmaf(y, MINUS_DP1, x);
  x = fmaf(y, MINUS_DP2, x);
  x = fmaf(y, MINUS_DP3, x);
  const z = f(x * x);
  let c = COSCOF_P0;
  c = fmaf(c, z, COSCOF_P1);
  c = fmaf(c, z, COSCOF_P2);
  c = f(c * z);
  c = fmaf(c, z, -f(z * 0.5)); // `c*z - z*0.5`: the first product (c*z) is the fused one
  c = f(c + 1);
  let s = SINCOF_P0;
  s = fmaf(s, z, SINCOF_P1);
  s = fmaf(s, z, SINCOF_P2);
  s = f(s * z);
  s = fmaf(s, x, x);
  let sinV = sinPoly ? s : c;
  let cosV = sinPoly ? c : s;
  if (swapSin !== negative) sinV = -sinV;
  if (negCos) cosV = -cosV;
  out[0] = sinV;
  out[1] = cosV;
}
