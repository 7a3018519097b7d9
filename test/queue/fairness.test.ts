import { Queue, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import type { JobSpecInput } from '../../core/jobspec.ts';
import { fairKeys, fairStamp, fairTeam } from '../../queue/fairness.ts';
import { createJobs, type JobsOptions } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import type { Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, waitFor } from './helpers.ts';

const redis = useTestRedis();
const { cleanups } = redis;

function open(
  prefix: string,
  options: Partial<Omit<JobsOptions, 'connection' | 'prefix' | 'logger'>> = {},
): Jobs {
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger: captureLogger(),
    limits: { perUser: 1000, queueDepth: 10_000 },
    ...options,
  });
  cleanups.push(() => jobs.close());
  return jobs;
}

/**
 * Jobs labelled `<team><n>` (`A1`, `B3`…): each has its own seeds, so the engine's calls tell
 * which job started when.
 */
function teamJobs() {
  const labels = new Map<number, string>();
  let nextSeed = 1;
  return {
    spec(label: string): JobSpecInput {
      const seed = nextSeed;
      nextSeed += 4;
      labels.set(seed, label);
      const spec = makeSpec({ user: `user-${label}`, seeds: [seed, seed + 1, seed + 2, seed + 3] });
      // The team is the workspace: one letter per team.
      return { ...spec, origin: { ...spec.origin, workspace: `ws-${label.charAt(0)}` } };
    },
    label: (seed: number | undefined) => labels.get(seed ?? -1) ?? `?${seed}`,
  };
}

/** A worker (one slot) whose engine records the order in which jobs start, by label. */
async function orderedWorker(
  prefix: string,
  label: (seed: number | undefined) => string,
  options: { stepDelayMs?: number; fail?: (label: string, attempt: number) => Error | undefined } = {},
) {
  const started: string[] = [];
  const engine = createNoopEngine({
    stepDelayMs: options.stepDelayMs ?? 5,
    failWith: ({ request }) => {
      const name = label(request.seeds[0]);
      started.push(name);
      return options.fail?.(name, started.filter((s) => s === name).length);
    },
  });
  const worker = await startWorker({
    connection: redis.url,
    prefix,
    engine,
    logger: captureLogger(),
    previewEveryMs: 0,
  });
  cleanups.push(() => worker.close({ releaseNow: true }));
  return { started, worker };
}

async function allEnded(jobs: Jobs, ids: readonly string[]): Promise<void> {
  await waitFor(
    'every job ended',
    async () => {
      const states = await Promise.all(ids.map((id) => jobs.status(id)));
      return states.every((s) => s !== null && ['done', 'failed', 'cancelled'].includes(s.state));
    },
    30_000,
  );
}

