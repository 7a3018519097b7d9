/**
 * IEEE-754 binary16 conversions (Node 20 has no Float16Array). Rounding is round-to-nearest-even,
 * the same as torch's `.half()` and numpy's `astype(float16)`: overflow goes to ±Infinity, tiny values
 * to signed zero or subnormals, NaN stays NaN (quiet, sign and top payload bits kept).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bits of one float32 value rounded to float16. */
export function float32ToFloat16BitsScalar(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    // Inf stays Inf; NaN keeps its top payload bits and is forced quiet.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand (implicit 1 included) into place.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const full = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const halfMant = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const round = rem > halfway || (rem === halfway && (halfMant & 1) === 1) ? 1 : 0;
    return sign | (halfMant + round); // a carry into the exponent field gives the smallest normal
  }
  const halfMant = mant >>> 13;
  const rem = mant & 0x1fff;
  let bits = sign | (e << 10) | halfMant;
  if (rem > 0x1000 || (rem === 0x1000 && (halfMant & 1) === 1)) bits += 1; // may carry into exp / Inf
  return bits;
}

/** float32 → float16 bits, element-wise. */
export function float32ToFloat16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16BitsScalar(values[i]!);
  return out;
}

/** Value of one float16 bit pattern (exactly representable in float32). */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** float16 bits → float32, element-wise (exact: every float16 is a float32). */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16BitsToNumber(bits[i]!);
  return out;
}
