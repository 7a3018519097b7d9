import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AckGate } from '../../bots/service/ack-gate.ts';
import { SILENT_LOG } from '../../bots/service/settings.ts';
import { RecordingReply } from './recording-surface.ts';

/** The service's ack gate: acknowledgements go first (bounded), and a bounded number of interactions work at once. */

function heldAck(): { reply: RecordingReply; release: () => void } {
  const reply = new RecordingReply();
  let release: () => void = () => {};
  reply.accept = () =>
    new Promise<void>((resolve) => {
      release = resolve;
    });
  return { reply, release: () => release() };
}

/** A unit of work that finishes when the test says so. */
function heldWork(log: string[], name: string): { run: () => Promise<string>; finish: () => void } {
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return {
    run: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
    finish: () => finish(),
  };
}

describe('AckGate', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('holds work while an acknowledgement is in flight, and runs it once the ack settles', async () => {
    const gate = new AckGate(SILENT_LOG, { priorityMs: 250 });
    const { reply, release } = heldAck();
    const accepted = gate.accept(reply);
    const log: string[] = [];
    const work = gate.work(async () => {
      log.push('work');
      return 1;
    });
    await vi.advanceTimersByTimeAsync(249);
    expect(log).toEqual([]);
    release();
    expect(await accepted).toBe(true);
    expect(await work).toBe(1);
    expect(log).toEqual(['work']);
  });

  it('waits for a stuck acknowledgement at most priorityMs', async () => {
    const gate = new AckGate(SILENT_LOG, { priorityMs: 100 });
    const stuck = new RecordingReply();
    stuck.accept = () => new Promise<void>(() => {});
    void gate.accept(stuck);
    const log: string[] = [];
    const work = gate.work(async () => void log.push('work'));
    await vi.advanceTimersByTimeAsync(99);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await work;
    expect(log).toEqual(['work']);
  });

  it('a failed or throwing acknowledgement resolves false and frees the gate', async () => {
    const gate = new AckGate(SILENT_LOG);
    const failing = new RecordingReply();
    failing.failAccept = true;
    expect(await gate.accept(failing)).toBe(false);
    const throwing = new RecordingReply();
    throwing.accept = () => {
      throw new Error('sync');
    };
    expect(await gate.accept(throwing)).toBe(false);
    // No acknowledgement in flight: work runs without waiting for any timer.
    expect(await gate.work(async () => 'ran')).toBe('ran');
  });

  it('runs at most maxActive interactions at once; the rest wait their turn, in order', async () => {
    const gate = new AckGate(SILENT_LOG, { maxActive: 2 });
    const log: string[] = [];
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => heldWork(log, name));
    const results = [a, b, c, d].map((w) => gate.work(w!.run));
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['start a', 'start b']);
    expect(gate.load).toEqual({ active: 2, waiting: 2 });
    b!.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['start a', 'start b', 'end b', 'start c']);
    a!.finish();
    c!.finish();
    d!.finish();
    expect(await Promise.all(results)).toEqual(['a', 'b', 'c', 'd']);
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });

  it('frees the slot when the work throws', async () => {
    const gate = new AckGate(SILENT_LOG, { maxActive: 1 });
    await expect(gate.work(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.work(async () => 'next')).toBe('next');
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });
});
