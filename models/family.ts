import path from 'node:path';
import { ErrorCode, InternalError } from '../core/errors.ts';
import type { TextEncoderModel, UnetModel } from './session-roles.ts';
import { fixedDim, ioSpecs } from './session-roles.ts';

/**
 * Which Stable Diffusion family a model folder holds, from its `model_index.json` (`_class_name`) and,
 * once the sessions are open, from the inputs its UNet takes. The families differ only where the engine
 * must know: SD 1.x and 2.x share one pipeline (2.x's OpenCLIP padding and v-prediction come from the
 * tokenizer and scheduler configs), SDXL adds a second text encoder and the UNet's text_embeds/time_ids.
 */

export type FamilyName = 'sd1' | 'sd2' | 'sdxl';

/** What the folder's files say before any session opens: the SD pipeline or SDXL. */
export type FolderKind = 'sd' | 'sdxl';

export const SUPPORTED_PIPELINES =
  'StableDiffusionPipeline (SD 1.x, SD 2.x, SD-Turbo) and StableDiffusionXLPipeline (SDXL, SDXL-Turbo) ' +
  'text-to-image folders, in the ONNX layout of diffusers or optimum';

/** The files an SDXL folder needs beyond the SD ones. */
export const SDXL_EXTRA_FILES = [
  'text_encoder_2/model.onnx',
  'tokenizer_2/vocab.json',
  'tokenizer_2/merges.txt',
] as const;

// Export tools prefix the diffusers class name: OnnxStableDiffusionPipeline (diffusers' exporter),
// ORTStableDiffusionXLPipeline (optimum).
const SD_CLASS = /^(?:ORT|Onnx)?(?:StableDiffusion|LatentConsistencyModel)(?:Img2Img)?Pipeline$/u;
const SDXL_CLASS = /^(?:ORT|Onnx)?StableDiffusionXL(?:Img2Img)?Pipeline$/u;

function unsupported(file: string, message: string, context: Record<string, unknown> = {}): InternalError {
  return new InternalError(
    ErrorCode.ModelLoad,
    `${file}: ${message}. This engine runs ${SUPPORTED_PIPELINES}.`,
    {
      context: { file, ...context },
    },
  );
}

/**
 * The kind a folder declares. `index` is model_index.json ({} when absent); without a `_class_name`
 * the folder is SDXL when it has a second text encoder (`hasTextEncoder2`).
 */
export function folderKind(
  dir: string,
  index: Record<string, unknown>,
  hasTextEncoder2: boolean,
): FolderKind {
  const file = path.join(dir, 'model_index.json');
  const found = index._class_name;
  if (found === undefined) return hasTextEncoder2 ? 'sdxl' : 'sd';
  if (typeof found !== 'string')
    throw unsupported(file, `_class_name is ${JSON.stringify(found)}, not a name`);
  if (SDXL_CLASS.test(found)) {
    // The SDXL refiner ships text_encoder_2 only and conditions on an aesthetic score.
    const te = index.text_encoder;
    if (Array.isArray(te) && te[0] === null) {
      throw unsupported(file, `names ${found} without a first text encoder: an SDXL refiner, not supported`, {
        found,
      });
    }
    return 'sdxl';
  }
  if (SD_CLASS.test(found)) return 'sd';
  throw unsupported(file, `names the pipeline ${found}, which is not supported`, { found });
}

/** Text encoder output width (hidden size) of `output`, or null when dynamic. */
function outputWidth(te: TextEncoderModel, output: string): number | null {
  const spec = ioSpecs(te.session, 'output').find((o) => o.name === output);
  return spec === undefined ? null : fixedDim(spec, spec.shape.length - 1);
}

/**
 * Checks that the opened sessions are the family the folder declares and returns it: an SD folder's
 * UNet must not take SDXL's extra inputs, an SDXL folder's must take both and its text encoders must
 * expose the hidden states SDXL conditions on.
 */
export function checkFamily(
  dir: string,
  kind: FolderKind,
  unet: UnetModel,
  textEncoder: TextEncoderModel,
  textEncoder2: TextEncoderModel | null,
  openClipPadding: boolean,
): FamilyName {
  const unetFile = path.join(dir, 'unet/model.onnx');
  const sdxlInputs = [unet.textEmbeds, unet.timeIds].filter((s) => s !== null).map((s) => s.name);
  if (kind === 'sd') {
    if (sdxlInputs.length > 0) {
      throw unsupported(
        unetFile,
        `takes ${sdxlInputs.join(' and ')} (an SDXL UNet) but the folder is not an SDXL one ` +
          '(model_index.json does not name StableDiffusionXLPipeline, or text_encoder_2/ is missing)',
      );
    }
    return openClipPadding ? 'sd2' : 'sd1';
  }
  if (unet.textEmbeds === null || unet.timeIds === null || textEncoder2 === null) {
    throw unsupported(
      unetFile,
      `is in an SDXL folder but takes no ${unet.textEmbeds === null ? 'text_embeds' : 'time_ids'} input; ` +
        'the folder mixes models',
    );
  }
  const timeIds = fixedDim(unet.timeIds, 1);
  if (timeIds !== null && timeIds !== 6) {
    // 5 = (original size, crop, aesthetic score): the refiner's conditioning.
    throw unsupported(
      unetFile,
      `time_ids has ${timeIds} values per row (SDXL base takes 6; 5 is the refiner)`,
    );
  }
  for (const [te, name, needPooled] of [
    [textEncoder, 'text_encoder', false],
    [textEncoder2, 'text_encoder_2', true],
  ] as const) {
    const missing = [
      ...(te.penultimate === null ? ['hidden_states.0..N (for the penultimate hidden state)'] : []),
      ...(needPooled && te.textEmbeds === null ? ['text_embeds (the pooled projection)'] : []),
    ];
    if (missing.length > 0) {
      throw unsupported(
        path.join(dir, name, 'model.onnx'),
        `has no ${missing.join(' and ')} output (outputs: ${te.session.outputNames.join(', ')}); SDXL needs ` +
          'an export with hidden states, as optimum writes',
      );
    }
  }
  const w1 = outputWidth(textEncoder, textEncoder.penultimate!);
  const w2 = outputWidth(textEncoder2, textEncoder2.penultimate!);
  const want = fixedDim(unet.encoderHiddenStates, 2);
  if (w1 !== null && w2 !== null && want !== null && w1 + w2 !== want) {
    throw unsupported(
      unetFile,
      `encoder_hidden_states expects width ${want} but the text encoders give ${w1} + ${w2}: the folder mixes models`,
    );
  }
  return 'sdxl';
}
