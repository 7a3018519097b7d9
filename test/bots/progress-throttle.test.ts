import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProgressThrottle } from '../../bots/service/progress.ts';
import type { ProgressEvent } from '../../queue/types.ts';

/** Progress edits: at most one per interval per job, the latest event, with the newest unseen preview. */

describe('ProgressThrottle', () => {
  let shown: ProgressEvent[];
  let throttle: ProgressThrottle;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    shown = [];
    throttle = new ProgressThrottle({ intervalMs: 1000, now: Date.now, show: (e) => shown.push(e) });
  });
  afterEach(() => {
    throttle.close();
    vi.useRealTimers();
  });

  const event = (jobId: string, step: number, preview?: Buffer): ProgressEvent => ({
    jobId,
    surface: 'discord',
    step,
    total: 10,
    ...(preview === undefined ? {} : { preview }),
  });

  it('shows the first event at once, then the latest per interval (trailing edge), keeping an unseen preview', async () => {
    const preview = Buffer.from('png');
    throttle.push(event('j', 1, preview));
    throttle.push(event('j', 2));
    await vi.advanceTimersByTimeAsync(0);
    expect(shown).toEqual([{ ...event('j', 2), preview }]);
    throttle.push(event('j', 3));
    throttle.push(event('j', 4));
    await vi.advanceTimersByTimeAsync(999);
    expect(shown).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    // The preview was shown already: not sent again.
    expect(shown.slice(1)).toEqual([event('j', 4)]);
  });

  it('throttles each job on its own', async () => {
    throttle.push(event('a', 1));
    throttle.push(event('b', 1));
    await vi.advanceTimersByTimeAsync(0);
    expect(shown.map((e) => e.jobId)).toEqual(['a', 'b']);
  });

  it('forget drops a pending edit (the result arrived), and close drops them all', async () => {
    throttle.push(event('a', 1));
    throttle.push(event('b', 1));
    await vi.advanceTimersByTimeAsync(0);
    throttle.push(event('a', 2));
    throttle.push(event('b', 2));
    throttle.forget('a');
    await vi.advanceTimersByTimeAsync(1000);
    expect(shown.map((e) => `${e.jobId}${e.step}`)).toEqual(['a1', 'b1', 'b2']);
    throttle.push(event('b', 3));
    throttle.close();
    await vi.advanceTimersByTimeAsync(5000);
    expect(shown).toHaveLength(3);
  });
});
