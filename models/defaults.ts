import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ErrorCode, InternalError } from '../core/errors.ts';
import { SAMPLERS, type SamplerName } from '../core/samplers.ts';
import type { ModelDefaults } from './engine.ts';
import type { FamilyName } from './family.ts';
import { readOnnxIo } from './onnx-builder/inspect.ts';
import type { SchedulerConfig } from './types.ts';

/**
 * Generation defaults that fit a model (steps, guidance, size, scheduler), read from the model folder:
 * its `imagine.json` when there is one (written by `imagine models download`, or by hand), field by
 * field over the defaults known for its family and scheduler config. Callers use them only where the
 * user gave no value; a deployment's settings override them. No onnxruntime import: `models list`
 * reads them too.
 */

export type { ModelDefaults } from './engine.ts';

/** The file in a model folder that names its defaults. */
export const IMAGINE_JSON = 'imagine.json';

const defaultsSchema = z
  .object({
    steps: z.number().int().min(1).max(1000).optional(),
    guidance: z.number().min(0).max(30).optional(),
    width: z.number().int().min(64).max(8192).multipleOf(8).optional(),
    height: z.number().int().min(64).max(8192).multipleOf(8).optional(),
    scheduler: z.enum(SAMPLERS).optional(),
  })
  .strict();

/** `imagine.json`: `{"defaults": {...}}` plus, for catalogue downloads, the entry it came from. */
export const imagineJsonSchema = z
  .object({
    defaults: defaultsSchema,
    /** Name of the `models download` catalogue entry the folder was downloaded from. */
    catalog: z.string().min(1).optional(),
  })
  .strict();

export type ImagineJson = z.infer<typeof imagineJsonSchema>;
export type PartialDefaults = z.infer<typeof defaultsSchema>;

const ALLOWED_KEYS =
  'catalog, defaults.steps, defaults.guidance, defaults.width, defaults.height, defaults.scheduler';

/** diffusers scheduler class → the sampler name that builds the same scheduler. */
const SCHEDULER_CLASSES: Readonly<Record<string, SamplerName>> = {
  PNDMScheduler: 'pndm',
  DDIMScheduler: 'ddim',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler_a',
  DPMSolverMultistepScheduler: 'dpmpp_2m',
  LCMScheduler: 'lcm',
};

/** The sampler a folder's own scheduler config names, when this engine has it. */
export function ownScheduler(config: SchedulerConfig): SamplerName | undefined {
  const cls = config._class_name;
  if (typeof cls !== 'string') return undefined;
  const name = SCHEDULER_CLASSES[cls];
  if (name === 'dpmpp_2m' && config.use_karras_sigmas === true) return 'dpmpp_2m_karras';
  return name;
}

/** True for SD-Turbo/SDXL-Turbo's scheduler: EulerAncestral with trailing timestep spacing. */
export function isTurboScheduler(config: SchedulerConfig): boolean {
  return config._class_name === 'EulerAncestralDiscreteScheduler' && config.timestep_spacing === 'trailing';
}

/**
 * The defaults known for a family and scheduler config, without imagine.json. `sampleSize` is the UNet's
 * latent size (unet/config.json `sample_size`), when known: 96 with v-prediction is SD 2.x 768.
 */
export function knownDefaults(
  family: FamilyName,
  config: SchedulerConfig,
  sampleSize?: number,
): ModelDefaults {
  const own = ownScheduler(config);
  const scheduler = own === undefined ? {} : { scheduler: own };
  if (isTurboScheduler(config)) {
    // Distilled for 1-4 steps without guidance, at 512² (SDXL-Turbo too).
    const name = family === 'sdxl' ? 'SDXL-Turbo' : 'SD-Turbo';
    return {
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      ...scheduler,
      source: 'family',
      reason: `${name} (EulerAncestral scheduler with trailing spacing)`,
    };
  }
  if (family === 'sdxl') {
    return {
      steps: 30,
      guidance: 5,
      width: 1024,
      height: 1024,
      ...scheduler,
      source: 'family',
      reason: 'SDXL',
    };
  }
  if (family === 'sd2' && config.prediction_type === 'v_prediction' && sampleSize === 96) {
    return {
      steps: 25,
      guidance: 7.5,
      width: 768,
      height: 768,
      ...scheduler,
      source: 'family',
      reason: 'SD 2.x 768 (v-prediction, 96² latents)',
    };
  }
  return {
    steps: 25,
    guidance: 7.5,
    width: 512,
    height: 512,
    ...scheduler,
    source: 'family',
    reason: family === 'sd2' ? 'SD 2.x' : 'SD 1.x',
  };
}

