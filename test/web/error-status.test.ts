import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../bots/logger.ts';
import { Health } from '../../bots/ops/health.ts';
import { createMetrics } from '../../bots/ops/metrics.ts';
import { type RunningServer, startOpsServer } from '../../bots/ops/server.ts';
import { type PlaygroundOptions, startPlayground } from '../../bots/web/server.ts';
import { WebSurface } from '../../bots/web/surface.ts';
import { ErrorCode, toPublicError, UserError } from '../../core/errors.ts';

/**
 * One error code, one HTTP answer: the worker's ops server and the playground (whether the error is
 * thrown through the route or shown privately by the service) give the same status, Retry-After and
 * body for the same coded error. Before one map in core, the ops server defaulted Retry-After to 5 s
 * and the playground's private answers to 10 s.
 */

/** The error each server meets on its next request; set by each test. */
let refusal: UserError = new UserError(ErrorCode.QueueFull, 'unset');
/** How the playground's service passes it on: as a private answer, or thrown. */
let mode: 'private' | 'thrown' = 'private';

const quiet = createLogger({
  destination: new Writable({ write: (_chunk, _encoding, done) => done() }),
});

let ops: RunningServer;
let web: RunningServer;

beforeAll(async () => {
  // The ops server's only route that can fail with a user error is /metrics; its render refuses.
  const metrics = {
    ...createMetrics(),
    render: async (): Promise<string> => {
      throw refusal;
    },
  };
  ops = await startOpsServer({ host: '127.0.0.1', port: 0, health: new Health(), metrics, log: quiet });
  const noRecords: PlaygroundOptions['jobs'] = {
    record: async () => null,
    status: async () => null,
    gridPng: async () => null,
    imagePng: async () => null,
  };
  web = await startPlayground({
    host: '127.0.0.1',
    port: 0,
    service: {
      // What the conversation service does with a refused submission: a private answer with the error.
      imagine: async (_command, reply) => {
        if (mode === 'thrown') throw refusal;
        await reply.privately(toPublicError(refusal).message, toPublicError(refusal));
        return {};
      },
      press: async () => {
        throw refusal;
      },
    },
    jobs: noRecords,
    surface: new WebSurface(),
    health: new Health(),
    metrics: createMetrics(),
    log: quiet,
  });
});
afterAll(async () => {
  await ops?.close();
  await web?.close();
});

interface Answer {
  status: number;
  retryAfter: string | null;
  code: unknown;
  message: unknown;
}

async function answer(res: Response): Promise<Answer> {
  const body = (await res.json()) as { error: { code: unknown; message: unknown } };
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    code: body.error.code,
    message: body.error.message,
  };
}

async function allThree(): Promise<{ ops: Answer; webPrivate: Answer; webThrown: Answer }> {
  const submit = () =>
    fetch(`${web.url}/api/imagine`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'a lighthouse' }),
    });
  mode = 'private';
  const webPrivate = await answer(await submit());
  mode = 'thrown';
  const webThrown = await answer(await submit());
  return { ops: await answer(await fetch(`${ops.url}/metrics`)), webPrivate, webThrown };
}

describe('HTTP answer of a coded error, on both servers', () => {
  it('E_QUEUE_FULL without a hint: 429 with the same default Retry-After everywhere', async () => {
    refusal = new UserError(ErrorCode.QueueFull, 'The queue is full; try again in a moment.');
    const { ops, webPrivate, webThrown } = await allThree();
    const expected = {
      status: 429,
      retryAfter: '10',
      code: 'E_QUEUE_FULL',
      message: 'The queue is full; try again in a moment.',
    };
    expect(ops).toEqual(expected);
    expect(webPrivate).toEqual(expected);
    expect(webThrown).toEqual(expected);
  });

  it("E_UNAVAILABLE with the error's own hint: 503, the hint rounded up, everywhere", async () => {
    refusal = new UserError(ErrorCode.Unavailable, 'Redis is away.', { retryAfterSeconds: 2.5 });
    const { ops, webPrivate, webThrown } = await allThree();
    const expected = { status: 503, retryAfter: '3', code: 'E_UNAVAILABLE', message: 'Redis is away.' };
    expect(ops).toEqual(expected);
    expect(webPrivate).toEqual(expected);
    expect(webThrown).toEqual(expected);
  });

  it('E_EXPIRED: 410 and no Retry-After everywhere', async () => {
    refusal = new UserError(ErrorCode.Expired, 'That grid has expired.');
    const { ops, webPrivate, webThrown } = await allThree();
    const expected = { status: 410, retryAfter: null, code: 'E_EXPIRED', message: 'That grid has expired.' };
    expect(ops).toEqual(expected);
    expect(webPrivate).toEqual(expected);
    expect(webThrown).toEqual(expected);
  });
});
