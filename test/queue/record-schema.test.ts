import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import { type JobSpec, jobIdFor, parseJobSpec } from '../../core/jobspec.ts';
import { jobGoneError } from '../../queue/job-errors.ts';
import { createJobs } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import {
  checkRecord,
  gridRecordSchema,
  mergeMessageRef,
  newRecord,
  upgradeRecordHash,
} from '../../queue/records.ts';
import type { Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * Grid records are `{spec, state, result}` (issue 10 item 5): one type, one zod schema that the
 * writers and the reader check, the message reference stored once (in the state), and records
 * written in the layout before it (a `base` JSON field copying prompts, seeds and owner out of the
 * spec) still read during a rolling upgrade. Real Redis.
 */

const redis = useTestRedis();
const { cleanups } = redis;

function open(prefix: string): Jobs {
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger: captureLogger(),
    delivery: { backoffMs: 50, stalledIntervalMs: 500, lockDurationMs: 2000 },
  });
  cleanups.push(() => jobs.close());
  return jobs;
}

function specOf(input = makeSpec()): JobSpec {
  const parsed = parseJobSpec(input);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.spec;
}

/**
 * A hash exactly as the previous layout's RESERVE wrote it (and, for a done job, START and FINISH
 * added to it): `base` holds the spec plus prompts, seeds, owner, surface and channel copied out
 * of it; the origin's messageRef is in both `base.spec` and `messageRef`.
 */
function legacyHash(spec: JobSpec, now: number, ttlMs: number, done = false): Record<string, string> {
  const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
  const base = {
    id,
    spec,
    prompts: spec.prompts,
    seeds: spec.seeds,
    owner: { surface: spec.origin.surface, user: spec.origin.user },
    surface: spec.origin.surface,
    channel: spec.origin.channel,
    createdAt: now,
    expiresAt: now + ttlMs,
  };
  const hash: Record<string, string> = {
    base: JSON.stringify(base),
    state: 'queued',
    status: JSON.stringify({ state: 'queued', position: 0 }),
    messageRef: JSON.stringify(spec.origin.messageRef),
    attempts: '0',
    queuedAt: String(now),
    userKey: `x:user:${spec.origin.surface}:${spec.origin.user}`,
    attempt: 'token',
    ttlMs: String(ttlMs),
  };
  if (!done) return hash;
  return {
    ...hash,
    // The service stored the posted message's id on top of the origin's reference.
    messageRef: JSON.stringify({ ...spec.origin.messageRef, messageId: 'm-7' }),
    state: 'done',
    status: JSON.stringify({ state: 'done' }),
    attempts: '1',
    worker: 'gpu-0',
    startedAt: String(now + 5),
    finishedAt: String(now + 10),
    expiresAt: String(now + 10 + ttlMs),
    phases: JSON.stringify({ queueWait: 5, denoise: 3, compose: 1, store: 1 }),
    result: JSON.stringify({
      resultKeys: { grid: `g:${id}`, images: [0, 1, 2, 3].map((k) => `i:${id}:${k}`) },
      truncatedTokens: [0, 0, 2, 0],
      model: { name: 'noop', demo: true },
    }),
  };
}

