import type { GeneratorKind } from '../../core/samplers.ts';
import type { NoiseGenerator } from '../types.ts';
import { fmaf } from './avxMath.ts';

const f = Math.fround;

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 values, without BigInt (all steps exact in double). */
function mulhi32(a: number, b: number): number {
  const p1 = a * (b >>> 16); // < 2^48
  const p0 = a * (b & 0xffff); // < 2^48
  return Math.floor((p1 + Math.floor(p0 / 65536)) / 65536) >>> 0;
}

/**
 * Philox4x32-10 block function (Salmon et al. 2011, as in cuRAND): 10 rounds on a 128-bit counter
 * with a 64-bit key. Writes the four output words into `out`.
 */
export function philox4x32_10(
  c0In: number,
  c1In: number,
  c2In: number,
  c3In: number,
  k0In: number,
  k1In: number,
  out: Uint32Array,
): void {
  let c0 = c0In >>> 0;
  let c1 = c1In >>> 0;
  let c2 = c2In >>> 0;
  let c3 = c3In >>> 0;
  let k0 = k0In >>> 0;
  let k1 = k1In >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0);
    const lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2);
    const lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// cuRAND's box-muller constants: 2^-32 and 2^-32 * 2*pi, as float32 (CURAND_2POW32_INV[_2PI]).
const INV_2POW32 = f(2.3283064e-10);
const INV_2POW32_2PI = f(f(2.3283064e-10) * f(6.2831855));
const HALF_INV = f(INV_2POW32 / 2);
const HALF_INV_2PI = f(INV_2POW32_2PI / 2);

/** Options for the CUDA emulation. */
export interface TorchCudaGeneratorOptions {
  /**
   * `multiProcessorCount * maxThreadsPerMultiProcessor` of the GPU being imitated. torch caps its
   * launch grid by it, which changes the element-to-thread mapping only for tensors larger than this.
   * @defaultValue `Infinity` (no cap: exact on every GPU for tensors up to that GPU's resident threads,
   * e.g. 16384 for one 512x512 SD latent is below every CUDA GPU's cap)
   */
  readonly maxResidentThreads?: number;
}

const BLOCK_SIZE = 256;
const UNROLL = 4;

/**
 * torch's CUDA generator (`torch.Generator('cuda').manual_seed(seed)`) and its float32 `randn`,
 * emulated on the CPU: Philox4x32-10 with key = seed, subsequence = thread index, counter offset =
 * the generator's philox offset; each thread calls `curand_normal4` (Box-Muller on two pairs of
 * 32-bit draws) and writes element `idx + stride*ii` for ii in 0..3, `stride` being the launch's
 * total thread count, then advances by `stride*4` (torch's grid-stride loop, unroll factor 4).
 *
 * The GPU computes `logf`/`__sincosf` with its own approximations (fast intrinsics), so values here
 * agree with a real GPU to about 1e-6, not bit for bit.
 */
export class TorchCudaGenerator implements NoiseGenerator {
  readonly kind: GeneratorKind = 'cuda';
  private readonly keyLo: number;
  private readonly keyHi: number;
  /** torch's `philox_offset_per_thread`, always a multiple of 4; counts 32-bit draws per thread. */
  private offset = 0;
  private readonly maxResidentThreads: number;
  private readonly block = new Uint32Array(4);

  constructor(seed: number | bigint, options: TorchCudaGeneratorOptions = {}) {
    const [lo, hi] = seedWords(seed);
    this.keyLo = lo;
    this.keyHi = hi;
    this.maxResidentThreads = options.maxResidentThreads ?? Number.POSITIVE_INFINITY;
  }

  randn(count: number): Float32Array {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`randn count must be a non-negative integer, got ${count}`);
    }
    const out = new Float32Array(count);
    if (count === 0) return out;
    // calc_execution_policy: grid = ceil(numel / 256) blocks, capped by the GPU's resident blocks.
    const maxBlocks = Math.max(1, Math.floor(this.maxResidentThreads / BLOCK_SIZE));
    const grid = Math.min(Math.ceil(count / BLOCK_SIZE), maxBlocks);
    const stride = BLOCK_SIZE * grid;
    const iterations = Math.floor((count - 1) / (stride * UNROLL)) + 1;
    const baseCounter = this.offset / 4;
    const block = this.block;
    for (let idx = 0; idx < stride && idx < count; idx++) {
      for (let k = 0; k < iterations; k++) {
        const first = idx + k * stride * UNROLL;
        if (first >= count) break;
        const ctr = baseCounter + k;
        philox4x32_10(ctr % 4294967296, Math.floor(ctr / 4294967296), idx, 0, this.keyLo, this.keyHi, block);
        writeNormalPair(out, count, first, stride, block[0]!, block[1]!);
        if (first + 2 * stride < count)
          writeNormalPair(out, count, first + 2 * stride, stride, block[2]!, block[3]!);
      }
    }
    // philox_cuda_state(counter_offset): counter_offset = iterations * 4 draws (already a multiple of 4).
    this.offset += iterations * UNROLL;
    return out;
  }
}

/** cuRAND `_curand_box_muller(x, y)`: (sin, cos) * sqrt(-2 ln u), written to `at` and `at + stride`. */
function writeNormalPair(
  out: Float32Array,
  count: number,
  at: number,
  stride: number,
  x: number,
  y: number,
): void {
  // The GPU evaluates `x * INV + INV/2` as one fused multiply-add on float(x).
  const u = fmaf(f(x), INV_2POW32, HALF_INV);
  const v = fmaf(f(y), INV_2POW32_2PI, HALF_INV_2PI);
  const s = f(Math.sqrt(f(-2 * f(Math.log(u)))));
  out[at] = f(f(Math.sin(v)) * s);
  if (at + stride < count) out[at + stride] = f(f(Math.cos(v)) * s);
}

function seedWords(seed: number | bigint): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed > 0xffffffffffffffffn) throw new RangeError(`seed out of uint64 range: ${seed}`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer or a bigint, got ${seed}`);
  }
  return [(seed % 4294967296) >>> 0, Math.floor(seed / 4294967296)];
}
