import type { Tensor } from 'onnxruntime-node';
import { CodedError, ErrorCode, InternalError, UserError } from '../core/errors.ts';
import { type GeneratorKind, isSamplerName } from '../core/samplers.ts';
import type {
  Engine,
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  GenerateResult,
  ModelInfo,
  RgbImage,
} from './engine.ts';
import { clipPixelValues, latentPreview, vaeOutputToRgb } from './image.ts';
import { type LoadedModel, loadModel } from './loader.ts';
import { DEFAULT_PROVIDER_OPTIONS, type ExecutionProviderName, type ProviderOptions } from './providers.ts';
import { createGenerator } from './rng/index.ts';
import { createScheduler, pipelineSchedulerConfig } from './schedulers/index.ts';
import { floatTensor, intTensor, numericTensor, tensorToFloat32 } from './tensors.ts';
import type { NoiseGenerator, Scheduler } from './types.ts';

/**
 * The Stable Diffusion 1.x text-to-image pipeline on onnxruntime, step for step what diffusers'
 * `StableDiffusionPipeline.__call__` does with `generator=[torch.Generator().manual_seed(s) for s in seeds]`:
 * per-image generators for the initial latents and for stochastic scheduler steps, classifier-free guidance
 * with the unconditional and conditional halves in one UNet batch ([uncond..., cond...]), guidance in float32.
 * Image k depends only on (prompts[k], seeds[k]).
 */

/** The minimal logger the engine uses (pino satisfies it). */
export interface EngineLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface EngineOptions extends ProviderOptions {
  /** Which torch generator seeds reproduce when a request does not say. @defaultValue `'cpu'` */
  readonly generator?: GeneratorKind;
  /** Run safety_checker/model.onnx when the folder has one; flagged images come back black. @defaultValue `false` */
  readonly safetyChecker?: boolean;
  readonly logger?: EngineLogger;
  /** Name shown in ModelInfo and PNG parameters. @defaultValue the folder's name */
  readonly name?: string;
}

export const DEFAULT_ENGINE_OPTIONS = {
  ...DEFAULT_PROVIDER_OPTIONS,
  generator: 'cpu',
  safetyChecker: false,
} as const satisfies Required<Omit<EngineOptions, 'logger' | 'name'>>;

/** Where the time of the last `generate` went; the benchmark reads it. */
export interface RunProfile {
  readonly tokenizeMs: number;
  readonly textEncoderRunMs: number;
  /** Time inside the UNet's `session.run` call(s) of each step. */
  readonly unetRunMs: readonly number[];
  /** Whole step: scale input, UNet, guidance, scheduler step, callback excluded. */
  readonly stepMs: readonly number[];
  readonly vaeRunMs: readonly number[];
  readonly safetyRunMs: number;
}

const f = Math.fround;

function invalid(message: string, context: Record<string, unknown> = {}): UserError {
  return new UserError(ErrorCode.InvalidRequest, message, { context });
}

function cancelled(): UserError {
  return new UserError(ErrorCode.Cancelled, 'Generation was cancelled.');
}

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

class StableDiffusionEngine implements Engine {
  readonly info: ModelInfo;
  /** Timings of the most recent generate call. */
  lastProfile: RunProfile | null = null;
  private readonly model: LoadedModel;
  private readonly defaultGenerator: GeneratorKind;
  private readonly logger: EngineLogger | undefined;
  private closed = false;
  /** Milliseconds spent inside session.run since the engine was created (for the step-overhead profile). */
  private sessionRunMs = 0;
  // One batch at a time: concurrent runs would only fight over the same cores/GPU.
  private chain: Promise<unknown> = Promise.resolve();

  constructor(model: LoadedModel, options: EngineOptions, ep: ExecutionProviderName) {
    this.model = model;
    this.defaultGenerator = options.generator ?? DEFAULT_ENGINE_OPTIONS.generator;
    this.logger = options.logger;
    this.info = {
      name: options.name ?? model.name,
      dir: model.dir,
      demo: model.demo,
      dtype: model.dtype,
      executionProvider: ep,
      hasSafetyChecker: model.safetyChecker !== null,
    };
  }

  generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    const run = this.chain.then(
      () => this.run(request, options),
      () => this.run(request, options),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    await this.model.close();
  }

