import { z } from 'zod';
import { MODEL_NAME_RE } from './models.ts';
import { MAX_PROMPT_CHARS } from './request.ts';
import { SAMPLERS } from './samplers.ts';
import { GRID_SIZE, MAX_SEED } from './seeds.ts';

/** Chat surfaces a job can come from and be delivered to. */
export const SURFACES = ['discord', 'slack', 'web', 'cli'] as const;
export type Surface = (typeof SURFACES)[number];

export const JOB_KINDS = ['imagine', 'refine', 'reroll'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Current job spec version. Bump it (and keep parsing the old one) when the shape changes. */
export const JOB_SPEC_VERSION = 1;

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

export const jobSpecSchema = z
  .object({
    v: z.literal(JOB_SPEC_VERSION),
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
    if (spec.kind === 'refine' && spec.parent?.index === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['parent', 'index'],
        message: 'a refine job needs the image index',
      });
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