function badImagineJson(file: string, message: string, cause?: unknown): InternalError {
  return new InternalError(ErrorCode.ModelLoad, `${file}: ${message}`, {
    ...(cause === undefined ? {} : { cause }),
    context: { file },
  });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length === 0 ? 'the top level' : issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const prefix = issue.path.length === 0 ? '' : `${issue.path.join('.')}.`;
    const keys = issue.keys.map((k) => `"${prefix}${k}"`).join(', ');
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${keys} (allowed: ${ALLOWED_KEYS})`;
  }
  return `${where}: ${issue.message}`;
}

/** Reads and validates `{dir}/imagine.json`; undefined when the folder has none. */
export async function readImagineJson(dir: string): Promise<ImagineJson | undefined> {
  const file = path.join(dir, IMAGINE_JSON);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw badImagineJson(file, `cannot be read (${(error as Error).message})`, error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw badImagineJson(file, `is not valid JSON (${(error as Error).message})`, error);
  }
  const parsed = imagineJsonSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(describeIssue).join('; ');
    throw badImagineJson(
      file,
      `${issues}. Expected {"defaults": {"steps": 1-1000, "guidance": 0-30, "width"/"height": multiples ` +
        `of 8 from 64 to 8192, "scheduler": ${SAMPLERS.join(' | ')}}}, every field optional.`,
    );
  }
  return parsed.data;
}

/** Writes `{dir}/imagine.json` (validated first, so a bad entry never lands on disk). */
export async function writeImagineJson(dir: string, content: ImagineJson): Promise<void> {
  const checked = imagineJsonSchema.parse(content);
  await writeFile(path.join(dir, IMAGINE_JSON), `${JSON.stringify(checked, null, 2)}\n`);
}

/** The UNet's latent size: unet/config.json `sample_size`, else the ONNX sample input's fixed height. */
export async function unetSampleSize(dir: string): Promise<number | undefined> {
  try {
    const config = JSON.parse(await readFile(path.join(dir, 'unet', 'config.json'), 'utf8')) as {
      sample_size?: unknown;
    };
    if (typeof config.sample_size === 'number') return config.sample_size;
  } catch {
    // No config.json (diffusers' ONNX exporter writes none): ask the ONNX graph.
  }
  try {
    const io = await readOnnxIo(path.join(dir, 'unet', 'model.onnx'));
    const sample = io.inputs.find((i) => i.name === 'sample') ?? io.inputs[0];
    const h = sample?.shape?.[2];
    return typeof h === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** A folder's defaults: imagine.json's fields over the known ones for its family and scheduler. */
export async function resolveModelDefaults(
  dir: string,
  family: FamilyName,
  schedulerConfig: SchedulerConfig,
): Promise<ModelDefaults> {
  const file = await readImagineJson(dir);
  // Only the v-prediction SD 2.x rule needs the UNet's size; skip the file reads otherwise.
  const v = family === 'sd2' && schedulerConfig.prediction_type === 'v_prediction';
  const known = knownDefaults(family, schedulerConfig, v ? await unetSampleSize(dir) : undefined);
  if (file === undefined) return known;
  const given = Object.fromEntries(Object.entries(file.defaults).filter(([, v]) => v !== undefined));
  return { ...known, ...given, source: 'imagine.json', reason: `${IMAGINE_JSON} over ${known.reason}` };
}

/** "1 step, guidance 0, 512x512, euler_a" */
export function formatDefaults(d: Omit<ModelDefaults, 'source' | 'reason'>): string {
  return (
    `${d.steps} step${d.steps === 1 ? '' : 's'}, guidance ${d.guidance}, ${d.width}x${d.height}` +
    (d.scheduler === undefined ? '' : `, ${d.scheduler}`)
  );
}
