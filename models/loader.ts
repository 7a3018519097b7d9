import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { CodedError, ErrorCode, InternalError } from '../core/errors.ts';
import { REQUIRED_MODEL_FILES } from './layout.ts';
import { createSession, type ProviderOptions } from './providers.ts';
import { type FloatElement, type IntElement, isFloatElement, isIntElement } from './tensors.ts';
import { ClipTokenizer } from './tokenizer.ts';
import type { SchedulerConfig } from './types.ts';

/**
 * Loads an SD 1.x ONNX model folder (diffusers' ONNX exporter, 2022-era exports, optimum; fp32 or fp16)
 * into sessions plus a description of each session's inputs, read from the session's own metadata.
 * Nothing about names, element types or ranks is assumed beyond the roles the pipeline feeds.
 */

/** One input or output as the session declares it. */
export interface IoSpec {
  readonly name: string;
  readonly type: string;
  /** Numbers are fixed sizes; strings are symbolic (dynamic) dimensions. */
  readonly shape: readonly (number | string)[];
}

export interface TextEncoderModel {
  readonly session: InferenceSession;
  readonly inputIds: IoSpec & { readonly type: IntElement };
  /** Present only in exports that take a mask; fed all ones (what diffusers' `attention_mask=None` means). */
  readonly attentionMask: (IoSpec & { readonly type: IntElement }) | null;
  readonly output: string;
  /** Fixed batch size of the export, or null when dynamic. */
  readonly fixedBatch: number | null;
}

export interface UnetModel {
  readonly session: InferenceSession;
  readonly sample: IoSpec & { readonly type: FloatElement };
  /** float32 / float16 / int64 / int32, rank 0 (optimum >= 1.24) or rank 1 ([B] or [1]). */
  readonly timestep: IoSpec;
  readonly encoderHiddenStates: IoSpec & { readonly type: FloatElement };
  /** LCM-distilled UNets (time_cond_proj_dim): the guidance-scale embedding, [B, dim]. */
  readonly timestepCond: (IoSpec & { readonly type: FloatElement }) | null;
  readonly output: string;
  readonly fixedBatch: number | null;
  /** Fixed latent height/width of a static-shape export, or null when dynamic. */
  readonly fixedLatentSize: { readonly height: number; readonly width: number } | null;
}

export interface VaeDecoderModel {
  readonly session: InferenceSession;
  readonly latent: IoSpec & { readonly type: FloatElement };
  readonly output: string;
  readonly fixedLatentSize: { readonly height: number; readonly width: number } | null;
}

export interface SafetyCheckerModel {
  readonly session: InferenceSession;
  readonly clipInput: IoSpec & { readonly type: FloatElement };
  readonly images: IoSpec & { readonly type: FloatElement };
  readonly nsfwOutput: string;
  readonly preprocess: ClipImagePreprocess;
}