describe('the record schema', () => {
  it('round trip: what submit writes is what record() reads, prompts/seeds/owner only in the spec, messageRef once', async () => {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const input = makeSpec({ user: 'alice' });
    const { jobId } = await jobs.submit(input);
    const hash = await redis.admin.hgetall(queueKeys(prefix).record(jobId));
    expect(hash.base).toBeUndefined();
    const storedSpec = JSON.parse(hash.spec ?? 'null') as Record<string, unknown>;
    // Nothing copied out of the spec next to it.
    expect(Object.keys(hash).sort()).toEqual(
      [
        'attempt',
        'attempts',
        'jobPrefix',
        'messageRef',
        'queuedAt',
        'spec',
        'state',
        'status',
        'ttlMs',
        'userKey',
      ].sort(),
    );
    expect(storedSpec).toMatchObject({ prompts: input.prompts, seeds: input.seeds });
    // The origin's reference is stored once, in the state.
    expect((storedSpec.origin as { messageRef: unknown }).messageRef).toEqual({});
    expect(JSON.parse(hash.messageRef ?? 'null')).toEqual({ token: 'tok' });

    await jobs.updateMessageRef(jobId, { messageId: 'm-1', token: 'tok2' });
    const record = await jobs.record(jobId);
    expect(record).toEqual(gridRecordSchema.parse(record));
    expect(record?.spec.origin).toMatchObject({ user: 'alice', surface: 'discord', channel: 'channel-1' });
    expect(record?.spec.origin.messageRef).toEqual({});
    expect(record?.state.messageRef).toEqual({ token: 'tok2', messageId: 'm-1' });
    expect(record?.state).toMatchObject({ status: { state: 'queued', position: 0 }, attempts: 0 });
    expect(record?.result).toBeUndefined();

    // The pure round trip: a new record passes the schema unchanged.
    const fresh = newRecord('discord-x', specOf(input), 1000, 60_000);
    expect(checkRecord(JSON.parse(JSON.stringify(fresh)))).toEqual(fresh);
  });

  it('a done record carries the worker result under `result`, checked by the same schema', async () => {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const deliveries = recordDeliveries(jobs);
    cleanups.push(() => deliveries.subscription.close());
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      engine: createNoopEngine(),
      logger: captureLogger(),
      previewEveryMs: 0,
      workerId: 'gpu-1',
    });
    cleanups.push(() => worker.close({ releaseNow: true }));
    const { jobId } = await jobs.submit(makeSpec());
    const event = (await waitFor('delivery', () => deliveries.byId(jobId)[0]))!.event;
    expect(event.record.state).toMatchObject({ status: { state: 'done' }, worker: 'gpu-1', attempts: 1 });
    expect(event.record.result).toMatchObject({
      model: { name: 'default', demo: true, label: 'noop' },
      truncatedTokens: [0, 0, 0, 0],
    });
    expect(gridRecordSchema.parse(event.record)).toEqual(event.record);
  });

  it('merges message references in one place: later parts win key by key', () => {
    expect(mergeMessageRef({ a: '1', b: '2' }, undefined, { b: '3', c: '4' })).toEqual({
      a: '1',
      b: '3',
      c: '4',
    });
  });
});

describe('records in the previous layout (rolling upgrade)', () => {
  it('reads a finished old-layout record as {spec, state, result}', async () => {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const spec = specOf(makeSpec({ user: 'bob' }));
    const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
    const now = 1_700_000_000_000;
    await redis.admin.hset(queueKeys(prefix).record(id), legacyHash(spec, now, 60_000, true));
    const record = await jobs.record(id);
    expect(record).toEqual({
      id,
      spec: { ...spec, origin: { ...spec.origin, messageRef: {} } },
      state: {
        status: { state: 'done' },
        messageRef: { token: 'tok', messageId: 'm-7' },
        attempts: 1,
        worker: 'gpu-0',
        timings: {
          queuedAt: now,
          startedAt: now + 5,
          finishedAt: now + 10,
          phases: { queueWait: 5, denoise: 3, compose: 1, store: 1 },
        },
        expiresAt: now + 10 + 60_000,
      },
      result: {
        resultKeys: { grid: `g:${id}`, images: [0, 1, 2, 3].map((k) => `i:${id}:${k}`) },
        truncatedTokens: [0, 0, 2, 0],
        model: { name: 'noop', demo: true },
      },
    });
  });

  it('a queued old-layout record is run by a new worker and delivered in the new shape', async () => {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const deliveries = recordDeliveries(jobs);
    cleanups.push(() => deliveries.subscription.close());
    const spec = specOf(makeSpec({ prompts: ['a', 'b', 'c', 'd'] }));
    const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
    await redis.admin.hset(queueKeys(prefix).record(id), legacyHash(spec, Date.now(), 60_000));
    // The old submitter's BullMQ job, as it enqueued it.
    const generate = new Queue('generate', { connection: { url: redis.url }, prefix });
    cleanups.push(() => generate.close());
    await generate.add('generate', spec, { jobId: id });
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      engine: createNoopEngine(),
      logger: captureLogger(),
      previewEveryMs: 0,
    });
    cleanups.push(() => worker.close({ releaseNow: true }));
    const event = (await waitFor('delivery', () => deliveries.byId(id)[0]))!.event;
    expect(event.type).toBe('done');
    expect(event.record.spec.prompts).toEqual(['a', 'b', 'c', 'd']);
    expect(event.record.state.messageRef).toEqual({ token: 'tok' });
    expect(event.record.result?.resultKeys.images).toHaveLength(4);
    expect(await jobs.imagePng(id, 3)).toBeInstanceOf(Buffer);
  });

  it('an unreadable job payload on an old-layout record is failed and delivered to the surface its base names', async () => {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const deliveries = recordDeliveries(jobs, 'slack');
    cleanups.push(() => deliveries.subscription.close());
    const spec = specOf(makeSpec({ surface: 'slack' }));
    const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
    await redis.admin.hset(queueKeys(prefix).record(id), legacyHash(spec, Date.now(), 60_000));
    const generate = new Queue('generate', { connection: { url: redis.url }, prefix });
    cleanups.push(() => generate.close());
    await generate.add('generate', { ...spec, steps: 0 }, { jobId: id });
    const worker = await startWorker({
      connection: redis.url,
      prefix,
      engine: createNoopEngine(),
      logger: captureLogger(),
      previewEveryMs: 0,
    });
    cleanups.push(() => worker.close({ releaseNow: true }));
    const event = (await waitFor('delivery', () => deliveries.byId(id)[0]))!.event;
    expect(event.type).toBe('failed');
    expect(event.record.state.status).toMatchObject({ state: 'failed', userFacing: true });
  });

  it('upgradeRecordHash leaves a new-layout hash alone and moves the origin reference into the state', () => {
    const spec = specOf();
    const legacy = legacyHash(spec, 5, 100);
    const upgraded = upgradeRecordHash('discord-a', legacy);
    expect(upgraded.base).toBeUndefined();
    expect(JSON.parse(upgraded.spec ?? 'null').origin.messageRef).toEqual({});
    expect(JSON.parse(upgraded.messageRef ?? 'null')).toEqual({ token: 'tok' });
    expect(upgradeRecordHash('discord-a', upgraded)).toBe(upgraded);
  });
});

