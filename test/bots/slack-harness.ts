import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import type { HistoryIndex } from '../../bots/service/history.ts';
import { ConversationService, decodeControl, type ServiceSettings } from '../../bots/service.ts';
import type { TeamSupport } from '../../bots/settings/support.ts';
import { SlackAdapter, type SlackAdapterOptions } from '../../bots/slack/adapter.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { buildDemoModel } from '../../models/demo/build.ts';
import type { Engine } from '../../models/engine.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { cellOrigin, gridLayout } from '../../queue/grid.ts';
import { createJobs, type Jobs, type QueueWorker, silentLogger, startWorker } from '../../queue/index.ts';
import {
  buttonsOf,
  FAKE_BOT_TOKEN,
  FAKE_SIGNING_SECRET,
  type FakeMessage,
  FakeSlack,
  SignedSender,
} from '../fakes/slack/index.ts';

/**
 * One Slack bot process for tests: real queue client, real conversation service, real bolt app in
 * HTTP mode against the fake Slack. `restart()` replaces all three, as a redeploy would.
 */

export const TEST_SETTINGS: ServiceSettings = {
  limits: {
    defaultSteps: 4,
    maxSteps: 50,
    defaultGuidance: 7.5,
    defaultSampler: 'pndm',
    defaultWidth: 256,
    defaultHeight: 256,
    maxPixels: 512 * 512,
  },
  suffixes: [...DEFAULT_SUFFIXES],
  ownerOnlyButtons: false,
  adminUsers: [],
  recordTtlDays: 1,
  progressIntervalMs: 50,
};

/** Delivery retries fast in tests; a 429's Retry-After is still honoured as given. */
const DELIVERY = { backoffMs: 100 } as const;

export interface BotOptions {
  readonly redisUrl: string;
  readonly prefix: string;
  /** The fake Slack (requests are sent and minted against it), or just a Web API base (remote fake). */
  readonly fake: FakeSlack | { readonly apiUrl: string };
  readonly settings?: ServiceSettings;
  readonly perUser?: number;
  readonly queueDepth?: number;
  readonly adapter?: Partial<SlackAdapterOptions>;
  /** Team settings and quotas for the service; with them the bot answers `/imagine-settings`. */
  readonly teams?: TeamSupport;
  /** The history index; with it the bot answers `/imagine history`. */
  readonly history?: HistoryIndex;
}

export class TestBot {
  jobs!: Jobs;
  service!: ConversationService;
  adapter!: SlackAdapter;
  #sender: SignedSender | undefined;
  readonly #options: BotOptions;

  private constructor(options: BotOptions) {
    this.#options = options;
  }

  static async start(options: BotOptions): Promise<TestBot> {
    const bot = new TestBot(options);
    await bot.#start();
    return bot;
  }

