import { z } from 'zod';
import { ErrorCode, InternalError, UserError } from '../core/errors.ts';
import { type JobSpec, jobSpecSchema } from '../core/jobspec.ts';
import type { GridRecord, JobStatus, Jobs, JobTimings, MessageRef, RecordResult } from './types.ts';

/**
 * A grid record lives in one Redis hash, so the Lua scripts in scripts.ts can update its state
 * atomically: `spec` (JSON, written once at submit), the state fields (`state`, `status`,
 * `messageRef`, `attempts`, `worker`, `queuedAt`, `startedAt`, `finishedAt`, `phases`, `expiresAt`)
 * and `result` (JSON, written once by the worker), plus bookkeeping only the scripts read (`userKey`,
 * `attempt`, `ttlMs`, `cancelBy`). `decodeRecord` turns it into a {@link GridRecord} checked by
 * {@link gridRecordSchema}; the writers check what they write against the same schema.
 */

export type { RecordResult } from './types.ts';
export type Phases = NonNullable<JobTimings['phases']>;

const statusSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('queued'), position: z.number() }),
  z.object({ state: z.literal('running'), step: z.number(), total: z.number() }),
  z.object({ state: z.literal('done') }),
  z.object({
    state: z.literal('failed'),
    reason: z.string(),
    errorId: z.string().exactOptional(),
    userFacing: z.boolean(),
  }),
  z.object({ state: z.literal('cancelled'), by: z.string() }),
]);

const messageRefSchema = z.record(z.string(), z.string());

const phasesSchema = z.object({
  queueWait: z.number().exactOptional(),
  textEncode: z.number().exactOptional(),
  denoise: z.number().exactOptional(),
  decode: z.number().exactOptional(),
  compose: z.number().exactOptional(),
  store: z.number().exactOptional(),
});

export const recordResultSchema = z.object({
  resultKeys: z.object({ grid: z.string(), images: z.array(z.string()) }),
  truncatedTokens: z.array(z.number()),
  nsfw: z.array(z.boolean()).exactOptional(),
  model: z.object({
    name: z.string(),
    demo: z.boolean(),
    revision: z.string().exactOptional(),
    label: z.string().exactOptional(),
  }),
}) satisfies z.ZodType<RecordResult>;

/** The one schema of a grid record: what submit and the worker write, and what every read returns. */
export const gridRecordSchema = z.object({
  id: z.string().min(1),
  spec: jobSpecSchema,
  state: z.object({
    status: statusSchema,
    messageRef: messageRefSchema,
    attempts: z.number().int().min(0),
    worker: z.string().exactOptional(),
    timings: z.object({
      queuedAt: z.number(),
      startedAt: z.number().exactOptional(),
      finishedAt: z.number().exactOptional(),
      phases: phasesSchema.exactOptional(),
    }),
    expiresAt: z.number(),
  }),
  result: recordResultSchema.exactOptional(),
}) satisfies z.ZodType<GridRecord>;

/**
 * The one merge of message references: later parts win key by key. The stored reference is
 * merged the same way by MERGE_MESSAGE_REF (Lua); the service merges patches it has not seen
 * stored yet on top of the stored one.
 */
export function mergeMessageRef(...parts: readonly (MessageRef | undefined)[]): MessageRef {
  return Object.assign({}, ...parts.filter((part) => part !== undefined)) as MessageRef;
}

/** The spec as the record keeps it: `origin.messageRef` lives in the record's state instead. */
export function recordSpec(spec: JobSpec): JobSpec {
  return { ...spec, origin: { ...spec.origin, messageRef: {} } };
}

function invalid(id: string, what: string, cause: unknown): InternalError {
  const detail = cause instanceof z.ZodError ? z.prettifyError(cause).replaceAll('\n', '; ') : String(cause);
  return new InternalError(ErrorCode.Redis, `grid record ${id} is invalid (${what}): ${detail}`, {
    cause,
    context: { id, field: what },
  });
}

/** The record a new submit writes, checked against the schema before it goes to Redis. */
export function newRecord(id: string, spec: JobSpec, now: number, ttlMs: number): GridRecord {
  const record: GridRecord = {
    id,
    spec: recordSpec(spec),
    state: {
      status: { state: 'queued', position: 0 },
      messageRef: spec.origin.messageRef,
      attempts: 0,
      timings: { queuedAt: now },
      expiresAt: now + ttlMs,
    },
  };
  return checkRecord(record);
}

/** Throws InternalError naming what is wrong when `value` is not a valid record. */
export function checkRecord(value: unknown): GridRecord {
  const parsed = gridRecordSchema.safeParse(value);
  const id = (value as { id?: unknown } | null)?.id;
  if (!parsed.success) throw invalid(typeof id === 'string' ? id : '?', 'record', parsed.error);
  return parsed.data;
}

