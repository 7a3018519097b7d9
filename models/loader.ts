import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { CodedError, ErrorCode, InternalError } from '../core/errors.ts';
import { resolveModelDefaults } from './defaults.ts';
import type { ModelDefaults } from './engine.ts';
import { checkFamily, type FamilyName, folderKind, SDXL_EXTRA_FILES } from './family.ts';
import { REQUIRED_MODEL_FILES } from './layout.ts';
import { createSession, type ProviderOptions } from './providers.ts';
import {
  badModel,
  type ClipImagePreprocess,
  describeSafetyChecker,
  describeTextEncoder,
  describeUnet,
  describeVae,
  fixedDim,
  ioSpecs,
  type SafetyCheckerModel,
  type TextEncoderModel,
  type UnetModel,
  type VaeDecoderModel,
} from './session-roles.ts';
import type { FloatElement } from './tensors.ts';
import { ClipTokenizer } from './tokenizer.ts';
import type { SchedulerConfig } from './types.ts';

/**
 * Loads an SD 1.x, SD 2.x or SDXL ONNX model folder (diffusers' ONNX exporter, 2022-era exports,
 * optimum; fp32 or fp16; the family is told by family.ts)
 * into sessions plus a description of each session's inputs, read from the session's own metadata
 * (session-roles.ts).
 * Nothing about names, element types or ranks is assumed beyond the roles the pipeline feeds.
 */

export type {
  ClipImagePreprocess,
  IoSpec,
  SafetyCheckerModel,
  TextEncoderModel,
  UnetModel,
  VaeDecoderModel,
} from './session-roles.ts';

export interface LoadedModel {
  readonly dir: string;
  readonly name: string;
  readonly demo: boolean;
  readonly dtype: FloatElement;
  readonly family: FamilyName;
  /** Generation defaults that fit the model (imagine.json, else by family and scheduler; defaults.ts). */
  readonly defaults: ModelDefaults;
  readonly tokenizer: ClipTokenizer;
  /** SDXL's second tokenizer and text encoder (OpenCLIP ViT-bigG); null for SD 1.x/2.x. */
  readonly second: { readonly tokenizer: ClipTokenizer; readonly textEncoder: TextEncoderModel } | null;
  /**
   * model_index.json `force_zeros_for_empty_prompt` (SDXL; diffusers' default true): with no negative
   * prompt at all, the unconditional embeddings are zeros instead of the encoded empty prompt.
   */
  readonly forceZerosForEmptyPrompt: boolean;
  readonly schedulerConfig: SchedulerConfig;
  /** vae_decoder/config.json `scaling_factor` (0.18215 for SD 1.x/2.x, 0.13025 for SDXL). */
  readonly vaeScalingFactor: number;
  /** Pixels per latent cell: 2^(len(block_out_channels) - 1), 8 for SD 1.x. */
  readonly vaeScaleFactor: number;
  readonly latentChannels: number;
  readonly textEncoder: TextEncoderModel;
  readonly unet: UnetModel;
  readonly vaeDecoder: VaeDecoderModel;
  /**
   * The tiny autoencoder's decoder (TAESD / TAESDXL, diffusers' AutoencoderTiny) from `vae_decoder_tiny/`,
   * when the folder has one: progress previews, and the final decoder with `decoder: 'taesd'`.
   */
  readonly tinyDecoder: VaeDecoderModel | null;
  /** Which decoder makes the final images. */
  readonly decoder: DecoderName;
  readonly safetyChecker: SafetyCheckerModel | null;
  /** Releases every session; safe to call twice. */
  close(): Promise<void>;
}

/** `vae`: the model's own VAE (diffusers-exact); `taesd`: its tiny autoencoder, faster and approximate. */
export type DecoderName = 'vae' | 'taesd';

export const TINY_DECODER_FILE = 'vae_decoder_tiny/model.onnx';

export interface LoadModelOptions extends ProviderOptions {
  /** Final decoder; `taesd` needs `vae_decoder_tiny/model.onnx` in the folder. @defaultValue `'vae'` */
  readonly decoder?: DecoderName;
  /** Load safety_checker/model.onnx when the folder has one. @defaultValue `false` */
  readonly safetyChecker?: boolean;
  /** Told when the safety checker is wanted but missing. */
  readonly warn?: (message: string) => void;
}

