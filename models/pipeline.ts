import { ErrorCode, InternalError } from '../core/errors.ts';
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
import { decodeInitImage, rgbToVaeInput } from './init-image.ts';
import { type DecoderName, type LoadedModel, loadModel } from './loader.ts';
import { checkImages, decodeLatents } from './pipeline/decode.ts';
import { denoise, pipelineScheduler } from './pipeline/denoise.ts';
import { cancelled, invalid } from './pipeline/errors.ts';
import {
  checkStrength,
  DEFAULT_STRENGTH,
  imageToImage,
  openVaeEncoder,
  type VaeEncoder,
} from './pipeline/img2img.ts';
import type { LatentsMode, ModelFamily } from './pipeline/parts.ts';
import { sd1Family } from './pipeline/sd1.ts';
import { sdxlFamily } from './pipeline/sdxl.ts';
import { SessionRunner } from './pipeline/session.ts';
import { textToImage } from './pipeline/txt2img.ts';
import { prepareUnet, timestepCondInput } from './pipeline/unet.ts';
import { DEFAULT_PROVIDER_OPTIONS, type ExecutionProviderName, type ProviderOptions } from './providers.ts';
import { createGenerator } from './rng/index.ts';

export { guidanceScaleEmbedding } from './pipeline/unet.ts';

/**
 * The Stable Diffusion text-to-image pipeline on onnxruntime (SD 1.x, 2.x and SDXL), step for step what
 * diffusers' `StableDiffusionPipeline.__call__` (and `StableDiffusionXLPipeline.__call__`) does with `generator=[torch.Generator().manual_seed(s) for s in seeds]`:
 * per-image generators for the initial latents and for stochastic scheduler steps, classifier-free guidance
 * with the unconditional and conditional halves in one UNet batch ([uncond..., cond...]), guidance in float32.
 * Image k depends only on (prompts[k], seeds[k]).
 *
 * This file is the engine: validation, one batch at a time, and the order of the parts. The parts live in
 * pipeline/: the family's text conditioning (sd1.ts for SD 1.x/2.x, sdxl.ts), the mode's start latents (txt2img.ts), the shared
 * denoising loop (denoise.ts, unet.ts) and decoding (decode.ts); see pipeline/parts.ts for the seams.
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
  /** Final decoder (DECODER): the VAE, diffusers-exact, or the folder's TAESD. @defaultValue `'vae'` */
  readonly decoder?: DecoderName;
}

