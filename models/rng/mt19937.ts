/**
 * 32-bit Mersenne Twister (MT19937), seeded the way torch's `at::mt19937` is: the low 32 bits of the
 * 64-bit seed go through the standard `init_genrand` recurrence. Output equals `std::mt19937`.
 * Pure 32-bit arithmetic (Math.imul, >>> 0) so the hot loop never touches BigInt.
 */
const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seedLow32: number) {
    const mt = this.state;
    mt[0] = seedLow32 >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.index = N;
  }

  /** Regenerates all 624 words at once (the "twist"). */
  private twist(): void {
    const mt = this.state;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (mt[k]! & UPPER_MASK) | (mt[k + 1]! & LOWER_MASK);
      mt[k] = mt[k + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (mt[k]! & UPPER_MASK) | (mt[k + 1]! & LOWER_MASK);
      mt[k] = mt[k + M - N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** Next 32-bit output as an unsigned number. */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * Fills `out[offset .. offset+count)` with the low 24 bits of successive outputs scaled by 2^-24:
   * torch's `uniform_real_distribution<float>(0, 1)` on a 32-bit draw. Inlined for speed.
   */
  fillUniform24(out: Float32Array, offset: number, count: number): void {
    const mt = this.state;
    let idx = this.index;
    for (let i = 0; i < count; i++) {
      if (idx >= N) {
        this.twist();
        idx = 0;
      }
      let y = mt[idx++]!;
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      out[offset + i] = (y & 0xffffff) * 5.9604644775390625e-8;
    }
    this.index = idx;
  }
}
