import { CodedError, ErrorCode, InternalError, UserError } from '../core/errors.ts';
import type {
  Engine,
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  GenerateResult,
  ModelInfo,
  RgbImage,
} from '../models/engine.ts';

/**
 * A fast fake Engine for tests and the queue benchmark: no model, no inference. Image k is a
 * deterministic gradient whose base colour comes from seeds[k] alone, so a test can tell images
 * apart and check where each one landed in the grid. Failures can be injected per call.
 */

export interface NoopCall {
  /** 0-based count of `generate` calls on this engine. */
  readonly index: number;
  readonly request: GenerateRequest;
}

export interface NoopEngineOptions {
  /**
   * Sleep per denoising step, to make jobs last long enough to cancel or kill.
   * @defaultValue 0
   */
  readonly stepDelayMs?: number;
  /** @defaultValue `'noop'` */
  readonly name?: string;
  /** Decides, per call, whether the call fails and with what. */
  readonly failWith?: (call: NoopCall) => Error | undefined;
  /**
   * Step after which an injected failure is thrown (0: before the first step).
   * @defaultValue 0
   */
  readonly failAtStep?: number;
}

export interface NoopEngine extends Engine {
  /** Number of `generate` calls so far. */
  readonly calls: number;
  /** Number of calls that stopped because their signal aborted. */
  readonly aborted: number;
  readonly closed: boolean;
}

/** murmur3's 32-bit finaliser: a cheap, well-mixed hash of the seed. */
function mix(seed: number): number {
  let h = seed >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The colour of pixel (0, 0) of the image made from `seed`. */
export function noopBaseColour(seed: number): readonly [number, number, number] {
  const h = mix(seed);
  return [h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff];
}

/** Image of `seed`: red rises with x, green with y, blue is constant. */
export function noopImage(seed: number, width: number, height: number): RgbImage {
  const [r, g, b] = noopBaseColour(seed);
  const data = new Uint8Array(width * height * 3);
  let i = 0;
  for (let y = 0; y < height; y++) {
    const gy = (g + y) & 0xff;
    for (let x = 0; x < width; x++) {
      data[i++] = (r + x) & 0xff;
      data[i++] = gy;
      data[i++] = b;
    }
  }
  return { width, height, data };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function cancelled(): CodedError {
  return new CodedError(ErrorCode.Cancelled, 'generation cancelled');
}

export function createNoopEngine(options: NoopEngineOptions = {}): NoopEngine {
  const stepDelayMs = options.stepDelayMs ?? 0;
  const failAtStep = options.failAtStep ?? 0;
  const info: ModelInfo = {
    name: options.name ?? 'noop',
    dir: '(none)',
    demo: true,
    dtype: 'float32',
    executionProvider: 'none',
    hasSafetyChecker: false,
  };
  let calls = 0;
  let aborted = 0;
  let closed = false;

  async function generate(request: GenerateRequest, opts: GenerateOptions = {}): Promise<GenerateResult> {
    if (closed) throw new InternalError(ErrorCode.Inference, 'engine is closed');
    const index = calls++;
    const started = performance.now();
    const failure = options.failWith?.({ index, request });
    const stepMs: number[] = [];
    const check = (step: number): void => {
      if (opts.signal?.aborted === true) {
        aborted++;
        throw cancelled();
      }
      if (failure !== undefined && step === failAtStep) throw failure;
    };
    check(0);
    for (let step = 1; step <= request.steps; step++) {
      const stepStart = performance.now();
      if (stepDelayMs > 0) await sleep(stepDelayMs);
      const elapsed = performance.now() - stepStart;
      stepMs.push(elapsed);
      await opts.onStep?.({
        step,
        total: request.steps,
        elapsedMs: performance.now() - started,
        preview: (image = 0) => {
          const seed = request.seeds[image] ?? 0;
          return noopImage(seed, Math.max(1, request.width >> 3), Math.max(1, request.height >> 3));
        },
      });
      check(step);
    }
    const decodeStart = performance.now();
    const images: GeneratedImage[] = request.seeds.map((seed, k) => ({
      ...noopImage(seed, request.width, request.height),
      seed,
      prompt: request.prompts[k] ?? '',
    }));
    const decodeMs = performance.now() - decodeStart;
    return {
      images,
      truncatedTokens: request.prompts.map(() => 0),
      negativeTruncatedTokens: 0,
      generator: request.generator ?? 'cpu',
      timings: {
        tokenizeMs: 0,
        textEncodeMs: 0,
        stepMs,
        decodeMs,
        totalMs: performance.now() - started,
      },
    };
  }

  return {
    info,
    generate,
    close: async () => {
      closed = true;
    },
    get calls() {
      return calls;
    },
    get aborted() {
      return aborted;
    },
    get closed() {
      return closed;
    },
  };
}

/** Fails the first `count` calls with a transient (retryable) inference error. */
export function failFirstCalls(count: number): (call: NoopCall) => Error | undefined {
  return ({ index }) =>
    index < count
      ? new InternalError(ErrorCode.Inference, `simulated onnxruntime failure (call ${index + 1})`)
      : undefined;
}

/** Fails every call with a transient inference error (retries will run out). */
export function failEveryCall(): (call: NoopCall) => Error | undefined {
  return ({ index }) => new InternalError(ErrorCode.Inference, `simulated out of memory (call ${index + 1})`);
}

/** Fails every call with a permanent, user-facing error: the spec can't be served (no retry). */
export function failImpossible(message = 'This model cannot make images of that size.'): () => Error {
  return () => new UserError(ErrorCode.InvalidRequest, message);
}
