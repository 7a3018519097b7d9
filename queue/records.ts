import { z } from 'zod';
import { ErrorCode, InternalError, UserError } from '../core/errors.ts';
import { type JobSpec, jobSpecSchema, SURFACES, type Surface } from '../core/jobspec.ts';
import type { GridRecord, JobStatus, Jobs, JobTimings } from './types.ts';

/**
 * A grid record lives in one Redis hash. `base` (JSON) never changes after submit; the other fields
 * are updated atomically by the Lua scripts in scripts.ts.
 */
export interface RecordBase {
  readonly id: string;
  readonly spec: JobSpec;
  readonly prompts: readonly string[];
  readonly seeds: readonly number[];
  readonly owner: { readonly surface: Surface; readonly user: string };
  readonly surface: Surface;
  readonly channel: string;
  readonly createdAt: number;
  /** Written at submit and kept for older readers; the record's expiry is the hash's `expiresAt`. */
  readonly expiresAt: number;
}

/** What a finished job adds to its record (the `result` field). */
export interface RecordResult {
  readonly resultKeys: { readonly grid: string; readonly images: readonly string[] };
  readonly truncatedTokens: readonly number[];
  readonly nsfw?: readonly boolean[];
  readonly model: { readonly name: string; readonly demo: boolean };
}

export type Phases = NonNullable<JobTimings['phases']>;

const baseSchema = z.object({
  id: z.string(),
  spec: jobSpecSchema,
  prompts: z.array(z.string()),
  seeds: z.array(z.number()),
  owner: z.object({ surface: z.enum(SURFACES), user: z.string() }),
  surface: z.enum(SURFACES),
  channel: z.string(),
  createdAt: z.number(),
  expiresAt: z.number(),
});

const statusSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('queued'), position: z.number() }),
  z.object({ state: z.literal('running'), step: z.number(), total: z.number() }),
  z.object({ state: z.literal('done') }),
  z.object({
    state: z.literal('failed'),
    reason: z.string(),
    errorId: z.string().optional(),
    userFacing: z.boolean(),
  }),
  z.object({ state: z.literal('cancelled'), by: z.string() }),
]);

const resultSchema = z.object({
  resultKeys: z.object({ grid: z.string(), images: z.array(z.string()) }),
  truncatedTokens: z.array(z.number()),
  nsfw: z.array(z.boolean()).optional(),
  model: z.object({ name: z.string(), demo: z.boolean() }),
});

const phaseNames = ['queueWait', 'textEncode', 'denoise', 'decode', 'compose', 'store'] as const;

function corrupt(id: string, field: string, cause: unknown): InternalError {
  return new InternalError(ErrorCode.Redis, `grid record ${id} has a corrupt ${field} field`, {
    cause,
    context: { id, field },
  });
}

function parseJson<T>(id: string, field: string, text: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw corrupt(id, field, error);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw corrupt(id, field, parsed.error);
  return parsed.data;
}

export function decodeStatus(id: string, text: string): JobStatus {
  const s = parseJson(id, 'status', text, statusSchema);
  switch (s.state) {
    case 'failed':
      return s.errorId === undefined
        ? { state: 'failed', reason: s.reason, userFacing: s.userFacing }
        : { state: 'failed', reason: s.reason, errorId: s.errorId, userFacing: s.userFacing };
    default:
      return s;
  }
}

function optionalNumber(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

function decodePhases(id: string, text: string | undefined): Phases | undefined {
  if (text === undefined) return undefined;
  const raw = parseJson(id, 'phases', text, z.record(z.string(), z.number()));
  const phases: Partial<Record<(typeof phaseNames)[number], number>> = {};
  for (const name of phaseNames) {
    const value = raw[name];
    if (value !== undefined) phases[name] = value;
  }
  return phases;
}

/**
 * When the record expires: set when the job ended (its TTL counts from then). An unfinished job
 * never expires; it reports the earliest it could, a full TTL from now. Records written before the
 * TTL counted from completion carry only the submit-time estimate.
 */
function expiresAtOf(hash: Readonly<Record<string, string>>, base: RecordBase): number {
  const expiresAt = optionalNumber(hash.expiresAt);
  if (expiresAt !== undefined) return expiresAt;
  const ttlMs = optionalNumber(hash.ttlMs);
  return ttlMs === undefined ? base.expiresAt : Date.now() + ttlMs;
}

/** The record from its hash (HGETALL); null when the hash is empty (never existed or expired). */
export function decodeRecord(id: string, hash: Readonly<Record<string, string>>): GridRecord | null {
  const baseText = hash.base;
  if (baseText === undefined) return null;
  const base = parseJson(id, 'base', baseText, baseSchema);
  const status = decodeStatus(id, hash.status ?? '{}');
  const messageRef = parseJson(id, 'messageRef', hash.messageRef ?? '{}', z.record(z.string(), z.string()));
  const startedAt = optionalNumber(hash.startedAt);
  const finishedAt = optionalNumber(hash.finishedAt);
  const phases = decodePhases(id, hash.phases);
  const timings: JobTimings = {
    queuedAt: optionalNumber(hash.queuedAt) ?? base.createdAt,
    ...(startedAt === undefined ? {} : { startedAt }),
    ...(finishedAt === undefined ? {} : { finishedAt }),
    ...(phases === undefined ? {} : { phases }),
  };
  const result = hash.result === undefined ? undefined : parseJson(id, 'result', hash.result, resultSchema);
  return {
    id: base.id,
    spec: base.spec,
    prompts: base.prompts,
    seeds: base.seeds,
    owner: base.owner,
    surface: base.surface,
    channel: base.channel,
    messageRef,
    status,
    attempts: optionalNumber(hash.attempts) ?? 0,
    ...(hash.worker === undefined ? {} : { worker: hash.worker }),
    timings,
    ...(result === undefined
      ? {}
      : {
          resultKeys: result.resultKeys,
          truncatedTokens: result.truncatedTokens,
          model: result.model,
          ...(result.nsfw === undefined ? {} : { nsfw: result.nsfw }),
        }),
    createdAt: base.createdAt,
    expiresAt: expiresAtOf(hash, base),
  };
}

/** Name of a generate-queue job that makes a finished grid's PNGs again (data: {@link RenderJobData}). */
export const RENDER_JOB = 'render';

export interface RenderJobData {
  /** The grid whose PNGs to make again from its record. */
  readonly render: string;
}

/** Published on `renderedChannel` when a re-render ends. */
export interface RenderedMessage {
  readonly id: string;
  readonly ok: boolean;
  /** Why it failed; shown to the user when `userFacing`. */
  readonly reason?: string;
  readonly userFacing?: boolean;
}

/** What the chat side answers when a button points at a grid whose record has expired. */
export const GRID_EXPIRED_MESSAGE =
  'This grid has expired, so its buttons no longer work. Run /imagine again to make a new one.';

export function expiredGridError(id: string): UserError {
  return new UserError(ErrorCode.Expired, GRID_EXPIRED_MESSAGE, { context: { id } });
}

/** The record, or UserError(Expired) with the "this grid has expired" message. */
export async function requireRecord(jobs: Pick<Jobs, 'record'>, id: string): Promise<GridRecord> {
  const record = await jobs.record(id);
  if (record === null) throw expiredGridError(id);
  return record;
}
