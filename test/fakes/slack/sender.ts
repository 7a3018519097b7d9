import { createHmac, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { stringify } from 'node:querystring';
import { buttonsOf, FAKE_TEAM_ID, type FakeMessage, type FakeSlack, type SocketAck } from './server.ts';

/**
 * Plays the Slack platform's side of HTTP mode: builds slash-command and block_actions requests
 * as Slack sends them (form-encoded, `payload=` JSON for interactions) and signs them with the
 * v0 scheme bolt verifies: `v0=` + hex HMAC-SHA256(signing secret, `v0:{timestamp}:{raw body}`).
 */

export const FAKE_SIGNING_SECRET = 'fake-signing-secret-0123456789abcdef';

/** `v0=<hex>` for a raw body at a Unix timestamp (seconds). */
export function slackSignature(signingSecret: string, timestampSec: number, body: string): string {
  const hmac = createHmac('sha256', signingSecret);
  hmac.update(`v0:${timestampSec}:${body}`);
  return `v0=${hmac.digest('hex')}`;
}

export interface SignOverrides {
  /** Sign with this secret instead (a forged request). */
  readonly secret?: string;
  /** Request timestamp in seconds; default now. An old one makes a stale request. */
  readonly timestampSec?: number;
  /** Send this signature header verbatim. */
  readonly signature?: string;
}

export interface SlackHttpResult {
  readonly status: number;
  readonly body: string;
  /** From the first byte written to the response's headers: what Slack would time for its 3 s limit. */
  readonly ackMs: number;
}

export interface SlashCommandInit {
  readonly text: string;
  readonly user?: string;
  readonly userName?: string;
  readonly channel?: string;
  readonly channelName?: string;
  readonly command?: string;
  /** Slack mints one per interaction; a redelivery reuses it. Default: a fresh one. */
  readonly triggerId?: string;
  /** Default: a fresh response_url on the fake. */
  readonly responseUrl?: string;
}

export interface BlockActionInit {
  /** The message holding the button (as stored by the fake). */
  readonly message: FakeMessage;
  readonly actionId: string;
  /** Default: the button's own value. Give one to tamper with it. */
  readonly value?: string;
  readonly user?: string;
  readonly userName?: string;
  readonly triggerId?: string;
  readonly responseUrl?: string;
  /** The message is an ephemeral one (only its user sees it): Slack says so in the container. */
  readonly ephemeral?: boolean;
}

export interface SignedSenderOptions {
  /** The bolt HTTP receiver's endpoint, e.g. `http://127.0.0.1:3000/slack/events` (unused over Socket Mode). */
  readonly url: string;
  readonly signingSecret?: string;
  /** Mints response_urls on it. */
  readonly fake: FakeSlack;
  readonly teamId?: string;
  readonly apiAppId?: string;
}

/** Body bytes plus the headers Slack would send with them. */
export interface SignedRequest {
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

export function signRequest(
  body: string,
  signingSecret: string,
  overrides: SignOverrides = {},
): SignedRequest {
  const ts = overrides.timestampSec ?? Math.floor(Date.now() / 1000);
  const signature = overrides.signature ?? slackSignature(overrides.secret ?? signingSecret, ts, body);
  return {
    body,
    headers: {
      // bolt compares the content type exactly, as Slack sends it (no charset).
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': signature,
    },
  };
}

export class SignedSender {
  readonly url: string;
  readonly signingSecret: string;
  private readonly fake: FakeSlack;
  private readonly teamId: string;
  private readonly apiAppId: string;
  // Many sockets at once: the benchmark fires hundreds of requests concurrently.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1024 });

  constructor(options: SignedSenderOptions) {
    this.url = options.url;
    this.signingSecret = options.signingSecret ?? FAKE_SIGNING_SECRET;
    this.fake = options.fake;
    this.teamId = options.teamId ?? FAKE_TEAM_ID;
    this.apiAppId = options.apiAppId ?? 'A0FAKEAPP';
  }

  /** A slash command's fields, as Slack sends them (form fields over HTTP, an object over Socket Mode). */
  slashCommandPayload(init: SlashCommandInit): Record<string, string> {
    const channel = init.channel ?? 'C0GENERAL';
    const user = init.user ?? 'U0ALICE';
    return {
      token: 'deprecated-verification-token',
      team_id: this.teamId,
      team_domain: 'fake',
      channel_id: channel,
      channel_name: init.channelName ?? (channel.startsWith('D') ? 'directmessage' : 'general'),
      user_id: user,
      user_name: init.userName ?? user.toLowerCase(),
      command: init.command ?? '/imagine',
      text: init.text,
      api_app_id: this.apiAppId,
      is_enterprise_install: 'false',
      response_url: init.responseUrl ?? this.fake.responseUrl({ channel, user }),
      trigger_id: init.triggerId ?? newTriggerId(),
    };
  }

  /** The form body of a slash command, as Slack posts it. */
  slashCommandBody(init: SlashCommandInit): string {
    return stringify(this.slashCommandPayload(init));
  }

  /** The block_actions payload of a button press on `init.message`. */
  blockActionPayload(init: BlockActionInit): Record<string, unknown> {
    const user = init.user ?? 'U0ALICE';
    const { message } = init;
    const button = buttonsOf(message).find((b) => b.action_id === init.actionId);
    if (button === undefined && init.value === undefined) {
      throw new Error(`SignedSender: message ${message.ts} has no button ${init.actionId}`);
    }
    const block = message.blocks.find((b) => b.type === 'actions' && b.elements?.includes(button as never));
    return {
      type: 'block_actions',
      user: {
        id: user,
        username: init.userName ?? user.toLowerCase(),
        name: user.toLowerCase(),
        team_id: this.teamId,
      },
      api_app_id: this.apiAppId,
      token: 'deprecated-verification-token',
      container: {
        type: 'message',
        message_ts: message.ts,
        channel_id: message.channel,
        is_ephemeral: init.ephemeral === true,
        ...(message.threadTs !== undefined ? { thread_ts: message.threadTs } : {}),
      },
      trigger_id: init.triggerId ?? newTriggerId(),
      team: { id: this.teamId, domain: 'fake' },
      enterprise: null,
      is_enterprise_install: false,
      channel: { id: message.channel, name: message.channel.startsWith('D') ? 'directmessage' : 'general' },
      message: {
        type: 'message',
        user: 'U0BOT',
        ts: message.ts,
        text: message.text,
        blocks: message.blocks,
        ...(message.threadTs !== undefined ? { thread_ts: message.threadTs } : {}),
      },
      state: { values: {} },
      response_url:
        init.responseUrl ?? this.fake.responseUrl({ channel: message.channel, user, messageTs: message.ts }),
      actions: [
        {
          action_id: init.actionId,
          block_id: block?.block_id ?? 'controls',
          text: button?.text ?? { type: 'plain_text', text: init.actionId },
          value: init.value ?? button?.value ?? '',
          type: 'button',
          action_ts: `${(Date.now() / 1000).toFixed(6)}`,
        },
      ],
    };
  }

  /** The form body (`payload=<json>`) of a button press. */
  blockActionBody(init: BlockActionInit): string {
    return stringify({ payload: JSON.stringify(this.blockActionPayload(init)) });
  }

  async slashCommand(init: SlashCommandInit, overrides: SignOverrides = {}): Promise<SlackHttpResult> {
    return this.post(signRequest(this.slashCommandBody(init), this.signingSecret, overrides));
  }

  async pressButton(init: BlockActionInit, overrides: SignOverrides = {}): Promise<SlackHttpResult> {
    return this.post(signRequest(this.blockActionBody(init), this.signingSecret, overrides));
  }

  /** Posts a pre-built (possibly pre-signed) request; use it to deliver the very same bytes twice. */
  post(signed: SignedRequest): Promise<SlackHttpResult> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = request(
        this.url,
        {
          method: 'POST',
          agent: this.agent,
          headers: { ...signed.headers, 'content-length': String(Buffer.byteLength(signed.body)) },
        },
        (res) => {
          const ackMs = performance.now() - started;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ackMs }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(signed.body);
    });
  }

  /**
   * A modal's submission (`view_submission`), as Slack posts it: the opened view with the state the
   * user typed, `values[block_id][action_id] = {type, value}`.
   */
  async submitView(
    init: {
      readonly view: Readonly<Record<string, unknown>>;
      readonly user?: string;
      readonly values: Readonly<Record<string, string>>;
    },
    overrides: SignOverrides = {},
  ): Promise<SlackHttpResult> {
    const user = init.user ?? 'U0ALICE';
    const values = Object.fromEntries(
      Object.entries(init.values).map(([block, value]) => [
        block,
        { value: { type: 'plain_text_input', value: value === '' ? null : value } },
      ]),
    );
    const payload = {
      type: 'view_submission',
      team: { id: this.teamId, domain: 'fake' },
      user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: this.teamId },
      api_app_id: this.apiAppId,
      token: 'deprecated-verification-token',
      trigger_id: newTriggerId(),
      view: {
        ...init.view,
        team_id: this.teamId,
        state: { values },
        hash: 'fake-hash',
        app_id: this.apiAppId,
      },
      response_urls: [],
      is_enterprise_install: false,
      enterprise: null,
    };
    const body = stringify({ payload: JSON.stringify(payload) });
    return this.post(signRequest(body, this.signingSecret, overrides));
  }

  /** The same slash command over Socket Mode (the app must be connected to the fake). */
  socketSlashCommand(init: SlashCommandInit): Promise<SocketAck> {
    return this.fake.sendEnvelope('slash_commands', this.slashCommandPayload(init));
  }

  /** The same button press over Socket Mode. */
  socketPressButton(init: BlockActionInit): Promise<SocketAck> {
    return this.fake.sendEnvelope('interactive', this.blockActionPayload(init));
  }

  close(): void {
    this.agent.destroy();
  }
}

