import { ErrorCode, UserError } from './errors.ts';
import type { InitSource, JobKind, JobSpec, JobSpecInput } from './jobspec.ts';
import { IMAGE_SPEC_VERSION, JOB_SPEC_VERSION } from './jobspec.ts';
import type { ImagineRequest } from './request.ts';
import type { SamplerName } from './samplers.ts';

/**
 * A batch of images and how a job spec is made from one. Every job (imagine, refine, reroll, and the
 * next kinds) is a batch plus where it came from; `specFrom` is the one place that turns that into
 * the spec the queue takes, so a new kind or setting adds a field here instead of a copy per caller.
 */

/** The settings a batch shares across its images (what a grid shows next to its seeds). */
export interface GridSettings {
  readonly negative: string;
  readonly sampler: SamplerName;
  readonly steps: number;
  readonly guidance: number;
  readonly width: number;
  readonly height: number;
  /** The served model's name (absent in specs from before models had names: the default one). */
  readonly model?: string;
  /** Image-to-image: where the starting picture comes from (absent: text-to-image). */
  readonly init?: InitSource;
  /** Image-to-image: diffusers' strength; present exactly when `init` is. */
  readonly strength?: number;
}

/** Per-image prompts and seeds (image k is prompts[k] on seeds[k]) and the shared settings. A JobSpec is one. */
export interface GridBatch extends GridSettings {
  readonly prompts: readonly string[];
  readonly seeds: readonly number[];
}

/** A batch to run as a new job. */
export interface NextBatch extends GridBatch {
  readonly kind: JobKind;
  /** Refine, vary, upscale: which image of the parent grid (0-based). */
  readonly parentIndex?: number;
  /** Refine, reroll: the revision of the model the parent grid was made with; the worker must have it. */
  readonly modelRevision?: string;
}

export function settingsOf(batch: GridSettings): GridSettings {
  return {
    negative: batch.negative,
    sampler: batch.sampler,
    steps: batch.steps,
    guidance: batch.guidance,
    width: batch.width,
    height: batch.height,
    ...(batch.model === undefined ? {} : { model: batch.model }),
    ...(batch.init === undefined ? {} : { init: batch.init }),
    ...(batch.strength === undefined ? {} : { strength: batch.strength }),
  };
}

/** Image `index` (0-based) of a grid: its prompt and seed; a `UserError` when the grid has no such image. */
export function imageOf(grid: GridBatch, index: number): { prompt: string; seed: number } {
  const prompt = grid.prompts[index];
  const seed = grid.seeds[index];
  if (!Number.isInteger(index) || prompt === undefined || seed === undefined) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      `This grid has images 1 to ${grid.prompts.length}; there is no image ${index + 1}.`,
    );
  }
  return { prompt, seed };
}

/** `/imagine`: the request's prompt once per seed, with its settings. */
export function imagineBatch(request: ImagineRequest, seeds: readonly number[]): NextBatch {
  return { ...settingsOf(request), kind: 'imagine', prompts: seeds.map(() => request.prompt), seeds };
}

/** Where a new job comes from: the interaction, when it arrived, and (refine, reroll) the grid it continues. */
export interface SpecOrigin {
  readonly origin: JobSpecInput['origin'];
  /** ms since the epoch. */
  readonly requestedAt: number;
  /** The grid this job continues; required for every kind but imagine (the spec's schema checks it). */
  readonly parentId?: string;
}

/** The job spec for a batch. Pure; the queue validates it (`parseJobSpec`) when it is submitted. */
export function specFrom(batch: NextBatch, from: SpecOrigin): JobSpecInput {
  const parent: JobSpec['parent'] =
    from.parentId === undefined
      ? undefined
      : batch.parentIndex === undefined
        ? { gridId: from.parentId }
        : { gridId: from.parentId, index: batch.parentIndex };
  return {
    // Image-to-image specs carry their own version, so workers from before them refuse them.
    v: batch.init === undefined ? JOB_SPEC_VERSION : IMAGE_SPEC_VERSION,
    kind: batch.kind,
    ...(parent === undefined ? {} : { parent }),
    prompts: [...batch.prompts],
    seeds: [...batch.seeds],
    ...settingsOf(batch),
    ...(batch.modelRevision === undefined ? {} : { modelRevision: batch.modelRevision }),
    origin: { ...from.origin, messageRef: { ...from.origin.messageRef } },
    requestedAt: from.requestedAt,
  };
}