/** transformers' CLIPImageProcessor settings (feature_extractor/preprocessor_config.json). */
export interface ClipImagePreprocess {
  readonly shortestEdge: number;
  readonly cropHeight: number;
  readonly cropWidth: number;
  readonly rescaleFactor: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

export interface LoadedModel {
  readonly dir: string;
  readonly name: string;
  readonly demo: boolean;
  readonly dtype: FloatElement;
  readonly tokenizer: ClipTokenizer;
  readonly schedulerConfig: SchedulerConfig;
  /** vae_decoder/config.json `scaling_factor` (0.18215 for SD 1.x). */
  readonly vaeScalingFactor: number;
  /** Pixels per latent cell: 2^(len(block_out_channels) - 1), 8 for SD 1.x. */
  readonly vaeScaleFactor: number;
  readonly latentChannels: number;
  readonly textEncoder: TextEncoderModel;
  readonly unet: UnetModel;
  readonly vaeDecoder: VaeDecoderModel;
  readonly safetyChecker: SafetyCheckerModel | null;
  /** Releases every session; safe to call twice. */
  close(): Promise<void>;
}

export interface LoadModelOptions extends ProviderOptions {
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
    `Model folder ${dir} is incomplete: missing ${list}. Expected a Stable Diffusion 1.x ONNX folder ` +
      '(text_encoder/, unet/, vae_decoder/ each with model.onnx, tokenizer/vocab.json + merges.txt, ' +
      'scheduler/scheduler_config.json), as written by diffusers or optimum, or by `imagine models download`.',
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

/** Reads a JSON object; a missing file gives `fallback` (when given), a corrupt one a clear error. */
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

function badModel(file: string, message: string): CodedError {
  return new InternalError(ErrorCode.ModelLoad, `${file}: ${message}`, { context: { file } });
}

/** Inputs/outputs of a session, from its metadata. */
export function ioSpecs(session: InferenceSession, which: 'input' | 'output'): IoSpec[] {
  const names = which === 'input' ? session.inputNames : session.outputNames;
  const metadata = which === 'input' ? session.inputMetadata : session.outputMetadata;
  return names.map((name, i) => {
    const m = metadata[i];
    if (m === undefined || !m.isTensor) return { name, type: 'non-tensor', shape: [] };
    return { name, type: m.type, shape: m.shape };
  });
}

/** Picks the input that plays `role`: by one of the usual names, else by a structural test. */
function pick(
  specs: readonly IoSpec[],
  taken: Set<string>,
  names: readonly string[],
  fallback: (s: IoSpec) => boolean,
): IoSpec | undefined {
  const byName = specs.find((s) => !taken.has(s.name) && names.includes(s.name));
  const found = byName ?? specs.find((s) => !taken.has(s.name) && fallback(s));
  if (found !== undefined) taken.add(found.name);
  return found;
}

function describe(specs: readonly IoSpec[]): string {
  return specs.map((s) => `${s.name}: ${s.type}[${s.shape.join(', ')}]`).join('; ');
}

function fixedDim(spec: IoSpec, index: number): number | null {
  const d = spec.shape[index];
  return typeof d === 'number' && d > 0 ? d : null;
}

function requireFloat(file: string, spec: IoSpec | undefined, role: string, all: IoSpec[]) {
  if (spec === undefined || !isFloatElement(spec.type)) {
    throw badModel(
      file,
      `has no float32/float16 input for ${role} (inputs: ${describe(all)}). Expected a Stable Diffusion 1.x export.`,
    );
  }
  return spec as IoSpec & { readonly type: FloatElement };
}

function leftovers(file: string, specs: readonly IoSpec[], taken: Set<string>, expected: string): void {
  const extra = specs.filter((s) => !taken.has(s.name));
  if (extra.length > 0) {
    throw badModel(
      file,
      `has inputs this pipeline cannot feed: ${describe(extra)} (expected ${expected}). ` +
        'Is this a ControlNet, inpainting or SDXL model? Only SD 1.x text-to-image folders are supported.',
    );
  }
}

function describeTextEncoder(file: string, session: InferenceSession): TextEncoderModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const ids = pick(inputs, taken, ['input_ids'], (s) => isIntElement(s.type) && s.shape.length === 2);
  if (ids === undefined || !isIntElement(ids.type) || ids.shape.length !== 2) {
    throw badModel(file, `expected an int32/int64 input_ids [batch, 77] input, found ${describe(inputs)}`);
  }
  const seq = fixedDim(ids, 1);
  if (seq !== null && seq !== 77) {
    throw badModel(file, `input_ids has sequence length ${seq}; SD 1.x CLIP text encoders take 77 tokens`);
  }
  const mask = pick(inputs, taken, ['attention_mask'], (s) => isIntElement(s.type) && s.shape.length === 2);
  leftovers(file, inputs, taken, 'input_ids[, attention_mask]');
  const out =
    outputs.find((o) => o.name === 'last_hidden_state') ??
    outputs.find((o) => isFloatElement(o.type) && o.shape.length === 3) ??
    outputs[0];
  if (out === undefined || !isFloatElement(out.type)) {
    throw badModel(file, `expected a float last_hidden_state output, found ${describe(outputs)}`);
  }
  return {
    session,
    inputIds: ids as IoSpec & { type: IntElement },
    attentionMask: mask === undefined ? null : (mask as IoSpec & { type: IntElement }),
    output: out.name,
    fixedBatch: fixedDim(ids, 0),
  };
}

function describeUnet(file: string, session: InferenceSession, latentChannels: number): UnetModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const sample = requireFloat(
    file,
    pick(inputs, taken, ['sample'], (s) => s.shape.length === 4),
    'sample [batch, 4, h, w]',
    inputs,
  );
  const ehs = requireFloat(
    file,
    pick(inputs, taken, ['encoder_hidden_states'], (s) => s.shape.length === 3),
    'encoder_hidden_states [batch, 77, dim]',
    inputs,
  );
  const timestep = pick(inputs, taken, ['timestep', 'timesteps', 't'], (s) => s.shape.length <= 1);
  if (
    timestep === undefined ||
    !(isFloatElement(timestep.type) || isIntElement(timestep.type) || timestep.type === 'float64')
  ) {
    throw badModel(file, `expected a numeric timestep input of rank 0 or 1, found ${describe(inputs)}`);
  }
  if (timestep.shape.length > 1) throw badModel(file, `timestep input has rank ${timestep.shape.length}`);
  const cond = pick(inputs, taken, ['timestep_cond'], (s) => isFloatElement(s.type) && s.shape.length === 2);
  leftovers(file, inputs, taken, 'sample, timestep, encoder_hidden_states[, timestep_cond]');
  const channels = fixedDim(sample, 1);
  if (channels !== null && channels !== latentChannels) {
    throw badModel(
      file,
      `sample has ${channels} channels; a text-to-image SD 1.x UNet takes ${latentChannels} ` +
        '(9 means an inpainting model, which this pipeline does not run)',
    );
  }
  const out = outputs.find((o) => o.name === 'out_sample') ?? outputs[0];
  if (out === undefined || !isFloatElement(out.type)) {
    throw badModel(file, `expected a float out_sample output, found ${describe(outputs)}`);
  }
  const h = fixedDim(sample, 2);
  const w = fixedDim(sample, 3);
  return {
    session,
    sample,
    timestep,
    encoderHiddenStates: ehs,
    timestepCond: cond === undefined ? null : (cond as IoSpec & { type: FloatElement }),
    output: out.name,
    fixedBatch: fixedDim(sample, 0),
    fixedLatentSize: h !== null && w !== null ? { height: h, width: w } : null,
  };
}