export function newTriggerId(): string {
  return `${Date.now()}.${randomBytes(5).toString('hex')}.${randomBytes(8).toString('hex')}`;
}

// ---- benchmark support -------------------------------------------------------------------------

export interface ConcurrentCommandsOptions {
  readonly sender: SignedSender;
  /** How many slash commands to fire. Default 200. */
  readonly count?: number;
  /** Build the i-th command (distinct users keep per-user limits out of the measurement). */
  readonly build?: (i: number) => SlashCommandInit;
}

export interface ConcurrentCommandsResult {
  /** Per command, in index order. */
  readonly results: readonly SlackHttpResult[];
  /** Per command, in index order: its trigger_id (the job id is `jobIdFor('slack', triggerId)`). */
  readonly triggerIds: readonly string[];
  /** Sorted ack times in ms. */
  readonly ackMs: readonly number[];
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** Commands not answered 200. */
  readonly failures: number;
  readonly wallMs: number;
}

/**
 * Fires `count` signed `/imagine` commands at once (all requests built and signed first, so
 * signing time is not measured) and returns the ack-time distribution.
 */
export async function fireConcurrentCommands(
  options: ConcurrentCommandsOptions,
): Promise<ConcurrentCommandsResult> {
  const count = options.count ?? 200;
  const build: (i: number) => SlashCommandInit =
    options.build ??
    ((i: number) => ({ text: `bench prompt ${i} --steps 2`, user: `U0BENCH${String(i).padStart(4, '0')}` }));
  const { sender } = options;
  const inits = Array.from({ length: count }, (_, i): SlashCommandInit & { triggerId: string } => {
    const init = build(i);
    return { ...init, triggerId: init.triggerId ?? newTriggerId() };
  });
  const signed = inits.map((init) => signRequest(sender.slashCommandBody(init), sender.signingSecret));
  const started = performance.now();
  const results = await Promise.all(signed.map((s) => sender.post(s)));
  const wallMs = performance.now() - started;
  const ackMs = results.map((r) => r.ackMs).sort((a, b) => a - b);
  return {
    results,
    triggerIds: inits.map((init) => init.triggerId),
    ackMs,
    p50: percentile(ackMs, 50),
    p99: percentile(ackMs, 99),
    max: ackMs[ackMs.length - 1] ?? 0,
    failures: results.filter((r) => r.status !== 200).length,
    wallMs,
  };
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}
