import type { InferenceSession } from 'onnxruntime-node';
import { type CodedError, ErrorCode, InternalError } from '../core/errors.ts';
import {
  type FloatElement,
  type IntElement,
  isFloatElement,
  isIntElement,
  isTokenIdElement,
  TOKEN_ID_ELEMENTS,
  type TokenIdElement,
} from './tensors.ts';

/**
 * Which input of a session plays which role in the pipeline, read from the session's own metadata (names
 * first, shapes as the fallback), and the refusal of inputs the pipeline cannot feed.
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
  /** int64 (diffusers), int32 or float32 (some Olive exports): fed as declared. */
  readonly inputIds: IoSpec & { readonly type: TokenIdElement };
  /** Present only in exports that take a mask; fed all ones (what diffusers' `attention_mask=None` means). */
  readonly attentionMask: (IoSpec & { readonly type: IntElement }) | null;
  readonly output: string;
  /**
   * The penultimate hidden state (`hidden_states.{N-1}` of an optimum export with `hidden_states.0..N`),
   * what SDXL conditions on; null when the export has no hidden-state outputs.
   */
  readonly penultimate: string | null;
  /** The projected pooled embedding (`text_embeds` of CLIPTextModelWithProjection), or null. */
  readonly textEmbeds: string | null;
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
  /** SDXL UNets: the pooled text embedding [B, dim], from the second text encoder. */
  readonly textEmbeds: (IoSpec & { readonly type: FloatElement }) | null;
  /** SDXL UNets: (original size, crop top-left, target size) [B, 6]. */
  readonly timeIds: (IoSpec & { readonly type: FloatElement }) | null;
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

/** image-to-image's VAE encoder: `sample` [B, 3, H, W] in [-1, 1] → the latent distribution or a sample. */
export interface VaeEncoderModel {
  readonly session: InferenceSession;
  readonly sample: IoSpec & { readonly type: FloatElement };
  readonly output: string;
  /**
   * `parameters`: mean and log-variance side by side (optimum's `latent_parameters`, [B, 2C, h, w]), so
   * the engine draws the sample with the image's generator as diffusers does; `sample`: an older export
   * whose graph samples (`latent_sample`, [B, C, h, w]) with its own random op, which no seed reproduces.
   */
  readonly kind: 'parameters' | 'sample';
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

export function badModel(file: string, message: string): CodedError {
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

export function fixedDim(spec: IoSpec, index: number): number | null {
  const d = spec.shape[index];
  return typeof d === 'number' && d > 0 ? d : null;
}

function requireFloat(file: string, spec: IoSpec | undefined, role: string, all: IoSpec[]) {
  if (spec === undefined || !isFloatElement(spec.type)) {
    throw badModel(
      file,
      `has no float32/float16 input for ${role} (inputs: ${describe(all)}). Expected a Stable Diffusion 1.x, ` +
        '2.x or SDXL export.',
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
        'Is this a ControlNet, inpainting or refiner model? Only SD 1.x, SD 2.x and SDXL text-to-image ' +
        'folders are supported.',
    );
  }
}

export function describeTextEncoder(file: string, session: InferenceSession): TextEncoderModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const ids = pick(inputs, taken, ['input_ids'], (s) => isTokenIdElement(s.type) && s.shape.length === 2);
  if (ids !== undefined && !isTokenIdElement(ids.type)) {
    throw badModel(
      file,
      `input_ids is ${ids.type}; supported types: ${TOKEN_ID_ELEMENTS.join(', ')} (inputs: ${describe(inputs)})`,
    );
  }
  if (ids === undefined || ids.shape.length !== 2) {
    throw badModel(
      file,
      `expected an input_ids [batch, 77] input of type ${TOKEN_ID_ELEMENTS.join(', ')}, found ${describe(inputs)}`,
    );
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
  // optimum names them hidden_states.0 (embeddings) .. hidden_states.N (last layer): N+1 outputs.
  const hidden = outputs
    .map((o) => ({ name: o.name, index: /^hidden_states\.(\d+)$/u.exec(o.name)?.[1] }))
    .filter((h): h is { name: string; index: string } => h.index !== undefined)
    .sort((a, b) => Number(a.index) - Number(b.index));
  const pooled = outputs.find((o) => o.name === 'text_embeds' && isFloatElement(o.type));
  return {
    session,
    inputIds: ids as IoSpec & { type: TokenIdElement },
    attentionMask: mask === undefined ? null : (mask as IoSpec & { type: IntElement }),
    output: out.name,
    penultimate: hidden.length >= 2 ? hidden[hidden.length - 2]!.name : null,
    textEmbeds: pooled?.name ?? null,
    fixedBatch: fixedDim(ids, 0),
  };
}

export function describeUnet(file: string, session: InferenceSession, latentChannels: number): UnetModel {
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
  // By name only, and before timestep_cond (whose fallback takes any [B, n] float): SDXL's two extra
  // inputs are [B, n] floats too, so shapes cannot tell them apart.
  const textEmbeds = pick(inputs, taken, ['text_embeds'], () => false);
  const timeIds = pick(inputs, taken, ['time_ids'], () => false);
  const cond = pick(inputs, taken, ['timestep_cond'], (s) => isFloatElement(s.type) && s.shape.length === 2);
  for (const spec of [textEmbeds, timeIds]) {
    if (spec !== undefined && (!isFloatElement(spec.type) || spec.shape.length !== 2)) {
      throw badModel(
        file,
        `expected ${spec.name} to be float32/float16 [batch, n], found ${describe([spec])}`,
      );
    }
  }
  leftovers(
    file,
    inputs,
    taken,
    'sample, timestep, encoder_hidden_states[, timestep_cond] (SD 1.x/2.x), plus text_embeds and time_ids (SDXL)',
  );
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
    textEmbeds: textEmbeds === undefined ? null : (textEmbeds as IoSpec & { type: FloatElement }),
    timeIds: timeIds === undefined ? null : (timeIds as IoSpec & { type: FloatElement }),
    output: out.name,
    fixedBatch: fixedDim(sample, 0),
    fixedLatentSize: h !== null && w !== null ? { height: h, width: w } : null,
  };
}

export function describeVae(file: string, session: InferenceSession): VaeDecoderModel {
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

export function describeVaeEncoder(file: string, session: InferenceSession): VaeEncoderModel {
  const inputs = ioSpecs(session, 'input');
  const outputs = ioSpecs(session, 'output');
  const taken = new Set<string>();
  const sample = requireFloat(
    file,
    pick(inputs, taken, ['sample', 'images'], (s) => s.shape.length === 4),
    'sample [batch, 3, height, width]',
    inputs,
  );
  leftovers(file, inputs, taken, 'sample');
  const params = outputs.find((o) => o.name === 'latent_parameters');
  const drawn = outputs.find((o) => o.name === 'latent_sample' || o.name === 'latent_dist');
  const out = params ?? drawn;
  if (out === undefined || !isFloatElement(out.type)) {
    throw badModel(
      file,
      `expected a latent_parameters (or latent_sample) output, found ${describe(outputs)}`,
    );
  }
  return { session, sample, output: out.name, kind: params === undefined ? 'sample' : 'parameters' };
}

export function describeSafetyChecker(
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