/** A worker's result, checked before FINISH stores it. */
export function checkResult(id: string, result: RecordResult): RecordResult {
  const parsed = recordResultSchema.safeParse(result);
  if (!parsed.success) throw invalid(id, 'result', parsed.error);
  return parsed.data;
}

function parseJson(id: string, field: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(id, `${field} is not JSON`, error);
  }
}

export function decodeStatus(id: string, text: string): JobStatus {
  const parsed = statusSchema.safeParse(parseJson(id, 'status', text));
  if (!parsed.success) throw invalid(id, 'status', parsed.error);
  return parsed.data;
}

function optionalNumber(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Rolling upgrade: a record written before records were `{spec, state, result}` keeps its spec,
 * copied owner/prompts/seeds and creation time in one `base` JSON field. Such records live up to
 * RECORD_TTL (30 days by default) after their job ended, so readers turn the old hash into the
 * new layout rather than failing on it. The hash in Redis is left as it is (scripts never read
 * `base`). A hash already in the new layout is returned unchanged.
 */
export function upgradeRecordHash(
  id: string,
  hash: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  if (hash.spec !== undefined || hash.base === undefined) return hash;
  const base = parseJson(id, 'base', hash.base) as {
    spec?: { origin?: { messageRef?: unknown } };
    createdAt?: unknown;
    expiresAt?: unknown;
  } | null;
  const spec = base?.spec;
  if (spec === undefined || spec === null || typeof spec !== 'object') {
    throw invalid(id, 'base', 'the old-layout base has no spec');
  }
  // The old layout kept the origin's reference in the spec too; the stored one already has it.
  const originRef = (spec.origin?.messageRef ?? {}) as MessageRef;
  const storedRef =
    hash.messageRef === undefined ? {} : (parseJson(id, 'messageRef', hash.messageRef) as MessageRef);
  const { base: _old, ...rest } = hash;
  return {
    ...rest,
    spec: JSON.stringify({ ...spec, origin: { ...spec.origin, messageRef: {} } }),
    messageRef: JSON.stringify(mergeMessageRef(originRef, storedRef)),
    ...(hash.queuedAt === undefined && typeof base?.createdAt === 'number'
      ? { queuedAt: String(base.createdAt) }
      : {}),
    ...(hash.expiresAt === undefined && hash.ttlMs === undefined && typeof base?.expiresAt === 'number'
      ? { expiresAt: String(base.expiresAt) }
      : {}),
  };
}

/**
 * When the record expires: set when the job ended (its TTL counts from then). An unfinished job
 * never expires; it reports the earliest it could, a full TTL from now.
 */
function expiresAtOf(hash: Readonly<Record<string, string>>): number | undefined {
  const expiresAt = optionalNumber(hash.expiresAt);
  if (expiresAt !== undefined) return expiresAt;
  const ttlMs = optionalNumber(hash.ttlMs);
  return ttlMs === undefined ? undefined : Date.now() + ttlMs;
}

/**
 * The record from its hash (HGETALL); null when the hash is empty (never existed or expired).
 * Throws InternalError naming the bad field when the hash is not a valid record.
 */
export function decodeRecord(id: string, stored: Readonly<Record<string, string>>): GridRecord | null {
  if (stored.spec === undefined && stored.base === undefined) return null;
  const hash = upgradeRecordHash(id, stored);
  const startedAt = optionalNumber(hash.startedAt);
  const finishedAt = optionalNumber(hash.finishedAt);
  const raw = {
    id,
    spec: parseJson(id, 'spec', hash.spec ?? ''),
    state: {
      status: parseJson(id, 'status', hash.status ?? '{}'),
      messageRef: parseJson(id, 'messageRef', hash.messageRef ?? '{}'),
      attempts: optionalNumber(hash.attempts) ?? 0,
      ...(hash.worker === undefined ? {} : { worker: hash.worker }),
      timings: {
        queuedAt: optionalNumber(hash.queuedAt),
        ...(startedAt === undefined ? {} : { startedAt }),
        ...(finishedAt === undefined ? {} : { finishedAt }),
        ...(hash.phases === undefined ? {} : { phases: parseJson(id, 'phases', hash.phases) }),
      },
      expiresAt: expiresAtOf(hash),
    },
    ...(hash.result === undefined ? {} : { result: parseJson(id, 'result', hash.result) }),
  };
  const parsed = gridRecordSchema.safeParse(raw);
  if (!parsed.success) throw invalid(id, 'record', parsed.error);
  return parsed.data;
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
