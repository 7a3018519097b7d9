import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelControls, gridControls } from '../../bots/service/controls.ts';
import { SlackAdapter, type SlackConversation } from '../../bots/slack/adapter.ts';
import { fallbackText, richTextElements, SLACK_MARKUP } from '../../bots/slack/render.ts';
import type { GridView, JobTarget } from '../../bots/surface.ts';
import { ErrorCode } from '../../core/errors.ts';
import { PermanentDeliveryError, RetryLaterError } from '../../queue/types.ts';
import { buttonsOf, FAKE_BOT_TOKEN, FAKE_SIGNING_SECRET, FakeSlack } from '../fakes/slack/index.ts';

/**
 * The ChatSurface side of the adapter, called directly against the fake Slack: how failures map to
 * the delivery retry, and that a retried render posts once. (The service is not involved here.)
 */

const idle: SlackConversation = {
  imagine: async () => ({}),
  press: async () => ({}),
  attach: () => async () => {},
};
const fake = new FakeSlack();
let adapter: SlackAdapter;

beforeAll(async () => {
  await fake.start();
  adapter = new SlackAdapter({
    service: idle,
    log: pino({ level: 'silent' }),
    botToken: FAKE_BOT_TOKEN,
    mode: 'http',
    signingSecret: FAKE_SIGNING_SECRET,
    apiUrl: fake.apiUrl,
  });
});

afterAll(async () => {
  await fake.stop();
});

function target(recordId: string, messageRef: Record<string, string> = {}): JobTarget {
  return { recordId, channel: 'C0SURF', messageRef, requestedAt: Date.now(), owner: 'U0ALICE' };
}

function gridView(recordId: string): GridView {
  return {
    kind: 'grid',
    recordId,
    jobKind: 'imagine',
    owner: 'U0ALICE',
    images: [0, 1, 2, 3].map((index) => ({ index, prompt: 'p', seed: 10 + index, truncatedTokens: 0 })),
    settings: { negative: '', sampler: 'pndm', steps: 4, guidance: 7.5, width: 64, height: 64 },
    notes: [],
    text: '*p* — <@U0ALICE>',
    file: { name: `${recordId}-grid.png`, contentType: 'image/png', data: Buffer.from('png bytes') },
    controls: gridControls(recordId, 4),
  };
}