function describeVae(file: string, session: InferenceSession): VaeDecoderModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const latent = requireFloat(
    file,
    pick(inputs, taken, ['latent_sample', 'latents', 'z'], (s) => s.shape.length === 4),
    'latent_sample [batch, 4, h, w]',
    inputs,
  );
  leftovers(file, inputs, taken, 'latent_sample');
  const out = outputs.find((o) => o.name === 'sample') ?? outputs[0];
  if (out === undefined || !isFloatElement(out.type)) {
    throw badModel(file, `expected a float sample output, found ${describe(outputs)}`);
  }
  const h = fixedDim(latent, 2);
  const w = fixedDim(latent, 3);
  return {
    session,
    latent,
    output: out.name,
    fixedLatentSize: h !== null && w !== null ? { height: h, width: w } : null,
  };
}

function describeSafetyChecker(
  file: string,
  session: InferenceSession,
  preprocess: ClipImagePreprocess,
): SafetyCheckerModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const clipInput = requireFloat(
    file,
    pick(inputs, taken, ['clip_input'], (s) => s.shape.length === 4 && fixedDim(s, 1) === 3),
    'clip_input [batch, 3, 224, 224]',
    inputs,
  );
  const images = requireFloat(
    file,
    pick(inputs, taken, ['images'], (s) => s.shape.length === 4),
    'images [batch, h, w, 3]',
    inputs,
  );
  leftovers(file, inputs, taken, 'clip_input, images');
  const nsfw = outputs.find((o) => o.name === 'has_nsfw_concepts') ?? outputs.find((o) => o.type === 'bool');
  if (nsfw === undefined)
    throw badModel(file, `expected a bool has_nsfw_concepts output, found ${describe(outputs)}`);
  return { session, clipInput, images, nsfwOutput: nsfw.name, preprocess };
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
  const present = await Promise.all(REQUIRED_FILES.map((f) => isFile(path.join(dir, f))));
  const missing = REQUIRED_FILES.filter((_, i) => !present[i]);
  if (missing.length > 0) throw missingFile(dir, missing);

  // Read only to fail early on a corrupt file; nothing in it changes how the pipeline runs.
  await readJsonObject(path.join(dir, 'model_index.json'), 'the diffusers model_index.json', {});
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

  let tokenizer: ClipTokenizer;
  try {
    tokenizer = await ClipTokenizer.fromModelDir(dir);
  } catch (error) {
    if (error instanceof CodedError) throw error;
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Cannot load the tokenizer in ${path.join(dir, 'tokenizer')}: ${(error as Error).message}. Expected CLIP's ` +
        'vocab.json (49408 entries) and merges.txt.',
      { cause: error, context: { file: path.join(dir, 'tokenizer') } },
    );
  }

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

    const teOut = ioSpecs(textEncoder.session, 'output').find((o) => o.name === textEncoder.output);
    const teDim = teOut === undefined ? null : fixedDim(teOut, 2);
    const unetDim = fixedDim(unet.encoderHiddenStates, 2);
    if (teDim !== null && unetDim !== null && teDim !== unetDim) {
      throw badModel(
        unetFile,
        `encoder_hidden_states expects width ${unetDim} but the text encoder produces ${teDim}: the folder mixes models`,
      );
    }
    const safetyChecker =
      safety === null ? null : describeSafetyChecker(safety.file, sessions[3]!, safety.preprocess);

    let closed = false;
    return {
      dir,
      name: demo && typeof marker.label === 'string' ? marker.label : path.basename(dir),
      demo,
      dtype: unet.sample.type,
      tokenizer,
      schedulerConfig,
      vaeScalingFactor: typeof scaling === 'number' ? scaling : DEFAULT_VAE_SCALING_FACTOR,
      vaeScaleFactor,
      latentChannels,
      textEncoder,
      unet,
      vaeDecoder,
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
