import { join, resolve } from 'node:path';
import { type Config, DEFAULT_WORKER_PORT, modelsFrom } from '../core/config.ts';
import { CodedError, ErrorCode } from '../core/errors.ts';
import type { Engine } from '../models/engine.ts';
import { type RedisConnection, settleWithin } from '../queue/connection.ts';
import { deliveryTakeover } from '../queue/delivery.ts';
import type { ServedModel } from '../queue/engine-pool.ts';
import { createJobs } from '../queue/jobs.ts';
import { createQueueProbe, type QueueProbe } from '../queue/probe.ts';
import { startRedis } from '../queue/redis-launcher.ts';
import type { Jobs } from '../queue/types.ts';
import type { QueueWorker } from '../queue/worker.ts';
import { GridHistory } from './history/store.ts';
import type { Logger } from './logger.ts';
import { Health } from './ops/health.ts';
import { createMetrics, type Metrics } from './ops/metrics.ts';
import { type RunningServer, startOpsServer } from './ops/server.ts';
import { defaultsPerModel } from './service/model-defaults.ts';
import { ConversationService, serviceSettingsFrom } from './service.ts';
import { startTeamSettings } from './settings/start.ts';
import type { ChatSurface } from './surface.ts';
import { redisIdentitySecret } from './web/secret.ts';
import { startPlayground } from './web/server.ts';
import { WebSurface } from './web/surface.ts';

/**
 * Wires the parts for one process role:
 * - `all`: Redis launcher, an in-process worker, the conversation service with the playground (and
 *   Discord/Slack when their tokens are set). What `npm start` runs.
 * - `bot`: the service with its surfaces, no worker.
 * - `worker`: a worker plus `/healthz`, `/readyz`, `/metrics` on WORKER_PORT.
 */

export const ROLES = ['all', 'bot', 'worker'] as const;
export type Role = (typeof ROLES)[number];

export interface AppOptions {
  readonly role: Role;
  readonly config: Config;
  readonly log: Logger;
  /** Overrides the engine (tests, benchmarks); default: MODEL_DIR, else the demo model in MODELS_DIR/demo. */
  readonly engine?: () => Promise<Engine>;
}

export interface App {
  readonly role: Role;
  /** How this process reaches Redis (the private server's URL, REDIS_URL, or the Sentinel options). */
  readonly redis: RedisConnection;
  /** Base URL of the playground (`all`, `bot`) or of the ops endpoints (`worker`). */
  readonly url: string;
  readonly metrics: Metrics;
  readonly health: Health;
  /** Resolves once the worker has loaded its model and takes jobs (at once without a worker). */
  readonly workerReady: Promise<void>;
  /**
   * Graceful stop: refuse new work, let the running job finish (released to another worker after
   * the shutdown timeout), close every connection and the private Redis. `releaseNow` skips the wait.
   */
  stop(options?: { readonly releaseNow?: boolean }): Promise<void>;
}

/**
 * Longest wait for one part (a Redis client, a queue, a server) to close on stop. The worker's own
 * graceful wait for its running job is longer and is bounded by SHUTDOWN_TIMEOUT_MS instead.
 */
const PART_CLOSE_TIMEOUT_MS = 5000;

/** How long `npm start` lets a running job finish on SIGTERM, so the whole stop stays under 20 s. */
export const ALL_IN_ONE_SHUTDOWN_MS = 10_000;

/**
 * The models a worker serves (MODELS, else MODEL_DIR or the demo model as `default`): each loaded in
 * its own engine thread when first needed, with its revision and weight size read from its folder.
 */
export async function servedModels(config: Config, log: Logger): Promise<ServedModel[]> {
  const { loadEngineInThread } = await import('../models/engine-thread/index.ts');
  const { modelFolderFacts } = await import('../models/revision.ts');
  const { folderDefaults } = await import('../models/download/installed.ts');
  const { formatDefaults } = await import('../models/defaults.ts');
  const options = {
    executionProvider: config.ORT_EP,
    deviceId: config.ORT_DEVICE_ID,
    intraOpThreads: config.ORT_INTRA_OP_THREADS,
    generator: config.GENERATOR,
    safetyChecker: config.SAFETY_CHECKER,
    decoder: config.DECODER,
    logger: log.child({ component: 'engine' }),
  };
  const served: ServedModel[] = [];
  for (const entry of modelsFrom(config)) {
    let dir: string;
    if (entry.dir === undefined) {
      const { ensureDemoModel } = await import('../models/demo/index.ts');
      dir = await ensureDemoModel(join(config.MODELS_DIR, 'demo'));
    } else {
      dir = resolve(entry.dir);
    }
    const facts = await modelFolderFacts(dir).catch((error: unknown) => {
      throw new CodedError(ErrorCode.ModelLoad, `model ${entry.name}: can't read its folder ${dir}`, {
        cause: error,
      });
    });
    // Known before the model loads, so workers announce them at once (bots apply them to `/imagine`).
    const defaults = await folderDefaults(dir);
    log.info(
      {
        model: entry.name,
        dir,
        revision: facts.revision,
        weightsMb: Math.round(facts.weightBytes / 2 ** 20),
        defaults: defaults === undefined ? 'known once loaded' : formatDefaults(defaults),
      },
      'serving model',
    );
    served.push({
      name: entry.name,
      load: () => loadEngineInThread(dir, options),
      sizeBytes: facts.weightBytes,
      revision: facts.revision,
      ...(defaults === undefined ? {} : { defaults }),
    });
  }
  return served;
}