export const DEFAULT_VAE_SCALING_FACTOR = 0.18215;

const CLIP_DEFAULT_PREPROCESS: ClipImagePreprocess = {
  shortestEdge: 224,
  cropHeight: 224,
  cropWidth: 224,
  rescaleFactor: 1 / 255,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/** The files a usable folder must have, relative to it. */
export const REQUIRED_FILES = REQUIRED_MODEL_FILES;

function missingFile(dir: string, files: readonly string[]): CodedError {
  const list = files.map((f) => path.join(dir, f)).join(', ');
  return new InternalError(
    ErrorCode.ModelMissingFile,
    `Model folder ${dir} is incomplete: missing ${list}. Expected a Stable Diffusion ONNX folder ` +
      '(text_encoder/, unet/, vae_decoder/ each with model.onnx, tokenizer/vocab.json + merges.txt, ' +
      'scheduler/scheduler_config.json; SDXL also text_encoder_2/ and tokenizer_2/), as written by ' +
      'diffusers or optimum, or by `imagine models download`.',
    { context: { dir, missing: files } },
  );
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/**
 * Python's json (which diffusers saves configs with) writes NaN, Infinity and -Infinity bare, e.g.
 * `"lambda_min_clipped": -Infinity`; JSON.parse rejects them. Quote them outside strings; the config
 * readers accept the quoted forms.
 */
export function quotePythonNonFinite(text: string): string {
  return text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/gu, (token) =>
    token.startsWith('"') ? token : `"${token}"`,
  );
}

/** Reads a JSON object; a missing file gives `fallback` (when given), a corrupt one a clear error. */
async function readJsonObject(file: string, expected: string, fallback?: Record<string, unknown>) {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (fallback !== undefined && (error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw new InternalError(ErrorCode.ModelMissingFile, `Cannot read ${file}: expected ${expected}.`, {
      cause: error,
      context: { file },
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(quotePythonNonFinite(text));
  } catch (error) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `${file} is not valid JSON (${(error as Error).message}); expected ${expected}.`,
      { cause: error, context: { file } },
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InternalError(ErrorCode.ModelLoad, `${file} must hold a JSON object: expected ${expected}.`, {
      context: { file },
    });
  }
  return value as Record<string, unknown>;
}

function num(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function triple(
  value: unknown,
  fallback: readonly [number, number, number],
): readonly [number, number, number] {
  if (Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number')) {
    const [a, b, c] = value as [number, number, number];
    return [a, b, c];
  }
  return fallback;
}

/** transformers accepts `size` as an int or {shortest_edge} and `crop_size` as an int or {height, width}. */
export function parsePreprocessorConfig(config: Record<string, unknown>): ClipImagePreprocess {
  const d = CLIP_DEFAULT_PREPROCESS;
  const size = config.size;
  const shortestEdge =
    typeof size === 'number'
      ? size
      : num((size as Record<string, unknown> | undefined)?.shortest_edge, d.shortestEdge);
  const crop = config.crop_size;
  const cropHeight =
    typeof crop === 'number'
      ? crop
      : num((crop as Record<string, unknown> | undefined)?.height, d.cropHeight);
  const cropWidth =
    typeof crop === 'number' ? crop : num((crop as Record<string, unknown> | undefined)?.width, d.cropWidth);
  return {
    shortestEdge,
    cropHeight,
    cropWidth,
    rescaleFactor: num(config.rescale_factor, d.rescaleFactor),
    mean: triple(config.image_mean, d.mean),
    std: triple(config.image_std, d.std),
  };
}

export interface SessionToOpen {
  readonly file: string;
  /** The part's name in errors ("UNet"). */
  readonly what: string;
}

/**
 * Opens the sessions together (onnxruntime builds each one on its own; transformers.js does the same),
 * in the order given. When any fails, the ones that opened are released and the first failure in that
 * order is thrown: it names its file, as createSession's errors do.
 */
export async function openSessions(
  files: readonly SessionToOpen[],
  options: ProviderOptions,
  open: typeof createSession = createSession,
): Promise<InferenceSession[]> {
  const settled = await Promise.allSettled(files.map((f) => open(f.file, options, f.what)));
  const failure = settled.find((r) => r.status === 'rejected');
  if (failure === undefined) return settled.map((r) => (r as PromiseFulfilledResult<InferenceSession>).value);
  await Promise.allSettled(settled.map((r) => (r.status === 'fulfilled' ? r.value.release() : undefined)));
  throw failure.reason;
}

/** The marker models/demo writes beside a demo model: `{demo: true, label, ...}`. */
const DEMO_MARKER_FILE = 'demo.json';

/**
 * Opens every session of a model folder. Missing files are reported together in one error before any
 * session is created; a corrupt file names itself. On any failure, sessions already created are released.
 */
export async function loadModel(modelDir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const dir = path.resolve(modelDir);
  let dirStat: Awaited<ReturnType<typeof stat>> | null = null;
  try {
    dirStat = await stat(dir);
  } catch {
    dirStat = null;
  }
  if (dirStat === null || !dirStat.isDirectory()) {
    throw new InternalError(
      ErrorCode.ModelMissingFile,
      `Model folder ${dir} does not exist. Download one with \`imagine models download <repo>\` or leave the ` +
        'model unset to use the demo model.',
      { context: { dir } },
    );
  }
  const index = await readJsonObject(
    path.join(dir, 'model_index.json'),
    'the diffusers model_index.json',
    {},
  );
  const kind = folderKind(dir, index, await isFile(path.join(dir, SDXL_EXTRA_FILES[0])));
  const required = kind === 'sdxl' ? [...REQUIRED_FILES, ...SDXL_EXTRA_FILES] : REQUIRED_FILES;
  const present = await Promise.all(required.map((f) => isFile(path.join(dir, f))));
  const missing = required.filter((_, i) => !present[i]);
  if (missing.length > 0) throw missingFile(dir, missing);

  const marker = await readJsonObject(path.join(dir, DEMO_MARKER_FILE), 'the demo model marker', {});
  const demo = marker.demo === true;
  const schedulerConfig = await readJsonObject(
    path.join(dir, 'scheduler/scheduler_config.json'),
    "a diffusers scheduler config (e.g. PNDMScheduler's beta_start, beta_end, beta_schedule)",
  );
  const vaeConfig = await readJsonObject(
    path.join(dir, 'vae_decoder/config.json'),
    'the VAE config (scaling_factor, block_out_channels)',
    {},
  );
  const scaling = vaeConfig.scaling_factor;
  if (scaling !== undefined && (typeof scaling !== 'number' || !(scaling > 0))) {
    throw badModel(
      path.join(dir, 'vae_decoder/config.json'),
      `scaling_factor must be a positive number, got ${scaling}`,
    );
  }
  const blocks = vaeConfig.block_out_channels;
  const vaeScaleFactor = Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : 8;
  const latentChannels = num(vaeConfig.latent_channels, 4);

  const tokenizer = await loadTokenizer(dir, 'tokenizer');
  const tokenizer2 = kind === 'sdxl' ? await loadTokenizer(dir, 'tokenizer_2') : null;
  // Read before any session opens, so a bad imagine.json fails fast; checkFamily below confirms the family.
  const defaults = await resolveModelDefaults(
    dir,
    kind === 'sdxl' ? 'sdxl' : tokenizer.padTokenId !== tokenizer.eosTokenId ? 'sd2' : 'sd1',
    schedulerConfig,
  );

  // The safety checker's files are checked first so that every session can open at once.
  let safety: { file: string; preprocess: ClipImagePreprocess } | null = null;
  if (options.safetyChecker === true) {
    const scFile = path.join(dir, 'safety_checker/model.onnx');
    if (await isFile(scFile)) {
      const preprocess = parsePreprocessorConfig(
        await readJsonObject(
          path.join(dir, 'feature_extractor/preprocessor_config.json'),
          "CLIP's image preprocessing settings",
          {},
        ),
      );
      safety = { file: scFile, preprocess };
    } else {
      options.warn?.(`Safety checker requested but ${scFile} does not exist; images will not be checked.`);
    }
  }

  const teFile = path.join(dir, 'text_encoder/model.onnx');
  const unetFile = path.join(dir, 'unet/model.onnx');
  const vaeFile = path.join(dir, 'vae_decoder/model.onnx');
  const toOpen: SessionToOpen[] = [
    { file: teFile, what: 'text encoder' },
    { file: unetFile, what: 'UNet' },
    { file: vaeFile, what: 'VAE decoder' },
  ];
  const te2File = path.join(dir, 'text_encoder_2/model.onnx');
  if (kind === 'sdxl') toOpen.push({ file: te2File, what: 'second text encoder' });
  const tinyFile = path.join(dir, TINY_DECODER_FILE);
  const decoder = options.decoder ?? 'vae';
  const hasTiny = await isFile(tinyFile);
  if (decoder === 'taesd' && !hasTiny) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `DECODER=taesd needs the tiny autoencoder's decoder at ${tinyFile}, which does not exist. Export ` +
        'madebyollin/taesd (SD 1.x/2.x) or taesdxl (SDXL) decoder to ONNX there, or use DECODER=vae.',
      { context: { file: tinyFile } },
    );
  }
  if (hasTiny) toOpen.push({ file: tinyFile, what: 'tiny decoder (TAESD)' });
  if (safety !== null) toOpen.push({ file: safety.file, what: 'safety checker' });
  const sessions = await openSessions(toOpen, options);
  const releaseAll = async () => {
    const all = sessions.splice(0);
    await Promise.allSettled(all.map((s) => s.release()));
  };

  try {
    const textEncoder = describeTextEncoder(teFile, sessions[0]!);
    const unet = describeUnet(unetFile, sessions[1]!, latentChannels);
    const vaeDecoder = describeVae(vaeFile, sessions[2]!);
    const textEncoder2 = kind === 'sdxl' ? describeTextEncoder(te2File, sessions[3]!) : null;
    const tinyDecoder = hasTiny ? describeVae(tinyFile, sessions[kind === 'sdxl' ? 4 : 3]!) : null;
    const openClip = tokenizer.padTokenId !== tokenizer.eosTokenId;
    const family = checkFamily(dir, kind, unet, textEncoder, textEncoder2, openClip);

    const teOut = ioSpecs(textEncoder.session, 'output').find((o) => o.name === textEncoder.output);
    const teDim = teOut === undefined ? null : fixedDim(teOut, 2);
    const unetDim = fixedDim(unet.encoderHiddenStates, 2);
    if (family !== 'sdxl' && teDim !== null && unetDim !== null && teDim !== unetDim) {
      throw badModel(
        unetFile,
        `encoder_hidden_states expects width ${unetDim} but the text encoder produces ${teDim}: the folder mixes models`,
      );
    }
    const safetyChecker =
      safety === null ? null : describeSafetyChecker(safety.file, sessions.at(-1)!, safety.preprocess);
    if (family === 'sdxl' && vaeDecoder.latent.type === 'float16') {
      options.warn?.(
        `${vaeFile} is float16: SDXL's original VAE overflows in float16 (black or noisy images); ` +
          'use a float32 VAE or the fp16-fixed one.',
      );
    }

    let closed = false;
    return {
      dir,
      name: demo && typeof marker.label === 'string' ? marker.label : path.basename(dir),
      demo,
      dtype: unet.sample.type,
      family,
      defaults,
      tokenizer,
      second:
        textEncoder2 === null || tokenizer2 === null
          ? null
          : { tokenizer: tokenizer2, textEncoder: textEncoder2 },
      forceZerosForEmptyPrompt: family === 'sdxl' && index.force_zeros_for_empty_prompt !== false,
      schedulerConfig,
      vaeScalingFactor: typeof scaling === 'number' ? scaling : DEFAULT_VAE_SCALING_FACTOR,
      vaeScaleFactor,
      latentChannels,
      textEncoder,
      unet,
      vaeDecoder,
      tinyDecoder,
      decoder,
      safetyChecker,
      close: async () => {
        if (closed) return;
        closed = true;
        await releaseAll();
      },
    };
  } catch (error) {
    await releaseAll();
    throw error;
  }
}

async function loadTokenizer(dir: string, folder: string): Promise<ClipTokenizer> {
  try {
    return await ClipTokenizer.fromModelDir(dir, folder);
  } catch (error) {
    if (error instanceof CodedError) throw error;
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Cannot load the tokenizer in ${path.join(dir, folder)}: ${(error as Error).message}. Expected CLIP's ` +
        'vocab.json (49408 entries) and merges.txt.',
      { cause: error, context: { file: path.join(dir, folder) } },
    );
  }
}