describe('invalid records', () => {
  async function readBack(fields: Record<string, string>): Promise<unknown> {
    const prefix = uniquePrefix('rs');
    const jobs = open(prefix);
    const { jobId } = await jobs.submit(makeSpec());
    await redis.admin.hset(queueKeys(prefix).record(jobId), fields);
    return jobs.record(jobId).then(
      () => new Error('read an invalid record without complaint'),
      (error: unknown) => error,
    );
  }

  it('a bad status is rejected with an internal error naming the record and the field', async () => {
    const error = await readBack({ status: JSON.stringify({ state: 'exploded' }) });
    expect(error).toBeInstanceOf(InternalError);
    expect((error as InternalError).code).toBe(ErrorCode.Redis);
    expect((error as Error).message).toMatch(
      /^grid record discord-\w+ is invalid \(record\): .*state\.status/u,
    );
  });

  it('a spec without prompts is rejected naming spec.prompts; a non-JSON field names that field', async () => {
    const spec = JSON.parse(JSON.stringify(specOf())) as Record<string, unknown>;
    delete spec.prompts;
    const error = await readBack({ spec: JSON.stringify(spec) });
    expect((error as Error).message).toMatch(/spec\.prompts/u);
    const notJson = await readBack({ result: '{not json' });
    expect((notJson as Error).message).toMatch(/is invalid \(result is not JSON\)/u);
  });

  it('the writer checks too: a record that breaks the schema is never written', () => {
    const fresh = newRecord('discord-x', specOf(), 1000, 60_000);
    expect(() => checkRecord({ ...fresh, state: { ...fresh.state, attempts: -1 } })).toThrow(
      /grid record discord-x is invalid \(record\): .*state\.attempts/u,
    );
  });
});

describe('a job that is gone', () => {
  it('cancel and updateMessageRef answer NotFound with the one message', async () => {
    const jobs = open(uniquePrefix('rs'));
    const cancel = await jobs.cancel('discord-none', { surface: 'discord', user: 'u' }).catch((e) => e);
    const update = await jobs.updateMessageRef('discord-none', { messageId: 'm' }).catch((e) => e);
    for (const error of [cancel, update]) {
      expect(error).toBeInstanceOf(UserError);
      expect(error).toMatchObject({
        code: ErrorCode.NotFound,
        message: jobGoneError('discord-none').message,
      });
    }
  });
});