describe('rendering on Slack', () => {
  it('writes user text as literal rich-text elements; styles and mentions are separate elements', () => {
    const m = SLACK_MARKUP;
    const hostile = '*bold* _it_ ~s~ `c` <!channel> <@U9> &amp; \uE000@U9\uE001';
    const marked = `${m.bold(m.escape(hostile))} — ${m.mention('U1')} seeds ${m.code('7')}`;
    expect(richTextElements(marked)).toEqual([
      { type: 'text', text: '*bold* _it_ ~s~ `c` <!channel> <@U9> &amp; @U9', style: { bold: true } },
      { type: 'text', text: ' — ' },
      { type: 'user', user_id: 'U1' },
      { type: 'text', text: ' seeds ' },
      { type: 'text', text: '7', style: { code: true } },
    ]);
    // The notification fallback: nothing links or pings but the owner's mention.
    expect(fallbackText(marked)).toBe(
      '*bold* _it_ ~s~ `c` &lt;!channel&gt; &lt;@U9&gt; &amp;amp; @U9 — <@U1> seeds 7',
    );
  });

  it('maps a 429 to RetryLaterError with Retry-After, and a 5xx to E_CHAT_API', async () => {
    fake.fail('chat.postMessage', { status: 429, retryAfter: 4 });
    const limited = adapter.showGrid(target('slack-a'), gridView('slack-a'));
    await expect(limited).rejects.toBeInstanceOf(RetryLaterError);
    await expect(limited).rejects.toMatchObject({ retryAfterMs: 4000 });
    fake.fail('chat.update', { status: 502 });
    await expect(
      adapter.showFailure(target('slack-b', { ts: '1.1' }), {
        kind: 'failed',
        recordId: 'slack-b',
        text: 'failed',
        reason: 'x',
      }),
    ).rejects.toMatchObject({ code: ErrorCode.ChatApi, message: expect.stringContaining('HTTP 502') });
  });

  it('maps errors no retry can fix (archived channel, lost scope) to PermanentDeliveryError', async () => {
    fake.fail('chat.update', { error: 'is_archived' });
    await expect(
      adapter.showFailure(target('slack-p', { ts: '1.1' }), {
        kind: 'failed',
        recordId: 'slack-p',
        text: 'failed',
        reason: 'x',
      }),
    ).rejects.toSatisfy((e: unknown) => e instanceof PermanentDeliveryError && /is_archived/.test(e.message));
    // A transient platform error stays retryable.
    fake.fail('chat.update', { error: 'internal_error' });
    await expect(
      adapter.showFailure(target('slack-q', { ts: '1.1' }), {
        kind: 'failed',
        recordId: 'slack-q',
        text: 'failed',
        reason: 'x',
      }),
    ).rejects.toMatchObject({ code: ErrorCode.ChatApi });
  });

  it('with the delivery’s steps, a retried grid posts its file and buttons once', async () => {
    const done = new Map<string, string>();
    const steps = {
      once: async (step: string, run: () => Promise<string>) => {
        const previous = done.get(step);
        if (previous !== undefined) return previous;
        const value = await run();
        done.set(step, value);
        return value;
      },
    };
    fake.fail('chat.postMessage', { status: 500 });
    await expect(adapter.showGrid(target('slack-c'), gridView('slack-c'), steps)).rejects.toThrow();
    const ts = await adapter.showGrid(target('slack-c'), gridView('slack-c'), steps);
    expect(
      fake.fileMessages('C0SURF').filter((m) => m.files[0]?.filename === 'slack-c-grid.png'),
    ).toHaveLength(1);
    const controls = fake.message('C0SURF', ts)!;
    expect(buttonsOf(controls)).toHaveLength(13);
    expect([...done.keys()]).toEqual(['slack:grid-upload', 'slack:grid-file', 'slack:grid-controls']);
  });

  it('failure and cancel edit the status message, or post one when there is none', async () => {
    const status = await adapter.showCancelled(target('slack-d'), {
      kind: 'cancelled',
      recordId: 'slack-d',
      text: 'cancelled text',
      by: 'U0BOB',
    });
    const message = fake.message('C0SURF', status)!;
    expect(message.text).toBe('cancelled text');
    expect(buttonsOf(message)).toHaveLength(0);
    // With a status message: edited in place, buttons gone.
    const posts = fake.okCallsTo('chat.postMessage').length;
    const ts = await adapter.showFailure(target('slack-d', { ts: status }), {
      kind: 'failed',
      recordId: 'slack-d',
      text: 'failed text',
      reason: 'r',
    });
    expect(ts).toBe(status);
    expect(fake.message('C0SURF', status)?.text).toBe('failed text');
    expect(fake.okCallsTo('chat.postMessage')).toHaveLength(posts);
  });

  it('progress without a status message does nothing; with one it edits it', async () => {
    const before = fake.calls.length;
    const view = {
      kind: 'progress' as const,
      recordId: 'slack-e',
      step: 1,
      total: 4,
      percent: 25,
      text: 'Generating… 25%',
      controls: cancelControls('slack-e'),
    };
    await adapter.showProgress(target('slack-e'), view);
    expect(fake.calls.length).toBe(before);
    const ts = await adapter.showCancelled(target('slack-e'), {
      kind: 'cancelled',
      recordId: 'slack-e',
      text: 'placeholder',
      by: 'x',
    });
    await adapter.showProgress(target('slack-e', { ts }), view);
    const message = fake.message('C0SURF', ts)!;
    expect(message.text).toBe('Generating… 25%');
    expect(buttonsOf(message).map((b) => b.action_id)).toEqual(['imagine_cancel']);
  });
});
