import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Fault } from './server.ts';

/**
 * The fake Slack and its load generator in a child process, for benchmarks: Slack is remote in
 * production, so its CPU (and the 200 clients') must not share the measured bot's event loop.
 *
 *   const slack = await startRemoteFakeSlack();            // slack.apiUrl → SLACK_API_URL
 *   … start the bot in http mode against slack.apiUrl …
 *   const run = await slack.fire({ url: `http://127.0.0.1:${port}/slack/events`, count: 200, userPrefix: 'U0B1' });
 *   run.p50, run.p99                                        // client-side ack times, ms
 *   run.entries[i].triggerId                                // job id: jobIdFor('slack', triggerId)
 *   await slack.fileSharedAt([`${jobId}-grid`])             // when each grid was shared (Date.now())
 *   await slack.stop();
 */

export interface RemoteFireOptions {
  /** The bot's events endpoint. */
  readonly url: string;
  /** @defaultValue 200 */
  readonly count?: number;
  /** @defaultValue FAKE_SIGNING_SECRET */
  readonly signingSecret?: string;
  /** Text of every command. @defaultValue `load prompt <i> --steps 2` */
  readonly text?: string;
  /** Users are `<prefix><i>`, one per command. @defaultValue `U0LOAD` */
  readonly userPrefix?: string;
}

export interface RemoteFireResult {
  /** Per command, in send order: its trigger_id (job id = `jobIdFor('slack', triggerId)`), ack time, HTTP status. */
  readonly entries: readonly {
    readonly triggerId: string;
    readonly ackMs: number;
    readonly status: number;
  }[];
  /** Sorted client-side ack times (request written → response headers), ms. */
  readonly ackMs: readonly number[];
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly failures: number;
  readonly wallMs: number;
}

export interface RemoteCounts {
  readonly calls: number;
  /** Successful calls per Web API method. */
  readonly okCalls: Readonly<Record<string, number>>;
  readonly messages: number;
  readonly ephemerals: number;
}

export type RemoteRequest =
  | ({ readonly id: number; readonly op: 'fire' } & RemoteFireOptions & { readonly count: number })
  | { readonly id: number; readonly op: 'fileSharedAt'; readonly prefixes: readonly string[] }
  | { readonly id: number; readonly op: 'counts' }
  | { readonly id: number; readonly op: 'fail'; readonly method: string; readonly faults: Fault[] }
  | { readonly id: number; readonly op: 'stop' };

export type RemoteReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

export interface RemoteFakeSlack {
  /** Web API base of the fake (SLACK_API_URL). */
  readonly apiUrl: string;
  fire(options: RemoteFireOptions): Promise<RemoteFireResult>;
  /** Per file-name prefix, when a file so named was shared in a message (absent if none yet). */
  fileSharedAt(prefixes: readonly string[]): Promise<Readonly<Record<string, number>>>;
  counts(): Promise<RemoteCounts>;
  fail(method: string, ...faults: Fault[]): Promise<void>;
  stop(): Promise<void>;
}

type Op<R extends RemoteRequest> = R extends unknown ? Omit<R, 'id'> : never;

export async function startRemoteFakeSlack(): Promise<RemoteFakeSlack> {
  const script = fileURLToPath(new URL('./remote-child.ts', import.meta.url));
  // tsx runs the TypeScript child as the rest of the project runs.
  const child: ChildProcess = fork(script, [], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  const apiUrl = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`fake Slack child exited early (code ${code})`)));
    child.once('message', (message: { ready?: boolean; apiUrl?: string }) => {
      if (message.ready === true && typeof message.apiUrl === 'string') resolve(message.apiUrl);
      else reject(new Error('fake Slack child sent an unexpected first message'));
    });
  });
  child.removeAllListeners('exit');
  child.on('exit', () => {
    for (const { reject } of pending.values()) reject(new Error('fake Slack child exited'));
    pending.clear();
  });
  child.on('message', (reply: RemoteReply) => {
    const waiter = pending.get(reply.id);
    if (waiter === undefined) return;
    pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new Error(reply.error));
  });
  const call = <T>(request: Op<RemoteRequest>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...request, id });
    });
  return {
    apiUrl,
    fire: (options) => call<RemoteFireResult>({ op: 'fire', ...options, count: options.count ?? 200 }),
    fileSharedAt: (prefixes) => call<Record<string, number>>({ op: 'fileSharedAt', prefixes }),
    counts: () => call<RemoteCounts>({ op: 'counts' }),
    fail: (method, ...faults) => call<void>({ op: 'fail', method, faults }),
    stop: async () => {
      if (child.exitCode !== null || !child.connected) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await call<void>({ op: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
