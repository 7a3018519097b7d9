import path from 'node:path';
import type { APIMessage } from 'discord.js';
import sharp from 'sharp';
import { DiscordBot, type DiscordBotOptions } from '../../bots/discord/bot.ts';
import type { HistoryIndex } from '../../bots/service/history.ts';
import { ConversationService, type ServiceSettings } from '../../bots/service.ts';
import type { TeamSupport } from '../../bots/settings/support.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import type { Engine, GenerateOptions, GenerateRequest } from '../../models/engine.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { createJobs, type Jobs, type QueueWorker, silentLogger, startWorker } from '../../queue/index.ts';
import { buttonsOf, FakeDiscord } from '../fakes/discord/server.ts';
import { uniquePrefix } from '../helpers/redis.ts';

/**
 * Everything real for the Discord end-to-end tests: discord.js logged into the fake Discord, the
 * conversation service, the BullMQ queue on a real redis-server, and a worker running the tiny-sd
 * ONNX model (real onnxruntime; a seed determines its image, a prompt suffix shifts it slightly).
 */

export const TINY_SD = path.resolve(import.meta.dirname, '../fixtures/tiny-sd');

export const TEST_SETTINGS: ServiceSettings = {
  limits: {
    defaultSteps: 4,
    maxSteps: 50,
    defaultGuidance: 7.5,
    defaultSampler: 'pndm',
    defaultWidth: 64,
    defaultHeight: 64,
    maxPixels: 128 * 128,
    // As if DEFAULT_STEPS and the size were set in the environment: they win over the model's own.
    envDefaults: { steps: 4, width: 64, height: 64 },
  },
  suffixes: [...DEFAULT_SUFFIXES],
  ownerOnlyButtons: false,
  adminUsers: [],
  recordTtlDays: 30,
  progressIntervalMs: 200,
};

export const ALICE = { id: '111111111111111111', username: 'alice' };
export const BOB = { id: '222222222222222222', username: 'bob' };

/**
 * Wraps the real engine: counts calls, and holds a batch whose prompt contains `hold` at its first
 * step until `release()`, and slows a `slow` prompt per step, so tests can see queued and running jobs.
 */
export class GatedEngine implements Engine {
  readonly inner: Engine;
  calls = 0;
  #release: (() => void) | undefined;
  #held: Promise<void> | undefined;

  constructor(inner: Engine) {
    this.inner = inner;
  }
  get info() {
    return this.inner.info;
  }
  hold(): void {
    this.#held = new Promise((resolve) => {
      this.#release = resolve;
    });
  }
  release(): void {
    this.#release?.();
    this.#held = undefined;
  }
  async generate(request: GenerateRequest, options: GenerateOptions = {}) {
    this.calls++;
    const held = this.#held;
    const hold = request.prompts.some((p) => p.includes('hold'));
    const slow = request.prompts.some((p) => p.includes('slow'));
    return this.inner.generate(request, {
      ...options,
      onStep: async (progress) => {
        await options.onStep?.(progress);
        if (hold && held !== undefined && progress.step === 1) {
          // Stay abortable (cancel, worker shutdown) while held.
          await new Promise<void>((resolve) => {
            void held.then(resolve);
            options.signal?.addEventListener('abort', () => resolve(), { once: true });
          });
        }
        if (slow) await new Promise((r) => setTimeout(r, 150));
      },
    });
  }
  async close(): Promise<void> {}
}

export async function loadTinyEngine(): Promise<GatedEngine> {
  return new GatedEngine(await loadEngine(TINY_SD, { name: 'tiny-sd' }));
}

export interface Harness {
  readonly fake: FakeDiscord;
  readonly jobs: Jobs;
  readonly worker: QueueWorker;
  service: ConversationService;
  bot: DiscordBot;
  readonly prefix: string;
  /** Stops the bot and its service (and Jobs client) and starts new ones on the same Redis. */
  restartBot(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  readonly redisUrl: string;
  readonly engine: Engine;
  readonly settings?: Partial<ServiceSettings>;
  readonly bot?: Partial<DiscordBotOptions>;
  readonly fake?: FakeDiscord;
  readonly perUser?: number;
  /** Team settings and quotas for the service; with them the bot registers `/imagine-settings`. */
  readonly teams?: TeamSupport;
  /** The history index; with it the bot registers `/imagine-history`. */
  readonly history?: HistoryIndex;
}

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const prefix = uniquePrefix('discord');
  const fake = options.fake ?? (await FakeDiscord.start({ token: 'fake-bot-token' }));
  const settings = { ...TEST_SETTINGS, ...options.settings };
  const makeJobs = () =>
    createJobs({
      connection: options.redisUrl,
      prefix,
      logger: silentLogger,
      limits: { perUser: options.perUser ?? 10 },
      delivery: { backoffMs: 100 },
    });
  let jobs = makeJobs();
  const worker = await startWorker({
    connection: options.redisUrl,
    prefix,
    engine: options.engine,
    logger: silentLogger,
    previewEveryMs: 50,
    cancelPollMs: 200,
  });
  const makeBot = async (j: Jobs) => {
    const service = new ConversationService({
      jobs: j,
      settings,
      ...(options.teams === undefined ? {} : { teams: options.teams }),
      ...(options.history === undefined ? {} : { history: options.history }),
    });
    const bot = new DiscordBot({
      service,
      ...(options.teams === undefined ? {} : { teamSettings: (r) => service.teamSettings(r) }),
      ...(options.history === undefined ? {} : { history: (q, m) => service.history(q, m) }),
      token: fake.token,
      appId: fake.appId,
      apiUrl: fake.apiUrl,
      limits: settings.limits,
      // The fake's CDN stands in for cdn.discordapp.com, as its API does for discord.com.
      fileOrigins: [fake.fileOrigin],
      ...options.bot,
    });
    await bot.start();
    return { service, bot };
  };
  const first = await makeBot(jobs);
  const harness: Harness = {
    fake,
    get jobs() {
      return jobs;
    },
    worker,
    service: first.service,
    bot: first.bot,
    prefix,
    async restartBot() {
      await harness.bot.stop();
      await harness.service.close();
      await jobs.close();
      jobs = makeJobs();
      const next = await makeBot(jobs);
      harness.service = next.service;
      harness.bot = next.bot;
    },
    async close() {
      await harness.bot.stop();
      await harness.service.close();
      await worker.close({ releaseNow: true });
      await jobs.close();
      if (options.fake === undefined) await fake.close();
    },
  };
  return harness;
}

/** The 2×2 grid split back into its four tiles, as raw RGB. */
/** The custom id of the button labelled `label` on a message; throws when it has none. */
export function button(message: APIMessage, label: string): string {
  const found = buttonsOf(message)
    .flat()
    .find((b) => b.label === label);
  if (found === undefined) throw new Error(`no button ${label}`);
  return found.customId;
}

export async function gridTiles(png: Buffer): Promise<{ width: number; height: number; tiles: Buffer[] }> {
  const meta = await sharp(png).metadata();
  const width = (meta.width ?? 0) / 2;
  const height = (meta.height ?? 0) / 2;
  const tiles = await Promise.all(
    [0, 1, 2, 3].map((k) =>
      sharp(png)
        .extract({ left: (k % 2) * width, top: Math.floor(k / 2) * height, width, height })
        .removeAlpha()
        .raw()
        .toBuffer(),
    ),
  );
  return { width, height, tiles };
}

export function meanAbsDiff(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) throw new Error(`sizes differ: ${a.length} vs ${b.length}`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** Polls an async condition until it holds. */
export async function poll(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