export const DEFAULT_ENGINE_OPTIONS = {
  ...DEFAULT_PROVIDER_OPTIONS,
  generator: 'cpu',
  safetyChecker: false,
  decoder: 'vae',
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

class StableDiffusionEngine implements Engine {
  readonly info: ModelInfo;
  /** Timings of the most recent generate call. */
  lastProfile: RunProfile | null = null;
  private readonly model: LoadedModel;
  private readonly defaultGenerator: GeneratorKind;
  private readonly logger: EngineLogger | undefined;
  private readonly runner = new SessionRunner();
  private readonly family: ModelFamily;
  private readonly options: EngineOptions;
  /** Opened on the first image-to-image request. */
  private vaeEncoder: Promise<VaeEncoder> | null = null;
  private closed = false;
  // One batch at a time: concurrent runs would only fight over the same cores/GPU.
  private chain: Promise<unknown> = Promise.resolve();

  constructor(model: LoadedModel, options: EngineOptions, ep: ExecutionProviderName) {
    this.model = model;
    this.options = options;
    this.family = model.family === 'sdxl' ? sdxlFamily(model, this.runner) : sd1Family(model, this.runner);
    this.defaultGenerator = options.generator ?? DEFAULT_ENGINE_OPTIONS.generator;
    this.logger = options.logger;
    this.info = {
      name: options.name ?? model.name,
      dir: model.dir,
      demo: model.demo,
      dtype: model.dtype,
      executionProvider: ep,
      hasSafetyChecker: model.safetyChecker !== null,
      family: model.family,
      defaults: model.defaults,
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
    const encoder = await this.vaeEncoder?.catch(() => null);
    await encoder?.session.release();
    await this.model.close();
  }

  private validate(request: GenerateRequest): void {
    const { prompts, seeds, width, height, steps, guidance } = request;
    if (!Array.isArray(prompts) || prompts.length === 0) throw invalid('At least one prompt is required.');
    if (!prompts.every((p) => typeof p === 'string')) throw invalid('Prompts must be strings.');
    if (typeof request.negative !== 'string') throw invalid('The negative prompt must be a string.');
    if (request.negativeGiven !== undefined && typeof request.negativeGiven !== 'boolean') {
      throw invalid(`negativeGiven must be true or false, got ${String(request.negativeGiven)}.`);
    }
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
    if (request.initImage === undefined) {
      if (request.strength !== undefined) throw invalid('Strength applies only with a starting image.');
    } else {
      if (!(request.initImage instanceof Uint8Array)) {
        throw invalid('The starting image must be the bytes of a PNG, JPEG or WebP file.');
      }
      checkStrength(request.strength ?? DEFAULT_STRENGTH);
    }
  }

  /** The request's start-latents mode: text-to-image, or image-to-image from its decoded picture. */
  private async modeFor(request: GenerateRequest): Promise<LatentsMode & { encodeMs?: number }> {
    if (request.initImage === undefined) return textToImage;
    const image = await decodeInitImage(request.initImage, request.width, request.height);
    if (this.vaeEncoder === null) {
      const { dir, vaeScalingFactor } = this.model;
      this.vaeEncoder = openVaeEncoder(dir, this.options, vaeScalingFactor);
      // A folder without an encoder stays refusable, and a later request tries again.
      this.vaeEncoder.catch(() => {
        this.vaeEncoder = null;
      });
    }
    const encoder = await this.vaeEncoder;
    if (encoder.kind === 'sample') {
      this.logger?.warn(
        { model: this.info.name },
        "the VAE encoder samples inside its graph (latent_sample): image-to-image seeds can't match diffusers",
      );
    }
    return imageToImage({
      encoder,
      runner: this.runner,
      pixels: rgbToVaeInput(image),
      strength: request.strength ?? DEFAULT_STRENGTH,
    });
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
    const mode = await this.modeFor(request);

    // 1-2. The family's text conditioning (tokenize and encode each distinct text once).
    const prompt = await this.family.encodePrompt(request, cfg);

    // 3. Scheduler, per-image generators and the mode's start latents.
    const scheduler = pipelineScheduler(request, model.schedulerConfig);
    const generators = request.seeds.map((s) => createGenerator(generatorKind, s));
    const latentShape = {
      channels: model.latentChannels,
      height: request.height / model.vaeScaleFactor,
      width: request.width / model.vaeScaleFactor,
    };
    const perImage = latentShape.channels * latentShape.height * latentShape.width;
    const { latents, firstStep } = await mode.prepareLatents({ request, scheduler, generators, perImage });

    // 4. UNet inputs that stay the same at every step: the conditioning, and LCM's guidance embedding.
    const rows = cfg ? 2 * batch : batch;
    const timestepCond = timestepCondInput(model.unet, request.guidance, rows);
    const constants = timestepCond === null ? prompt.unetInputs : [...prompt.unetInputs, timestepCond];
    const runUnet = prepareUnet(model.unet, this.runner, constants, rows, latentShape);

    // 5. Denoising loop.
    const denoised = await denoise({
      request,
      scheduler,
      generators,
      latents,
      firstStep,
      runUnet,
      runner: this.runner,
      cfg,
      latentShape,
      startedAt: start,
      ...(model.tinyDecoder === null
        ? {}
        : {
            decodePreview: async (one: Float32Array): Promise<RgbImage> => {
              const size1 = { batch: 1, width: request.width, height: request.height };
              const d = await decodeLatents(model, this.runner, one, size1, undefined, 'taesd');
              return { width: request.width, height: request.height, data: d.rgb[0]! };
            },
          }),
      ...(signal === undefined ? {} : { signal }),
      ...(onStep === undefined ? {} : { onStep }),
    });

    // 6. VAE decode.
    const t2 = performance.now();
    const size = { batch, width: request.width, height: request.height };
    const { rgb, vaeRunMs } = await decodeLatents(model, this.runner, denoised.latents, size, signal);
    const decodeMs = performance.now() - t2;

    // 7. Safety checker (optional).
    let nsfw: boolean[] | null = null;
    let safetyMs: number | undefined;
    if (model.safetyChecker !== null) {
      const s0 = performance.now();
      nsfw = await checkImages(
        model.safetyChecker,
        rgb.map((data) => ({ width: request.width, height: request.height, data })),
      );
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
    const { tokenizeMs, textEncodeMs, truncatedTokens, negativeTruncatedTokens } = prompt;
    this.lastProfile = {
      tokenizeMs,
      textEncoderRunMs: textEncodeMs,
      unetRunMs: denoised.unetRunMs,
      stepMs: denoised.stepMs,
      vaeRunMs,
      safetyRunMs: safetyMs ?? 0,
    };
    if (negativeTruncatedTokens > 0 || truncatedTokens.some((n) => n > 0)) {
      this.logger?.info({ negativeTruncatedTokens }, 'prompt truncated to CLIP 77 tokens');
    }
    const stepMs = denoised.stepMs;
    const timings = {
      tokenizeMs,
      textEncodeMs,
      stepMs,
      decodeMs,
      ...(mode.encodeMs === undefined ? {} : { encodeImageMs: mode.encodeMs }),
      ...(safetyMs === undefined ? {} : { safetyMs }),
      totalMs,
    };
    return {
      images,
      truncatedTokens,
      negativeTruncatedTokens,
      generator: generatorKind,
      timings,
    };
  }
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
