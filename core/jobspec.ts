import { z } from 'zod';
import { IMAGE_SOURCES, MAX_INIT_IMAGE_BYTES, MAX_INIT_IMAGE_PIXELS } from './image-prompt.ts';
import { MODEL_NAME_RE } from './models.ts';
import { MAX_PROMPT_CHARS } from './request.ts';
import { SAMPLERS } from './samplers.ts';
import { GRID_SIZE, MAX_SEED } from './seeds.ts';

/** Chat surfaces a job can come from and be delivered to. */
export const SURFACES = ['discord', 'slack', 'web', 'cli'] as const;
export type Surface = (typeof SURFACES)[number];

/**
 * `vary`: four new seeds on one image of a grid (image-to-image from it); `upscale`: one image at twice
 * the size (image-to-image from it, resized). An `imagine` job with an uploaded init image is an
 * "image prompt".
 */
export const JOB_KINDS = ['imagine', 'refine', 'reroll', 'vary', 'upscale'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Version of a text-to-image spec (the shape every worker reads). */
export const JOB_SPEC_VERSION = 1;
/**
 * Version of a spec that starts from a picture (`init`, `strength`). Its own number so a worker from
 * before image-to-image refuses it instead of silently dropping `init` and drawing from noise; text-to-image
 * specs keep version 1, so such workers go on running them during a rolling upgrade.
 */
export const IMAGE_SPEC_VERSION = 2;

/** Encodings an uploaded init image may have. */
export const INIT_IMAGE_MIMES = ['image/png', 'image/jpeg', 'image/webp'] as const;
export type InitImageMime = (typeof INIT_IMAGE_MIMES)[number];
/** Size limits of an uploaded init image: core/image-prompt.ts, which the engine reads too. */
export { MAX_INIT_IMAGE_BYTES, MAX_INIT_IMAGE_PIXELS };

const idString = z.string().min(1).max(200);

/** Where a job came from and where its result goes back to. `messageRef` is opaque to everyone but the adapter. */
export const originSchema = z.object({
  surface: z.enum(SURFACES),
  /** The requesting user's id on that surface. */
  user: idString,
  /** Display name, for captions. */
  userName: z.string().max(200).optional(),
  channel: idString,
  /** The workspace (Slack team, Discord guild) of the channel: where the result's team settings come from. */
  workspace: idString.optional(),
  /** Discord: the channel is age-restricted (NSFW), which the NSFW policy depends on (core/nsfw.ts). */
  ageRestricted: z.boolean().optional(),
  /** Thread to post in (Slack thread_ts), when the surface has threads. */
  thread: z.string().max(200).optional(),
  /** The chat interaction that created the job; the job id is derived from it, so redelivery is idempotent. */
  interactionId: idString,
  /** Adapter-private reference for delivery (interaction token, message ts, response_url…). */
  messageRef: z.record(z.string(), z.string().max(4000)).default({}),
});
export type Origin = z.output<typeof originSchema>;

/** Image `index` (0-based) of the finished grid `gridId`: its full-size PNG is the starting picture. */
export const gridInitSchema = z.object({
  from: z.literal('grid'),
  gridId: idString,
  index: z
    .number()
    .int()
    .min(0)
    .max(GRID_SIZE - 1),
});

/**
 * An uploaded picture, stored by the queue as a blob named by its SHA-256 (the bytes never go into the
 * spec); the other fields say what was checked when it was stored.
 */
export const uploadInitSchema = z.object({
  from: z.literal('upload'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/u),
  bytes: z.number().int().min(1).max(MAX_INIT_IMAGE_BYTES),
  width: z
    .number()
    .int()
    .min(1)
    .max(4096 * 4),
  height: z
    .number()
    .int()
    .min(1)
    .max(4096 * 4),
  mime: z.enum(INIT_IMAGE_MIMES),
  /** Where the picture came from, so the result says which one was used (image prompts). */
  source: z.enum(IMAGE_SOURCES).exactOptional(),
  /** Discord attachment id, Slack file id, or the uploaded file's name. */
  ref: z.string().min(1).max(200).exactOptional(),
  /** The file name the user gave it. */
  name: z.string().min(1).max(200).exactOptional(),
});

/** Where an image-to-image job's starting picture comes from. */
export const initSourceSchema = z.discriminatedUnion('from', [gridInitSchema, uploadInitSchema]);
export type InitSource = z.output<typeof initSourceSchema>;
export type UploadInit = z.output<typeof uploadInitSchema>;
export type GridInit = z.output<typeof gridInitSchema>;

export const jobSpecSchema = z
  .object({
    v: z.union([z.literal(JOB_SPEC_VERSION), z.literal(IMAGE_SPEC_VERSION)]),
    kind: z.enum(JOB_KINDS),
    /** The grid this job refines or rerolls, and (refine) which image of it, 0-based. */
    parent: z
      .object({
        gridId: idString,
        index: z
          .number()
          .int()
          .min(0)
          .max(GRID_SIZE - 1)
          .optional(),
      })
      .optional(),
    /** Image k is (prompts[k], seeds[k]). */
    prompts: z
      .array(
        z
          .string()
          .min(1)
          .max(MAX_PROMPT_CHARS + 4 * 200),
      )
      .min(1)
      .max(GRID_SIZE),
    seeds: z.array(z.number().int().min(0).max(MAX_SEED)).min(1).max(GRID_SIZE),
    negative: z.string().max(MAX_PROMPT_CHARS),
    sampler: z.enum(SAMPLERS),
    steps: z.number().int().min(1).max(500),
    guidance: z.number().min(0).max(30),
    width: z.number().int().min(64).max(4096).multipleOf(8),
    height: z.number().int().min(64).max(4096).multipleOf(8),
    /**
     * The served model's name; it picks the queue, so only workers with that model run the job.
     * Absent (specs from before MODELS): the model named `default`.
     */
    model: z.string().regex(MODEL_NAME_RE).exactOptional(),
    /** Refine, reroll: the revision of the parent grid's model; a worker with another one refuses the job. */
    modelRevision: z.string().min(1).max(64).exactOptional(),
    /**
     * Image-to-image: the starting picture of every image of the batch (resized to width x height when
     * its size differs). Kept by refine and reroll of such a grid, so they start from the same picture.
     */
    init: initSourceSchema.exactOptional(),
    /** Image-to-image: diffusers' `strength` (above 0, at most 1); present exactly when `init` is. */
    strength: z.number().gt(0).max(1).exactOptional(),
    origin: originSchema,
    /** When the user asked, ms since the epoch. */
    requestedAt: z.number().int().nonnegative(),
  })
  .superRefine((spec, ctx) => {
    if (spec.prompts.length !== spec.seeds.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['seeds'],
        message: `needs one seed per prompt (${spec.prompts.length} prompts, ${spec.seeds.length} seeds)`,
      });
    }
    if (spec.kind !== 'imagine' && spec.parent === undefined) {
      ctx.addIssue({ code: 'custom', path: ['parent'], message: `a ${spec.kind} job needs its parent grid` });
    }
    if (
      (spec.kind === 'refine' || spec.kind === 'vary' || spec.kind === 'upscale') &&
      spec.parent?.index === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['parent', 'index'],
        message: `a ${spec.kind} job needs the image index`,
      });
    }
    if ((spec.init === undefined) !== (spec.strength === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['strength'],
        message: 'strength goes with an init image, and only with one',
      });
    }
    if ((spec.init === undefined) !== (spec.v === JOB_SPEC_VERSION)) {
      ctx.addIssue({
        code: 'custom',
        path: ['v'],
        message: `version ${IMAGE_SPEC_VERSION} is for specs with an init image, ${JOB_SPEC_VERSION} for the others`,
      });
    }
    if (spec.kind === 'vary' || spec.kind === 'upscale') {
      // Both start from the image they were pressed on.
      const init = spec.init;
      if (init?.from !== 'grid' || init.gridId !== spec.parent?.gridId || init.index !== spec.parent?.index) {
        ctx.addIssue({
          code: 'custom',
          path: ['init'],
          message: `a ${spec.kind} job starts from its parent's image (init from the parent grid and index)`,
        });
      }
    }
  });

