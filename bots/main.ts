/**
 * The entry point: `tsx bots/main.ts all|bot|worker` (`npm start`, `npm run bot`, `npm run worker`).
 * Reads the environment (and `.env` in the working directory) once, starts the role, prints where to
 * find it, and on SIGTERM/SIGINT stops gracefully and exits 0. A second signal releases a running job
 * at once.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../core/config.ts';
import { mergeDotenv, parseDotenv } from '../core/dotenv.ts';
import { CodedError, ErrorCode } from '../core/errors.ts';
import { type App, ROLES, type Role, startApp } from './app.ts';
import { configSecrets, createLogger, createRedactor } from './logger.ts';
import { describeSurfaces, surfaceLine } from './surfaces.ts';

const USAGE = `Usage: tsx bots/main.ts [all|bot|worker]
  all     Redis, an in-process worker and the playground (and Discord/Slack if configured). npm start
  bot     Discord, Slack and the playground; workers run elsewhere.                        npm run bot
  worker  One GPU/CPU worker with /healthz, /readyz, /metrics on WORKER_PORT.               npm run worker`;

/** Past this after the first signal, the process gives up waiting and exits non-zero. */
const HARD_STOP_MS = { all: 19_000, bot: 25_000 } as const;

async function main(): Promise<number> {
  const arg = process.argv[2] ?? 'all';
  if (arg === '-h' || arg === '--help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!(ROLES as readonly string[]).includes(arg)) {
    process.stderr.write(`Unknown role "${arg}".\n${USAGE}\n`);
    return 2;
  }
  const role = arg as Role;

  const envFile = readEnvFile(resolve(process.cwd(), '.env'));
  if ('error' in envFile) {
    process.stderr.write(`${envFile.error}\nSee .env.example for the format and every setting.\n`);
    return 1;
  }
  const env = mergeDotenv(process.env, envFile.values);
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(env.env);
  } catch (error) {
    if (error instanceof CodedError && error.code === ErrorCode.Config) {
      const from = envFile.path === undefined ? '' : ` (environment and ${envFile.path})`;
      process.stderr.write(`${error.message}${from}\nSee .env.example for every setting and its default.\n`);
      return 1;
    }
    throw error;
  }
  const secrets = configSecrets(config, [env.env.HF_TOKEN]);
  const log = createLogger({ level: config.LOG_LEVEL, role, secrets });
  redactStderr = createRedactor(secrets);
  // Names only, never values: which settings came from the file and which the environment overrode.
  if (envFile.path === undefined) {
    log.info(
      { envFile: null, cwd: process.cwd() },
      'no .env in the working directory: settings from the environment and defaults',
    );
  } else {
    log.info(
      { envFile: envFile.path, fromFile: env.applied, overriddenByEnvironment: env.overridden },
      `read settings from ${envFile.path}`,
    );
  }

  let app: App;
  try {
    app = await startApp({ role, config, log });
  } catch (error) {
    return fatal(log, error, 'could not start');
  }
  for (const status of describeSurfaces(config, role, app.url)) {
    log.info({ surface: status.surface, on: status.on, detail: status.detail }, surfaceLine(status));
  }

  const hardStopMs = role === 'worker' ? config.SHUTDOWN_TIMEOUT_MS + 15_000 : HARD_STOP_MS[role];
  let signals = 0;
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, 'second signal: releasing running jobs now');
        void app.stop({ releaseNow: true });
        return;
      }
      log.info({ signal }, 'shutting down');
      const timer = setTimeout(() => {
        log.error({ afterMs: hardStopMs }, 'shutdown took too long; exiting');
        resolve(1);
      }, hardStopMs);
      timer.unref();
      app.stop().then(
        () => {
          clearTimeout(timer);
          log.info({}, 'stopped');
          resolve(0);
        },
        (error: unknown) => {
          clearTimeout(timer);
          log.error({ err: error }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  if (role === 'worker') {
    log.info(
      { url: app.url, health: `${app.url}/healthz`, metrics: `${app.url}/metrics` },
      'worker endpoints ready',
    );
  } else {
    log.info({ url: app.url }, 'playground ready');
    process.stderr.write(`\n  imagine playground: ${app.url}\n\n`);
  }

  // A worker that cannot load its model is of no use: say why and stop (the playground stays silent otherwise).
  const failedStart = app.workerReady.then(
    () => undefined,
    async (error: unknown) => {
      const code = fatal(log, error, 'the worker could not start');
      await app.stop({ releaseNow: true }).catch(() => undefined);
      return code;
    },
  );
  return Promise.race([stopped, failedStart.then((code) => code ?? stopped)]);
}

/** Blanks known secrets out of what is written to stderr by hand (set once the config is known). */
let redactStderr: (text: string) => string = (text) => text;

function fatal(log: ReturnType<typeof createLogger>, error: unknown, what: string): number {
  log.fatal({ err: error, code: error instanceof CodedError ? error.code : undefined }, what);
  process.stderr.write(
    redactStderr(`\n${what}: ${error instanceof Error ? error.message : String(error)}\n`),
  );
  return 1;
}

/** `.env` in the working directory: its values, none when there is no file, or what is wrong with it. */
function readEnvFile(
  path: string,
): { path: string | undefined; values: Record<string, string> } | { error: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path: undefined, values: {} };
    return { error: `Could not read ${path}: ${(error as Error).message}` };
  }
  const parsed = parseDotenv(text);
  if (parsed.errors.length > 0) {
    return { error: `Invalid ${path}:\n${parsed.errors.map((e) => `  - ${e}`).join('\n')}` };
  }
  return { path, values: { ...parsed.values } };
}

main().then(
  (code) => {
    // Logs are written synchronously by pino's default destination; exit now rather than wait for
    // stray timers in libraries.
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(
      redactStderr(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`),
    );
    process.exit(1);
  },
);