  private validate(request: GenerateRequest): void {
    const { prompts, seeds, width, height, steps, guidance } = request;
    if (!Array.isArray(prompts) || prompts.length === 0) throw invalid('At least one prompt is required.');
    if (!prompts.every((p) => typeof p === 'string')) throw invalid('Prompts must be strings.');
    if (typeof request.negative !== 'string') throw invalid('The negative prompt must be a string.');
    if (!Array.isArray(seeds) || seeds.length !== prompts.length) {
      throw invalid(
        `Need one seed per prompt: got ${prompts.length} prompts and ${seeds?.length ?? 0} seeds.`,
      );
    }
    for (const s of seeds) {
      if (!Number.isSafeInteger(s) || s < 0) throw invalid(`Seed ${s} is not a non-negative integer.`);
    }
    if (!isSamplerName(request.scheduler)) throw invalid(`Unknown sampler "${request.scheduler}".`);
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000) {
      throw invalid(`Steps must be an integer from 1 to 1000, got ${steps}.`);
    }
    if (typeof guidance !== 'number' || !Number.isFinite(guidance)) {
      throw invalid(`Guidance must be a finite number, got ${guidance}.`);
    }
    const factor = this.model.vaeScaleFactor;
    for (const [label, v] of [
      ['Width', width],
      ['Height', height],
    ] as const) {
      if (!Number.isInteger(v) || v < factor || v % factor !== 0) {
        throw invalid(`${label} must be a positive multiple of ${factor}, got ${v}.`);
      }
    }
    const fixed = this.model.unet.fixedLatentSize ?? this.model.vaeDecoder.fixedLatentSize;
    if (fixed !== null && (fixed.width * factor !== width || fixed.height * factor !== height)) {
      throw invalid(
        `This model was exported for ${fixed.width * factor}x${fixed.height * factor} only; got ${width}x${height}.`,
      );
    }
    const generator = request.generator;
    if (generator !== undefined && generator !== 'cpu' && generator !== 'cuda') {
      throw invalid(`Unknown generator "${String(generator)}" (cpu or cuda).`);
    }
  }

  private async run(request: GenerateRequest, options: GenerateOptions): Promise<GenerateResult> {
    if (this.closed) throw new InternalError(ErrorCode.Internal, 'The engine is closed.');
    this.validate(request);
    const { signal, onStep } = options;
    if (signal?.aborted) throw cancelled();
    const model = this.model;
    const start = performance.now();
    const batch = request.prompts.length;
    const generatorKind = request.generator ?? this.defaultGenerator;

    // diffusers: do_classifier_free_guidance = guidance_scale > 1 and unet.config.time_cond_proj_dim is None.
    const cfg = request.guidance > 1 && model.unet.timestepCond === null;

    // 1. Tokenize each distinct text once.
    const t0 = performance.now();
    const texts = [...new Set(cfg ? [request.negative, ...request.prompts] : request.prompts)];
    const encodings = texts.map((t) => model.tokenizer.encode(t));
    const tokenizeMs = performance.now() - t0;

    // 2. Text encoder, one batch of the distinct texts.
    const t1 = performance.now();
    const embeddings = await this.encodeTexts(encodings.map((e) => e.ids));
    const textEncoderRunMs = performance.now() - t1;
    const embeddingOf = (text: string) => embeddings[texts.indexOf(text)]!;
    const seqLen = 77;
    const hidden = embeddings[0]!.length / seqLen;

    // 3. Scheduler and per-image generators.
    let scheduler: Scheduler;
    try {
      scheduler = createScheduler(
        request.scheduler,
        pipelineSchedulerConfig(request.scheduler, model.schedulerConfig),
      );
      scheduler.setTimesteps(request.steps);
    } catch (error) {
      if (error instanceof CodedError) throw error;
      throw invalid(
        `Sampler ${request.scheduler} cannot run ${request.steps} steps: ${(error as Error).message}`,
      );
    }
    const generators: NoiseGenerator[] = request.seeds.map((s) => createGenerator(generatorKind, s));
    const channels = model.latentChannels;
    const lh = request.height / model.vaeScaleFactor;
    const lw = request.width / model.vaeScaleFactor;
    const perImage = channels * lh * lw;
    let latents: Float32Array = new Float32Array(batch * perImage);
    const initSigma = f(scheduler.initNoiseSigma);
    for (let k = 0; k < batch; k++) {
      const noise = generators[k]!.randn(perImage);
      const off = k * perImage;
      for (let i = 0; i < perImage; i++) latents[off + i] = f(noise[i]! * initSigma);
    }

    // 4. UNet conditioning: [uncond x B, cond x B] with guidance, [cond x B] without.
    const rows = cfg ? 2 * batch : batch;
    const ehs = new Float32Array(rows * seqLen * hidden);
    const rowSize = seqLen * hidden;
    for (let k = 0; k < batch; k++) {
      if (cfg) ehs.set(embeddingOf(request.negative), k * rowSize);
      ehs.set(embeddingOf(request.prompts[k]!), ((cfg ? batch : 0) + k) * rowSize);
    }
    const timestepCond =
      model.unet.timestepCond === null ? null : this.timestepCondRows(request.guidance, rows);
    const runUnet = this.prepareUnet(ehs, timestepCond, rows, lh, lw);

    // 5. Denoising loop.
    const timesteps = scheduler.timesteps;
    const total = timesteps.length;
    const stepMs: number[] = [];
    const unetRunMs: number[] = [];
    const g = f(request.guidance);
    const sigmas = scheduler.sigmas;
    const veSpace = scheduler.initNoiseSigma > 1;
    const cfgInput = new Float32Array(cfg ? 2 * batch * perImage : 0);
    for (let i = 0; i < total; i++) {
      if (signal?.aborted) throw cancelled();
      const stepStart = performance.now();
      const t = timesteps[i]!;
      const scaled = scheduler.scaleModelInput(latents, t);
      let unetInput = scaled;
      if (cfg) {
        // Reused across steps: onnxruntime reads CPU inputs in place and is done with them once run resolves.
        unetInput = cfgInput;
        unetInput.set(scaled, 0);
        unetInput.set(scaled, scaled.length);
      }
      const runBefore = this.sessionRunMs;
      let out: Float32Array;
      try {
        out = await runUnet(unetInput, t, i);
      } catch (error) {
        throw i === 0 ? unsupportedSizeError(error, request.width, request.height) : error;
      }
      unetRunMs.push(this.sessionRunMs - runBefore);
      let noisePred = out;
      if (cfg) {
        const n = batch * perImage;
        noisePred = new Float32Array(n);
        for (let j = 0; j < n; j++) {
          const u = out[j]!;
          noisePred[j] = f(u + f(g * f(out[n + j]! - u)));
        }
      }
      latents = scheduler.step(noisePred, t, latents, generators);
      stepMs.push(performance.now() - stepStart);
      if (onStep !== undefined) {
        const current = latents;
        // Euler-family latents live in sigma-scaled (VE) space (init_noise_sigma > 1): after step i they
        // carry noise at sigmas[i + 1], so scale by 1/sqrt(sigma^2 + 1) as scale_model_input does.
        const sigma = veSpace && sigmas !== null ? (sigmas[i + 1] ?? 0) : 0;
        const noiseScale = 1 / Math.sqrt(sigma * sigma + 1);
        await onStep({
          step: i + 1,
          total,
          elapsedMs: performance.now() - start,
          preview: (index = 0): RgbImage => {
            if (!Number.isInteger(index) || index < 0 || index >= batch) {
              throw new RangeError(`preview index ${index} is outside 0..${batch - 1}`);
            }
            return latentPreview(current, index, channels, lw, lh, noiseScale);
          },
        });
      }
    }
    if (signal?.aborted) throw cancelled();

    // 6. VAE decode, one image at a time (as diffusers' ONNX pipeline does; bounds memory at large sizes).
    const t2 = performance.now();
    const vaeRunMs: number[] = [];
    const rgb: Uint8Array[] = [];
    const sf = f(model.vaeScalingFactor);
    for (let k = 0; k < batch; k++) {
      if (signal?.aborted) throw cancelled();
      const scaled = new Float32Array(perImage);
      const off = k * perImage;
      for (let i = 0; i < perImage; i++) scaled[i] = f(latents[off + i]! / sf);
      const r0 = performance.now();
      const decoded = await this.runVae(scaled, lh, lw);
      vaeRunMs.push(performance.now() - r0);
      rgb.push(vaeOutputToRgb(decoded, 0, request.width, request.height));
    }
    const decodeMs = performance.now() - t2;

    // 7. Safety checker (optional).
    let nsfw: boolean[] | null = null;
    let safetyMs: number | undefined;
    if (model.safetyChecker !== null) {
      const s0 = performance.now();
      nsfw = [];
      for (let k = 0; k < batch; k++) {
        const flagged = await this.runSafetyChecker({
          width: request.width,
          height: request.height,
          data: rgb[k]!,
        });
        nsfw.push(flagged);
        // diffusers replaces flagged images with black ones.
        if (flagged) rgb[k]!.fill(0);
      }
      safetyMs = performance.now() - s0;
    }

    const images: GeneratedImage[] = rgb.map((data, k) => {
      const base = {
        width: request.width,
        height: request.height,
        data,
        prompt: request.prompts[k]!,
        seed: request.seeds[k]!,
      };
      return nsfw === null ? base : { ...base, nsfw: nsfw[k]! };
    });
    const totalMs = performance.now() - start;
    this.lastProfile = {
      tokenizeMs,
      textEncoderRunMs,
      unetRunMs,
      stepMs,
      vaeRunMs,
      safetyRunMs: safetyMs ?? 0,
    };
    const promptEncoding = (p: string) => encodings[texts.indexOf(p)]!;
    const negativeTruncatedTokens = cfg ? promptEncoding(request.negative).truncatedTokens : 0;
    if (negativeTruncatedTokens > 0 || request.prompts.some((p) => promptEncoding(p).truncatedTokens > 0)) {
      this.logger?.info({ negativeTruncatedTokens }, 'prompt truncated to CLIP 77 tokens');
    }
    const timings =
      safetyMs === undefined
        ? { tokenizeMs, textEncodeMs: textEncoderRunMs, stepMs, decodeMs, totalMs }
        : { tokenizeMs, textEncodeMs: textEncoderRunMs, stepMs, decodeMs, safetyMs, totalMs };
    return {
      images,
      truncatedTokens: request.prompts.map((p) => promptEncoding(p).truncatedTokens),
      negativeTruncatedTokens,
      generator: generatorKind,
      timings,
    };
  }

  /** Embeddings [77 * hidden] per id row, running the text encoder in as few batches as it allows. */
  private async encodeTexts(idRows: readonly Int32Array[]): Promise<Float32Array[]> {
    const te = this.model.textEncoder;
    const limit = te.fixedBatch ?? idRows.length;
    const result: Float32Array[] = [];
    for (let start = 0; start < idRows.length; start += limit) {
      const chunk = idRows.slice(start, start + limit);
      // A fixed-batch export needs exactly `limit` rows: pad with the first and drop the extra outputs.
      const padded = [...chunk];
      while (padded.length < limit) padded.push(chunk[0]!);
      const ids = new Int32Array(padded.length * 77);
      for (const [i, row] of padded.entries()) ids.set(row, i * 77);
      const feeds: Record<string, Tensor> = {
        [te.inputIds.name]: intTensor(te.inputIds.type, ids, [padded.length, 77]),
      };
      if (te.attentionMask !== null) {
        feeds[te.attentionMask.name] = intTensor(te.attentionMask.type, new Int32Array(ids.length).fill(1), [
          padded.length,
          77,
        ]);
      }
      const out = await this.runSession(te.session, feeds, te.output, 'text encoder');
      const rowSize = out.length / padded.length;
      for (let i = 0; i < chunk.length; i++) result.push(out.slice(i * rowSize, (i + 1) * rowSize));
    }
    return result;
  }

  private timestepCondRows(guidance: number, rows: number): Float32Array {
    const spec = this.model.unet.timestepCond!;
    const dim = typeof spec.shape[1] === 'number' ? spec.shape[1] : 256;
    const emb = guidanceScaleEmbedding(guidance, dim);
    const out = new Float32Array(rows * dim);
    for (let r = 0; r < rows; r++) out.set(emb, r * dim);
    return out;
  }

  /**
   * Prepares the UNet calls of one batch: `rows` latent rows, split into the export's fixed batch when it
   * has one (padding the last chunk by repeating its first row). The constant inputs (text embeddings,
   * guidance embedding) become tensors once here, not at every step (a float16 conversion each step adds up).
   */
  private prepareUnet(
    ehs: Float32Array,
    timestepCond: Float32Array | null,
    rows: number,
    lh: number,
    lw: number,
  ): (sample: Float32Array, t: number, step: number) => Promise<Float32Array> {
    const unet = this.model.unet;
    const channels = this.model.latentChannels;
    const limit = unet.fixedBatch ?? rows;
    const ehsRow = ehs.length / rows;
    const condRow = timestepCond === null ? 0 : timestepCond.length / rows;
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
      const constant: Record<string, Tensor> = {
        [unet.encoderHiddenStates.name]: floatTensor(
          unet.encoderHiddenStates.type,
          rowsOf(ehs, ehsRow, start, n),
          [limit, 77, ehsRow / 77],
        ),
      };
      if (unet.timestepCond !== null && timestepCond !== null) {
        constant[unet.timestepCond.name] = floatTensor(
          unet.timestepCond.type,
          rowsOf(timestepCond, condRow, start, n),
          [limit, condRow],
        );
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
        return this.runSession(unet.session, feeds, unet.output, what);
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
        const res = await this.runSession(unet.session, feeds, unet.output, what);
        out.set(res.subarray(0, c.n * perRow), c.start * perRow);
      }
      return out;
    };
  }

  private async runVae(latent: Float32Array, lh: number, lw: number): Promise<Float32Array> {
    const vae = this.model.vaeDecoder;
    const feeds = {
      [vae.latent.name]: floatTensor(vae.latent.type, latent, [1, this.model.latentChannels, lh, lw]),
    };
    return this.runSession(vae.session, feeds, vae.output, 'VAE decoder');
  }

  private async runSafetyChecker(image: RgbImage): Promise<boolean> {
    const sc = this.model.safetyChecker!;
    const clip = await clipPixelValues(image, sc.preprocess);
    const hwc = new Float32Array(image.data.length);
    for (let i = 0; i < hwc.length; i++) hwc[i] = image.data[i]! / 255;
    const feeds = {
      [sc.clipInput.name]: floatTensor(sc.clipInput.type, clip.pixels, [1, 3, clip.height, clip.width]),
      [sc.images.name]: floatTensor(sc.images.type, hwc, [1, image.height, image.width, 3]),
    };
    let outputs: Record<string, Tensor>;
    try {
      outputs = await sc.session.run(feeds, [sc.nsfwOutput]);
    } catch (error) {
      throw new InternalError(ErrorCode.Inference, `safety checker failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const flag = outputs[sc.nsfwOutput];
    if (flag === undefined) throw new InternalError(ErrorCode.Inference, 'safety checker returned no flag');
    const data = flag.data as ArrayLike<unknown>;
    return Boolean(data[0]);
  }

  private async runSession(
    session: LoadedModel['unet']['session'],
    feeds: Record<string, Tensor>,
    output: string,
    what: string,
  ): Promise<Float32Array> {
    let outputs: Record<string, Tensor>;
    const start = performance.now();
    try {
      outputs = await session.run(feeds, [output]);
    } catch (error) {
      throw new InternalError(ErrorCode.Inference, `${what} failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      this.sessionRunMs += performance.now() - start;
    }
    const tensor = outputs[output];
    if (tensor === undefined) throw new InternalError(ErrorCode.Inference, `${what} returned no ${output}`);
    return tensorToFloat32(tensor, what);
  }
}