  async #start(): Promise<void> {
    const o = this.#options;
    this.jobs = createJobs({
      connection: o.redisUrl,
      prefix: o.prefix,
      logger: silentLogger,
      delivery: DELIVERY,
      limits: { perUser: o.perUser ?? 50, queueDepth: o.queueDepth ?? 500 },
    });
    const service = new ConversationService({
      jobs: this.jobs,
      settings: o.settings ?? TEST_SETTINGS,
      ...(o.teams === undefined ? {} : { teams: o.teams }),
      ...(o.history === undefined ? {} : { history: o.history }),
    });
    this.service = service;
    this.adapter = new SlackAdapter({
      service: this.service,
      log: pino({ level: 'silent' }),
      botToken: FAKE_BOT_TOKEN,
      mode: 'http',
      signingSecret: FAKE_SIGNING_SECRET,
      port: 0,
      host: '127.0.0.1',
      apiUrl: o.fake.apiUrl,
      ...(o.teams === undefined ? {} : { teamSettings: (r) => service.teamSettings(r) }),
      ...(o.history === undefined ? {} : { history: (q, m) => service.history(q, m) }),
      ...o.adapter,
    });
    await this.adapter.start();
    if (o.fake instanceof FakeSlack) this.#sender = new SignedSender({ url: this.url, fake: o.fake });
  }

  /** The bot's events endpoint. */
  get url(): string {
    return `http://127.0.0.1:${this.adapter.port}/slack/events`;
  }

  /** Signed requests to this bot, against the in-process fake. */
  get sender(): SignedSender {
    if (this.#sender === undefined)
      throw new Error('TestBot: no in-process FakeSlack to sign requests against');
    return this.#sender;
  }

  async stop(): Promise<void> {
    this.#sender?.close();
    await this.adapter.stop();
    await this.service.close();
    await this.jobs.close();
  }

  /** A redeploy: everything in memory is gone, only Redis and Slack remain. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#start();
  }
}

/** The demo model, built once into a temp dir; each worker loads its own engine from it. */
export async function buildDemo(): Promise<{
  dir: string;
  load: () => Promise<Engine>;
  remove: () => Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'imagine-slack-demo-'));
  await buildDemoModel(dir);
  return {
    dir,
    load: () => loadEngine(dir),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export function startTestWorker(
  redisUrl: string,
  prefix: string,
  engine: () => Promise<Engine>,
): Promise<QueueWorker> {
  return startWorker({
    connection: redisUrl,
    prefix,
    engine,
    logger: silentLogger,
    delivery: DELIVERY,
    cancelPollMs: 100,
    previewEveryMs: 0,
    shutdownTimeoutMs: 0,
  });
}

// ——— reading what the fake shows ———

/** The record id a grid's (or status message's) buttons point at. */
export function recordIdOf(message: FakeMessage): string {
  for (const b of buttonsOf(message)) {
    const decoded = decodeControl(b.value ?? '');
    if (decoded !== null) return decoded.recordId;
  }
  throw new Error(`message ${message.ts} has no control buttons`);
}

/** The message with the grid's buttons (refine/reroll/upscale) for a record. */
export function gridControls(fake: FakeSlack, recordId: string): FakeMessage | undefined {
  return fake.messages.find(
    (m) => !m.deleted && buttonsOf(m).some((b) => b.value === `refine:${recordId}:0`),
  );
}

/** The status message (queued/progress, with Cancel) for a record. */
export function statusMessage(fake: FakeSlack, recordId: string): FakeMessage | undefined {
  return fake.messages.find(
    (m) => m.history.length > 0 && buttonsOf(m).some((b) => b.value === `cancel:${recordId}:0`),
  );
}

/** File messages whose file name starts with the prefix (e.g. `<recordId>-grid`). */
export function fileMessages(fake: FakeSlack, namePrefix: string): FakeMessage[] {
  return fake.messages.filter((m) => m.files.some((f) => f.filename.startsWith(namePrefix)));
}

export async function waitForGrid(
  fake: FakeSlack,
  recordId: string,
  timeoutMs = 30_000,
): Promise<FakeMessage> {
  return fake.waitFor(() => gridControls(fake, recordId), timeoutMs, `the grid of ${recordId}`);
}

/** Decodes a grid PNG into its tiles as raw RGB. */
export async function gridTiles(
  png: Buffer,
  count = 4,
): Promise<{ width: number; height: number; tiles: Buffer[] }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const layout = gridLayout(count, info.width / 2, info.height / 2);
  const tiles: Buffer[] = [];
  for (let k = 0; k < count; k++) {
    const { left, top } = cellOrigin(layout, k);
    const tile = Buffer.alloc(layout.cellWidth * layout.cellHeight * 3);
    for (let y = 0; y < layout.cellHeight; y++) {
      const from = ((top + y) * info.width + left) * 3;
      data.copy(tile, y * layout.cellWidth * 3, from, from + layout.cellWidth * 3);
    }
    tiles.push(tile);
  }
  return { width: layout.cellWidth, height: layout.cellHeight, tiles };
}

/**
 * 1 − Pearson correlation of two RGB tiles, each channel centred on its own mean: compares
 * composition (where light and colour sit) and ignores a global colour shift.
 */
export function structuralDistance(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) throw new RangeError('tiles differ in size');
  let total = 0;
  for (let c = 0; c < 3; c++) {
    let ma = 0;
    let mb = 0;
    const n = a.length / 3;
    for (let i = c; i < a.length; i += 3) {
      ma += a[i] ?? 0;
      mb += b[i] ?? 0;
    }
    ma /= n;
    mb /= n;
    let sab = 0;
    let saa = 0;
    let sbb = 0;
    for (let i = c; i < a.length; i += 3) {
      const da = (a[i] ?? 0) - ma;
      const db = (b[i] ?? 0) - mb;
      sab += da * db;
      saa += da * da;
      sbb += db * db;
    }
    total += saa === 0 || sbb === 0 ? 0 : sab / Math.sqrt(saa * sbb);
  }
  return 1 - total / 3;
}