/** Measures how long each surface takes to post results (the `deliver` phase). */
export function timedSurface(surface: ChatSurface, metrics: Metrics): ChatSurface {
  const time = async <T>(run: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await run();
    } finally {
      metrics.observeDeliver(surface.surface, performance.now() - started);
    }
  };
  return {
    surface: surface.surface,
    markup: surface.markup,
    limits: surface.limits,
    showProgress: (target, view) => surface.showProgress(target, view),
    // `steps` carries the delivery's idempotency log; dropping it made Slack fall back to process memory.
    showGrid: (target, view, steps) => time(() => surface.showGrid(target, view, steps)),
    showFailure: (target, view) => time(() => surface.showFailure(target, view)),
    showCancelled: (target, view) => time(() => surface.showCancelled(target, view)),
  };
}

export async function startApp(options: AppOptions): Promise<App> {
  const { role, config, log } = options;
  const metrics = createMetrics();
  const health = new Health();
  /** What to close on stop, in start order; `timeoutMs` defaults to PART_CLOSE_TIMEOUT_MS. */
  const stack: { name: string; close: () => Promise<void>; timeoutMs?: number }[] = [];
  const closeAll = async () => {
    for (const { name, close, timeoutMs = PART_CLOSE_TIMEOUT_MS } of stack.reverse()) {
      // A client that never reached Redis (refused password, Redis gone) can wait forever to close
      // (BullMQ waits for its connection): give each part a deadline so a stop always ends.
      const closed = await settleWithin(
        close().catch((error: unknown) => log.warn({ err: error, part: name }, 'closing failed')),
        timeoutMs,
      );
      if (!closed) log.warn({ part: name, afterMs: timeoutMs }, 'closing timed out; going on');
    }
    stack.length = 0;
  };

  // The worker's health port is bound first, before Redis, the model or any job: a port that is taken
  // must stop a worker before it holds work, and a default port moves aside for a second worker.
  let ops: RunningServer | undefined;
  if (role === 'worker') {
    ops = await startWorkerOps(config, health, metrics, log);
    const bound = ops;
    stack.push({ name: 'ops', close: () => bound.close() });
  }

  let connection: RedisConnection;
  if (config.REDIS_SENTINELS.length > 0) {
    connection = {
      sentinels: config.REDIS_SENTINELS,
      name: config.REDIS_SENTINEL_NAME,
      ...(config.REDIS_PASSWORD === undefined ? {} : { password: config.REDIS_PASSWORD }),
    };
    log.info(
      { sentinels: config.REDIS_SENTINELS.length, master: config.REDIS_SENTINEL_NAME },
      'using the Redis master named by REDIS_SENTINELS',
    );
  } else {
    const redis = await startRedis({
      url: config.REDIS_URL,
      dataDir: config.REDIS_DATA_DIR,
      log: (message) => log.info({ dataDir: resolve(config.REDIS_DATA_DIR) }, message),
    }).catch(async (error: unknown) => {
      await closeAll(); // the worker's health server, when it is already up
      throw error;
    });
    stack.push({ name: 'redis', close: () => redis.stop() });
    if (!redis.owned) log.info({ redis: 'REDIS_URL' }, 'using the Redis at REDIS_URL');
    connection = redis.url;
  }

  try {
    const probe: QueueProbe = createQueueProbe(
      connection,
      config.QUEUE_PREFIX,
      modelsFrom(config).map((m) => m.name),
    );
    stack.push({ name: 'probe', close: () => probe.close() });
    metrics.setQueueCounts(() => probe.counts());
    health.check('redis', () => probe.ping());

    let worker: QueueWorker | undefined;
    let workerStarting: Promise<QueueWorker | undefined> = Promise.resolve(undefined);
    let workerReady: Promise<void> = Promise.resolve();
    let modelInfo: { name: string; demo: boolean } | undefined;
    if (role === 'all' || role === 'worker') {
      const { startWorker } = await import('../queue/worker.ts');
      let loadError: unknown;
      health.check('model', () => {
        if (loadError !== undefined) throw new Error(`model failed to load: ${String(loadError)}`);
        if (worker === undefined) throw new Error('model loading');
      });
      const shutdownTimeoutMs =
        role === 'all'
          ? Math.min(config.SHUTDOWN_TIMEOUT_MS, ALL_IN_ONE_SHUTDOWN_MS)
          : config.SHUTDOWN_TIMEOUT_MS;
      const engine = options.engine;
      const served = engine === undefined ? servedModels(config, log) : Promise.resolve(undefined);
      workerStarting = served
        .then((models) =>
          startWorker({
            connection,
            prefix: config.QUEUE_PREFIX,
            // An engine given by the caller (tests, benchmarks) is the one `default` model.
            ...(models === undefined ? (engine === undefined ? {} : { engine }) : { models }),
            memoryBudgetBytes: config.MODEL_MEMORY_MB * 2 ** 20,
            concurrency: config.WORKER_CONCURRENCY,
            takeoverMs: config.STALLED_INTERVAL_MS,
            shutdownTimeoutMs,
            imageTtlMs: Math.min(config.IMAGE_TTL_HOURS * 3_600_000, config.RECORD_TTL_DAYS * 86_400_000),
            imageStoreMaxBytes: Math.round(config.IMAGE_STORE_MAX_MB * 1024 * 1024),
            logger: log.child({ component: 'worker' }),
            metrics,
          }),
        )
        .then(
          (started) => {
            worker = started;
            modelInfo = { name: started.info.name, demo: started.info.demo };
            log.info({ workerId: started.id, model: modelInfo }, 'worker ready');
            return started;
          },
          (error: unknown) => {
            // Reported by whoever awaits workerReady (main logs it and exits 1).
            loadError = error;
            throw error;
          },
        );
      workerReady = workerStarting.then(() => undefined);
      // Callers await it when they care; an unawaited failure is already logged above.
      workerReady.catch(() => undefined);
      // Close whatever started, even if the start is still under way when stopping.
      stack.push({
        name: 'worker',
        close: async () => {
          const started = await workerStarting.catch(() => undefined);
          await started?.close();
        },
        // Its running job may take the whole shutdown timeout to finish or be released.
        timeoutMs: shutdownTimeoutMs + PART_CLOSE_TIMEOUT_MS,
      });
    }

    let url: string;
    if (role === 'all' || role === 'bot') {
      const jobs: Jobs = createJobs({
        connection,
        prefix: config.QUEUE_PREFIX,
        limits: { perUser: config.PER_USER_LIMIT, queueDepth: config.QUEUE_DEPTH_LIMIT },
        fairSharing: config.FAIR_SHARING,
        recordTtlMs: Math.round(config.RECORD_TTL_DAYS * 24 * 3600 * 1000),
        attempts: config.JOB_ATTEMPTS,
        // A bot killed mid-delivery has its delivery taken over within STALLED_INTERVAL_MS too.
        delivery: deliveryTakeover(config.STALLED_INTERVAL_MS),
        logger: log.child({ component: 'jobs' }),
        metrics,
      });
      stack.push({ name: 'jobs', close: () => jobs.close() });
      const serviceSettings = serviceSettingsFrom(config);
      const teams = await startTeamSettings(connection, config.QUEUE_PREFIX, serviceSettings, log);
      stack.push({ name: 'team settings', close: () => teams.close() });
      // A record's TTL starts when its job ends, so the index outlives it by a day.
      const history = new GridHistory({
        connection,
        prefix: config.QUEUE_PREFIX,
        ttlMs: (config.RECORD_TTL_DAYS + 1) * 86_400_000,
      });
      stack.push({ name: 'history', close: () => history.close() });
      const service = new ConversationService({
        jobs,
        teams,
        history,
        settings: serviceSettings,
        log: log.child({ component: 'service' }),
        metrics,
      });
      stack.push({ name: 'service', close: () => service.close() });
      // Every surface is attached through this, so deliveries are timed on all of them.
      const conversation = {
        imagine: service.imagine.bind(service),
        press: service.press.bind(service),
        showResult: service.showResult.bind(service),
        nsfwNotesFor: service.nsfwNotesFor.bind(service),
        history: service.history.bind(service),
        attach: (surface: ChatSurface) => service.attach(timedSurface(surface, metrics)),
      };

      const web = new WebSurface();
      conversation.attach(web);
      const playground = await startPlayground({
        host: config.HOST,
        port: config.PORT,
        token: config.PLAYGROUND_TOKEN,
        service: conversation,
        jobs,
        surface: web,
        health,
        metrics,
        log: log.child({ component: 'web' }),
        recordTtlDays: config.RECORD_TTL_DAYS,
        identitySecret: redisIdentitySecret(connection, config.QUEUE_PREFIX),
        teamSettings: {
          store: teams.store,
          limits: serviceSettings.limits,
          modelDefaults: async (model) => (await jobs.modelDefaults?.(model)) ?? null,
        },
        info: async () => {
          // Per model, what `/imagine` without flags uses where no team sets anything (the first: the default).
          const modelDefaults = await defaultsPerModel(jobs, serviceSettings);
          return {
            role,
            model: modelInfo ?? null,
            models: modelsFrom(config).map((m) => m.name),
            suffixes: config.SUFFIXES,
            defaults: Object.values(modelDefaults)[0],
            modelDefaults,
            maxSteps: config.MAX_STEPS,
          };
        },
      });
      stack.push({ name: 'playground', close: () => playground.close() });
      url = playground.url;

      // Chat libraries load only when configured (each brings its own undici; see bots/discord).
      if (config.SLACK_BOT_TOKEN !== undefined) {
        const { SlackAdapter, slackSettingsFrom } = await import('./slack/adapter.ts');
        const slack = slackSettingsFrom(config)!;
        const adapter = new SlackAdapter({
          ...slack,
          service: conversation,
          log,
          teamSettings: (request) => service.teamSettings(request),
          history: (query, markup) => service.history(query, markup),
        });
        await adapter.start();
        stack.push({ name: 'slack', close: () => adapter.stop() });
      }
      if (config.DISCORD_TOKEN !== undefined) {
        // DiscordBot takes the service class itself, so its deliveries are not timed (see report).
        stack.push(await startDiscord(config, service, log));
      }
    } else {
      url = ops!.url;
    }

    let stopping: Promise<void> | undefined;
    return {
      role,
      redis: connection,
      url,
      metrics,
      health,
      workerReady,
      stop: (stopOptions = {}) => {
        if (stopOptions.releaseNow === true) {
          void workerStarting.then((w) => w?.close({ releaseNow: true })).catch(() => undefined);
        }
        stopping ??= (async () => {
          health.stopping();
          // Reverse start order: surfaces stop taking requests, the worker finishes its job, then
          // the service, the Redis clients and last the private Redis go.
          await closeAll();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** How many ports above 8788 a worker with the default WORKER_PORT tries before giving up. */
const WORKER_PORT_TRIES = 100;

/**
 * The worker's /healthz, /readyz and /metrics. Unset WORKER_PORT: 8788 or the next free port above it
 * (logged); a port that was set and is taken stops the start with a message naming WORKER_PORT.
 */
async function startWorkerOps(
  config: Config,
  health: Health,
  metrics: Metrics,
  log: Logger,
): Promise<RunningServer> {
  const explicit = config.WORKER_PORT !== undefined;
  const port = config.WORKER_PORT ?? DEFAULT_WORKER_PORT;
  try {
    const ops = await startOpsServer({
      host: config.HOST,
      port,
      nextFree: explicit ? 0 : WORKER_PORT_TRIES,
      health,
      metrics,
      log: log.child({ component: 'ops' }),
    });
    if (!explicit && ops.port !== port) {
      log.info(
        { port: ops.port, defaultPort: port },
        `WORKER_PORT is unset and ${port} is taken (another worker?): serving health on port ${ops.port}`,
      );
    }
    return ops;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    const what = explicit
      ? `WORKER_PORT=${port}: port ${port} on ${config.HOST} is ${code === 'EACCES' ? 'not allowed' : 'already in use'}. ` +
        'Set WORKER_PORT to a free port, or leave it unset to take 8788 or the next free port above it.'
      : `WORKER_PORT is unset, and ports ${port} to ${port + WORKER_PORT_TRIES} on ${config.HOST} are all taken. ` +
        'Set WORKER_PORT to a free port.';
    throw new CodedError(ErrorCode.Config, what, { cause: error });
  }
}

/** Discord, when DISCORD_TOKEN is set. Its module (and discord.js) is loaded only then. */
async function startDiscord(
  config: Config,
  service: ConversationService,
  log: Logger,
): Promise<{ name: string; close: () => Promise<void> }> {
  const { DiscordBot } = await import('./discord/bot.ts');
  const bot = new DiscordBot({
    service,
    token: config.DISCORD_TOKEN!,
    appId: config.DISCORD_APP_ID!,
    guildId: config.DISCORD_GUILD_ID,
    apiUrl: config.DISCORD_API_URL,
    limits: serviceSettingsFrom(config).limits,
    log: log.child({ surface: 'discord' }),
    teamSettings: (request) => service.teamSettings(request),
    history: (query, markup) => service.history(query, markup),
  });
  await bot.start();
  return { name: 'discord', close: () => bot.stop() };
}