/** Pixel multiple every SD 1.x UNet export takes: the latent (1/8) is halved three times. */
const SAFE_SIZE_MULTIPLE = 64;

/**
 * Most ONNX UNet exports upsample by a fixed factor of 2 (torch.onnx traces `interpolate(scale_factor=2)`),
 * so a latent that doesn't halve evenly fails inside the UNet on its first call. That is the request's
 * size, not a fault to retry: say what works.
 */
function unsupportedSizeError(error: unknown, width: number, height: number): unknown {
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

export type OnnxEngine = Engine & { readonly lastProfile: RunProfile | null };

/**
 * Loads a model folder and returns an engine whose sessions live until `close()`.
 * Provider problems fail here (E_PROVIDER_UNAVAILABLE), not at the first request.
 */
export async function loadEngine(modelDir: string, options: EngineOptions = {}): Promise<OnnxEngine> {
  const ep = options.executionProvider ?? DEFAULT_ENGINE_OPTIONS.executionProvider;
  const logger = options.logger;
  const model = await loadModel(modelDir, {
    ...options,
    warn: (message) => logger?.warn({ modelDir }, message),
  });
  const engine = new StableDiffusionEngine(model, options, ep);
  logger?.info(
    { model: engine.info.name, dir: model.dir, dtype: model.dtype, executionProvider: ep, demo: model.demo },
    'model loaded',
  );
  return engine;
}