describe('fair sharing between teams (real Redis, real worker)', () => {
  it('is on unless FAIR_SHARING says false', () => {
    expect(loadConfig({}).FAIR_SHARING).toBe(true);
    expect(loadConfig({ FAIR_SHARING: '' }).FAIR_SHARING).toBe(true);
    expect(loadConfig({ FAIR_SHARING: 'false' }).FAIR_SHARING).toBe(false);
  });

  it('the team is the workspace, else the channel, per surface', () => {
    expect(fairTeam({ surface: 'slack', workspace: 'T1', channel: 'C1' })).toBe('slack:w:T1');
    expect(fairTeam({ surface: 'slack', workspace: 'T1', channel: 'C2' })).toBe('slack:w:T1');
    expect(fairTeam({ surface: 'discord', channel: 'dm-1' })).toBe('discord:c:dm-1');
    expect(fairTeam({ surface: 'discord', workspace: 'T1', channel: 'C1' })).not.toBe('slack:w:T1');
    // A workspace and a channel with the same id are not the same team.
    expect(fairTeam({ surface: 'slack', channel: 'T1' })).not.toBe(
      fairTeam({ surface: 'slack', workspace: 'T1', channel: 'x' }),
    );
  });

  it.each([true, false])(
    'fairSharing %s: team B’s one grid after team A’s burst of 20',
    async (fairSharing) => {
      const prefix = uniquePrefix('fair');
      const jobs = open(prefix, { fairSharing });
      const t = teamJobs();
      const { started } = await orderedWorker(prefix, t.label, { stepDelayMs: 25 });
      const burst: string[] = [];
      for (let i = 1; i <= 20; i++) burst.push((await jobs.submit(t.spec(`A${i}`))).jobId);
      // A's jobs the worker had already started when B asked: no order can put B before those.
      const startedBeforeB = started.length;
      const b = await jobs.submit(t.spec('B1'));
      await allEnded(jobs, [...burst, b.jobId]);
      expect(started).toHaveLength(21);
      const aheadOfB = started.indexOf('B1') - startedBeforeB;
      if (fairSharing) {
        // The one A job already next in line (same turn as B), and one more if the worker was taking it.
        expect(aheadOfB).toBeLessThanOrEqual(2);
      } else {
        expect(started.indexOf('B1')).toBe(20);
        expect(aheadOfB).toBeGreaterThanOrEqual(10);
      }
    },
  );

  it('three teams take turns, and the positions users are told are the order jobs start in', async () => {
    const prefix = uniquePrefix('fair');
    // Two bot processes: A's jobs through one, B's and C's through the other.
    const bots = [open(prefix), open(prefix)] as const;
    const t = teamJobs();
    const ids = new Map<string, string>();
    for (const label of ['A1', 'A2', 'A3', 'B1', 'B2', 'B3', 'C1', 'C2', 'C3']) {
      const bot = label.startsWith('A') ? bots[0] : bots[1];
      ids.set(label, (await bot.submit(t.spec(label))).jobId);
    }
    const expected = ['A1', 'B1', 'C1', 'A2', 'B2', 'C2', 'A3', 'B3', 'C3'];
    // Before any worker runs: each job's position is its place in that order.
    const positions = await Promise.all(expected.map((label) => bots[1].status(ids.get(label) ?? '')));
    expect(positions).toEqual(expected.map((_, k) => ({ state: 'queued', position: k })));
    const { started } = await orderedWorker(prefix, t.label);
    await allEnded(bots[0], [...ids.values()]);
    expect(started).toEqual(expected);
  });

  it('concurrent submits from two bots stay consistent: each round has one job of each team', async () => {
    const prefix = uniquePrefix('fair');
    const bots = [open(prefix), open(prefix)] as const;
    const t = teamJobs();
    const specs = Array.from({ length: 6 }, (_, k) => [t.spec(`A${k + 1}`), t.spec(`B${k + 1}`)] as const);
    const submitted = await Promise.all(specs.flatMap(([a, b]) => [bots[0].submit(a), bots[1].submit(b)]));
    const { started } = await orderedWorker(prefix, t.label);
    await allEnded(
      bots[0],
      submitted.map((s) => s.jobId),
    );
    for (let round = 0; round < 6; round++) {
      const pair = started.slice(round * 2, round * 2 + 2).map((l) => l.charAt(0));
      expect(pair.sort()).toEqual(['A', 'B']);
    }
  });

  it('cancelled jobs don’t hold their team back; a restarted bot keeps the turns', async () => {
    const prefix = uniquePrefix('fair');
    const first = open(prefix);
    const t = teamJobs();
    // B is served first; A's six jobs queue behind B1 and are all cancelled.
    const b = [(await first.submit(t.spec('B1'))).jobId];
    const cancelled: string[] = [];
    for (let i = 1; i <= 6; i++) cancelled.push((await first.submit(t.spec(`A${i}`))).jobId);
    for (const id of cancelled) await first.cancel(id, { surface: 'discord', user: 'admin' });
    for (let i = 2; i <= 3; i++) b.push((await first.submit(t.spec(`B${i}`))).jobId);
    await first.close();
    // Another bot process (as after a restart): the turns live in Redis.
    const second = open(prefix);
    const a7 = await second.submit(t.spec('A7'));
    // A's cancelled jobs don't count: its new job goes right after B's first, not behind all of B's.
    expect(a7.position).toBe(1);
    const { started } = await orderedWorker(prefix, t.label);
    await allEnded(second, [...b, a7.jobId]);
    expect(started).toEqual(['B1', 'A7', 'B2', 'B3']);
  });

  it('a retried job keeps its turn, a failed one frees it, and nothing is left behind', async () => {
    const prefix = uniquePrefix('fair');
    const jobs = open(prefix, { attempts: 2, backoff: { type: 'fixed', delayMs: 10 } });
    const t = teamJobs();
    const ids: string[] = [];
    for (const label of ['A1', 'A2', 'A3', 'B1', 'B2', 'B3'])
      ids.push((await jobs.submit(t.spec(label))).jobId);
    const { started } = await orderedWorker(prefix, t.label, {
      stepDelayMs: 25,
      // A1 fails once (retried after 10 ms); A2 can't be served at all (failed, not retried).
      fail: (label, attempt) =>
        label === 'A1' && attempt === 1
          ? new InternalError(ErrorCode.Inference, 'simulated transient failure')
          : label === 'A2'
            ? new UserError(ErrorCode.InvalidRequest, 'simulated impossible request')
            : undefined,
    });
    await allEnded(jobs, ids);
    // A1's retry is back before round 2 (its stamp is 1); A2's failure doesn't shift the rounds.
    expect(started).toEqual(['A1', 'B1', 'A1', 'A2', 'B2', 'A3', 'B3']);
    expect((await jobs.status(ids[1] ?? ''))?.state).toBe('failed');
    // Once the queue is empty, the next stamp starts again at 1, and the bookkeeping holds only it.
    const next = await jobs.submit(t.spec('C1'));
    const k = fairKeys(queueKeys(prefix), undefined);
    await waitFor('C1 ended', async () => (await jobs.status(next.jobId))?.state === 'done');
    const d1 = await jobs.submit(t.spec('D1'));
    expect(await redis.admin.zrange(k.stamps, '0', '-1', 'WITHSCORES')).toEqual([d1.jobId, '1']);
    expect(await redis.admin.hkeys(k.teamOf)).toEqual([d1.jobId]);
    expect(await redis.admin.keys(`${k.teamPrefix}*`)).toEqual([`${k.teamPrefix}discord:w:ws-D`]);
  });

  it('a retry waiting out its backoff is told its real place: back at its turn', async () => {
    const prefix = uniquePrefix('fair');
    const jobs = open(prefix, { attempts: 2, backoff: { type: 'fixed', delayMs: 600 } });
    const t = teamJobs();
    const ids = new Map<string, string>();
    for (const label of ['A1', 'A2', 'B1']) ids.set(label, (await jobs.submit(t.spec(label))).jobId);
    const { started } = await orderedWorker(prefix, t.label, {
      stepDelayMs: 250,
      fail: (label, attempt) =>
        label === 'A1' && attempt === 1 ? new InternalError(ErrorCode.Inference, 'simulated') : undefined,
    });
    const a1 = ids.get('A1') ?? '';
    // A1 failed and waits 600 ms; B1 (same turn) runs meanwhile; A2 (next turn) waits behind A1.
    await waitFor(
      'A1 back in the queue while B1 runs',
      async () => started.length === 2 && (await jobs.status(a1))?.state === 'queued',
    );
    expect(await jobs.status(a1)).toEqual({ state: 'queued', position: 0 });
    expect(await jobs.status(ids.get('A2') ?? '')).toEqual({ state: 'queued', position: 0 });
    await allEnded(jobs, [...ids.values()]);
    expect(started).toEqual(['A1', 'B1', 'A1', 'A2']);
  });

  it('rebases stamps past the limit without changing the order', async () => {
    const prefix = uniquePrefix('fair');
    const keys = queueKeys(prefix);
    const queue = new Queue('generate', { connection: { url: redis.url }, prefix });
    const taker = new Worker('generate', null, { connection: { url: redis.url }, prefix });
    cleanups.push(
      () => taker.close(),
      () => queue.close(),
    );
    const t = teamJobs();
    const add = async (label: string): Promise<{ stamp: number; shift: number }> => {
      const spec = t.spec(label);
      const id = `discord-${label}`;
      const turn = await fairStamp(
        redis.admin,
        keys,
        { id, model: undefined, origin: { ...spec.origin, messageRef: {} } },
        { orphanGraceMs: 60_000, rebaseAt: 6 },
      );
      await queue.add('generate', spec, { jobId: id, priority: turn.stamp });
      return turn;
    };
    const take = async (): Promise<string> => {
      const job = await taker.getNextJob('token');
      if (job?.id === undefined) throw new Error('no job');
      await job.moveToCompleted('ok', 'token', false);
      return job.id.replace('discord-', '');
    };
    for (const label of ['A1', 'A2', 'A3', 'A4', 'B1', 'B2', 'B3', 'B4']) await add(label);
    const taken = [];
    for (let i = 0; i < 5; i++) taken.push(await take());
    expect(taken).toEqual(['A1', 'B1', 'A2', 'B2', 'A3']);
    // Waiting now: B3 (3), A4 (4), B4 (4). The queue never empties, so the stamps grow…
    expect(await add('A5')).toEqual({ stamp: 5, shift: 0 });
    expect(await add('B5')).toEqual({ stamp: 5, shift: 0 });
    expect(await add('A6')).toEqual({ stamp: 6, shift: 0 });
    expect(await add('B6')).toEqual({ stamp: 6, shift: 0 });
    // …until one passes the limit: everything moves down by 2 (B3, the head, becomes 1).
    expect(await add('A7')).toEqual({ stamp: 5, shift: 2 });
    expect((await queue.getJob('discord-B3'))?.priority).toBe(1);
    expect(await add('B7')).toEqual({ stamp: 5, shift: 0 });
    const rest = [];
    for (let i = 0; i < 9; i++) rest.push(await take());
    expect(rest).toEqual(['B3', 'A4', 'B4', 'A5', 'B5', 'A6', 'B6', 'A7', 'B7']);
  });
});