export type JobSpec = z.output<typeof jobSpecSchema>;
export type JobSpecInput = z.input<typeof jobSpecSchema>;

/** Both sides (bot and worker) parse with this; never trust a payload that crossed a process boundary. */
export function parseJobSpec(value: unknown): { ok: true; spec: JobSpec } | { ok: false; message: string } {
  const parsed = jobSpecSchema.safeParse(value);
  if (parsed.success) return { ok: true, spec: parsed.data };
  return {
    ok: false,
    message: parsed.error.issues.map((i) => `${i.path.join('.') || 'spec'}: ${i.message}`).join('; '),
  };
}

/**
 * Job (and grid record) id from the interaction that asked for it: a redelivered interaction maps to
 * the same id, so BullMQ refuses the duplicate. Only characters safe in Redis keys, BullMQ ids and
 * Discord custom_ids are kept.
 */
export function jobIdFor(surface: Surface, interactionId: string): string {
  const safe = interactionId.replace(/[^A-Za-z0-9_-]/gu, '_');
  const id = `${surface}-${safe}`;
  if (id.length <= 64) return id;
  // Keep long ids unique: a cheap stable hash (FNV-1a 32) of the full id, after a readable prefix.
  let h = 0x811c9dc5;
  for (let i = 0; i < interactionId.length; i++) h = Math.imul(h ^ interactionId.charCodeAt(i), 0x01000193);
  return `${id.slice(0, 55)}-${(h >>> 0).toString(36)}`;
}

export const JOB_ID_RE = /^[a-z]+-[A-Za-z0-9_-]{1,64}$/u;
