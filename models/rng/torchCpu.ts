import type { GeneratorKind } from '../../core/samplers.ts';
import type { NoiseGenerator } from '../types.ts';
import { avxLogf, avxSincosf } from './avxMath.ts';
import { Mt19937 } from './mt19937.ts';

const f = Math.fround;
const TWO_PI_F32 = f(2 * Math.PI);
const TWO_POW_M53 = 2 ** -53;

/**
 * torch's CPU generator (`torch.Generator().manual_seed(seed)`) and its float32 `randn`, bit for bit.
 *
 * Two paths, chosen per call by element count, exactly as ATen's `normal_kernel` chooses:
 * - count >= 16: `normal_fill` (AVX2 build): one 24-bit uniform per element, then Box-Muller on
 *   chunks of 16 (u1 = first 8, u2 = last 8) in float32 with avx_mathfun's log/sincos; when count is
 *   not a multiple of 16 the last 16 elements are redrawn from 16 fresh uniforms and recomputed.
 * - count < 16: `normal_distribution<double>` per element: two 53-bit uniforms, double Box-Muller,
 *   the sine half cached in the generator (`next_double_normal_sample`) and used by the next call.
 */
export class TorchCpuGenerator implements NoiseGenerator {
  readonly kind: GeneratorKind = 'cpu';
  private readonly engine: Mt19937;
  private cachedNormal: number | null = null;
  private readonly sincos = new Float64Array(2);

  constructor(seed: number | bigint) {
    this.engine = new Mt19937(lowSeedWord(seed));
  }

  randn(count: number): Float32Array {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`randn count must be a non-negative integer, got ${count}`);
    }
    const out = new Float32Array(count);
    if (count >= 16) this.fillVectorPath(out);
    else for (let i = 0; i < count; i++) out[i] = this.nextDoubleNormal();
    return out;
  }

  private fillVectorPath(data: Float32Array): void {
    const size = data.length;
    this.engine.fillUniform24(data, 0, size);
    for (let i = 0; i + 16 <= size; i += 16) this.boxMuller16(data, i);
    if (size % 16 !== 0) {
      const start = size - 16;
      this.engine.fillUniform24(data, start, 16);
      this.boxMuller16(data, start);
    }
  }

  /** `normal_fill_16_AVX2` with mean 0 and std 1 (the fmadd with 1 and 0 is the identity). */
  private boxMuller16(data: Float32Array, base: number): void {
    const sc = this.sincos;
    for (let j = 0; j < 8; j++) {
      const u1 = f(1 - data[base + j]!);
      const u2 = data[base + j + 8]!;
      const radius = f(Math.sqrt(f(-2 * avxLogf(u1))));
      const theta = f(TWO_PI_F32 * u2);
      avxSincosf(theta, sc);
      // `+ 0` turns -0 into +0 like fmadd(n, 1, 0) does.
      data[base + j] = f(radius * sc[1]!) + 0;
      data[base + j + 8] = f(radius * sc[0]!) + 0;
    }
  }

  /** `at::normal_distribution<double>(0, 1)`: returns the cached sine half when there is one. */
  private nextDoubleNormal(): number {
    const cached = this.cachedNormal;
    if (cached !== null) {
      this.cachedNormal = null;
      return cached;
    }
    const u1 = this.uniform53();
    const u2 = this.uniform53();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `uniform_real_distribution<double>(0, 1)`: low 53 bits of random64() = (first << 32) | second. */
  private uniform53(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * 4294967296 + lo) * TWO_POW_M53;
  }
}

/** torch's mt19937 keeps only the low 32 bits of the 64-bit seed. */
function lowSeedWord(seed: number | bigint): number {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed > 0xffffffffffffffffn) throw new RangeError(`seed out of uint64 range: ${seed}`);
    return Number(seed & 0xffffffffn);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer or a bigint, got ${seed}`);
  }
  return (seed % 4294967296) >>> 0;
}
