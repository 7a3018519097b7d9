import { z } from 'zod';
import { CodedError, ErrorCode } from './errors.ts';
import {
  BUILT_IN_DEFAULTS,
  BUILT_IN_MAX_PIXELS,
  type DefaultsLayer,
  resolveDefaults,
} from './generation-defaults.ts';
import { DEFAULT_MODEL_NAME, type ModelEntry, parseModelList } from './models.ts';
import { NSFW_POLICIES } from './nsfw.ts';
import { GENERATOR_KINDS, SAMPLERS } from './samplers.ts';

/**
 * Every setting is an environment variable. This schema is the one place they are declared, with
 * their defaults; entry points call `loadConfig(process.env)` once and pass the typed result down.
 * `.env.example` documents the same variables.
 */

const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
    .default(fallback ? 'true' : 'false')
    .transform((v) => (v === '' ? fallback : v === 'true' || v === '1' || v === 'yes'));

const intIn = (min: number, max: number) =>
  z.string().transform((v, ctx) => {
    const trimmed = v.trim();
    if (!/^-?\d+$/.test(trimmed)) {
      ctx.addIssue({ code: 'custom', message: `must be an integer, got "${v}"` });
      return z.NEVER;
    }
    const n = Number(trimmed);
    if (n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be between ${min} and ${max}, got ${n}` });
      return z.NEVER;
    }
    return n;
  });

const int = (fallback: number, min: number, max: number) => intIn(min, max).default(fallback);

/** A number that is undefined when unset, so code can tell a value set on purpose from none. */
const optionalNum = (min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const trimmed = v?.trim() ?? '';
      if (trimmed === '') return undefined;
      const n = Number(trimmed);
      if (!Number.isFinite(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a number between ${min} and ${max}, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

const num = (fallback: number, min: number, max: number) =>
  optionalNum(min, max).transform((v) => v ?? fallback);

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const url = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const value = v.trim() === '' ? fallback : v.trim();
      try {
        const parsed = new URL(value);
        if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('protocol');
        return value;
      } catch {
        ctx.addIssue({ code: 'custom', message: `must be an http(s) URL, got ${describeUrl(v)}` });
        return z.NEVER;
      }
    });

const optionalRedisUrl = optionalString.superRefine((v, ctx) => {
  if (v === undefined) return;
  try {
    const parsed = new URL(v);
    if (!['redis:', 'rediss:'].includes(parsed.protocol)) throw new Error('protocol');
  } catch {
    ctx.addIssue({ code: 'custom', message: `must be a redis:// or rediss:// URL, got ${describeUrl(v)}` });
  }
});

/**
 * A bad URL setting, described without echoing it: URLs carry passwords (`redis://:pw@host`), so
 * only the scheme and host are shown, and an unparseable value is not shown at all.
 */
function describeUrl(value: string): string {
  try {
    const parsed = new URL(value);
    const credentials = parsed.username !== '' || parsed.password !== '' ? ' (credentials not shown)' : '';
    return parsed.host === ''
      ? `a ${parsed.protocol} URL${credentials}`
      : `${parsed.protocol}//${parsed.host}${credentials}`;
  } catch {
    return 'a value that is not a URL (not shown: it may hold a password)';
  }
}

/** Default refinement suffixes: the ones diffusers' deterministic-generation example adds in its second round. */
export const DEFAULT_SUFFIXES = [', highly realistic', ', artsy', ', trending', ', colorful'] as const;

const suffixes = z
  .string()
  .default(DEFAULT_SUFFIXES.join('|'))
  .transform((v, ctx) => {
    const list = (v.trim() === '' ? DEFAULT_SUFFIXES.join('|') : v).split('|');
    if (list.length < 1 || list.length > 4) {
      ctx.addIssue({
        code: 'custom',
        message: `must list 1 to 4 suffixes separated by "|", got ${list.length}`,
      });
      return z.NEVER;
    }
    if (list.some((s) => s.length > 200)) {
      ctx.addIssue({ code: 'custom', message: 'each suffix must be at most 200 characters' });
      return z.NEVER;
    }
    return list;
  });

const idList = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  );

const hostPortList = z
  .string()
  .default('')
  .transform((v, ctx) => {
    const items = v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    const nodes: { host: string; port: number }[] = [];
    for (const item of items) {
      const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/u.exec(item);
      const port = match === null ? 0 : Number(match[2]);
      if (match === null || port < 1 || port > 65535) {
        ctx.addIssue({
          code: 'custom',
          message: `must be host:port entries separated by commas, got "${item}"`,
        });
        return z.NEVER;
      }
      nodes.push({ host: match[1]!.replace(/^\[|\]$/gu, ''), port });
    }
    return nodes;
  });

const modelList = optionalString.transform((v, ctx) => {
  if (v === undefined) return undefined;
  const parsed = parseModelList(v);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: parsed.error });
    return z.NEVER;
  }
  return parsed.value;
});

/** The worker's health port when WORKER_PORT is unset (then the next free one above it if taken). */
export const DEFAULT_WORKER_PORT = 8788;

export const configSchema = z.object({
  /** Redis to use. Unset: a private redis-server is started on a free loopback port (unless REDIS_SENTINELS). */
  REDIS_URL: optionalRedisUrl,
  /** Redis Sentinels, `host:port,host:port`: the queue follows the master they name. Default: none. */
  REDIS_SENTINELS: hostPortList,
  /** Name of the master the Sentinels watch. Default `mymaster`. */
  REDIS_SENTINEL_NAME: z.string().default('mymaster'),
  /** Password of the Redis master (Sentinel mode; with REDIS_URL, put it in the URL). Default: none. */
  REDIS_PASSWORD: optionalString,
  /** Data directory of the private redis-server (AOF on). Default `./data/redis`. */
  REDIS_DATA_DIR: z.string().default('./data/redis'),
  /** Key prefix of every BullMQ queue and record. Default `imagine`. */
  QUEUE_PREFIX: z
    .string()
    .default('imagine')
    .refine((v) => /^[A-Za-z0-9_.-]{1,64}$/.test(v), 'must be 1-64 characters of letters, digits, _ . -'),

  /** Model folder (SD 1.x ONNX layout). Unset: the bundled demo model, built on first use. */
  MODEL_DIR: optionalString,
  /**
   * Several models, `name=folder,name=folder` (names: lowercase letters, digits, _ . -); the first is
   * the default and `/imagine … --model NAME` picks another. Unset: one model named `default`, from
   * MODEL_DIR (or the demo model). Give either MODELS or MODEL_DIR.
   */
  MODELS: modelList,
  /**
   * Memory, in MB, a worker may hold for loaded models (estimated from their ONNX files on disk); past
   * it the least recently used idle model is unloaded before another is loaded. 0 = no limit. Default 0.
   */
  MODEL_MEMORY_MB: int(0, 0, 4_194_304),
  /** Where `imagine models download` puts models and where the demo model is built. Default `./data/models`. */
  MODELS_DIR: z.string().default('./data/models'),
  /** onnxruntime execution provider: cpu, cuda or webgpu. Default `cpu`. */
  ORT_EP: z.enum(['cpu', 'cuda', 'webgpu']).default('cpu'),
  /** GPU device id for cuda/webgpu. Default 0. */
  ORT_DEVICE_ID: int(0, 0, 64),
  /** onnxruntime intra-op threads. 0 = one per CPU core. Default 0. */
  ORT_INTRA_OP_THREADS: int(0, 0, 256),
  /** Random generator that seeds reproduce: cpu (torch CPU mt19937, diffusers' recommended) or cuda (Philox). Default `cpu`. */
  GENERATOR: z.enum(GENERATOR_KINDS).default('cpu'),
  /** Run the model's safety checker when it has one, flagging NSFW images. Default false. */
  SAFETY_CHECKER: bool(false),
  /**
   * Final decoder: `vae` (the model's VAE, diffusers-exact) or `taesd` (the folder's tiny autoencoder in
   * vae_decoder_tiny/, much faster, approximate). Default `vae`.
   */
  DECODER: z.enum(['vae', 'taesd']).default('vae'),

  /** Refinement suffixes, `|`-separated, 1-4 entries. Default `, highly realistic|, artsy|, trending|, colorful`. */
  SUFFIXES: suffixes,
  /*
   * The DEFAULT_* below apply only when set: unset, each model's own defaults apply (its imagine.json
   * or those known for its family), then the built-in ones (core/generation-defaults.ts). Set, they win
   * over every model's; a team's settings and the user's flags win over them.
   */
  /** Sampler when none is given. Default: the model's own scheduler, else `pndm` (plain diffusers' for SD 1.5). */
  DEFAULT_SAMPLER: z.enum(SAMPLERS).optional(),
  /** Steps when none are given. Default: the model's (Turbo 1, SDXL 30), else 25. */
  DEFAULT_STEPS: intIn(1, 500).optional(),
  /** Largest step count a user may ask for. Default 50. */
  MAX_STEPS: int(50, 1, 500),
  /** Guidance (CFG scale) when none is given. Default: the model's (Turbo 0, SDXL 5), else 7.5. */
  DEFAULT_GUIDANCE: optionalNum(0, 30),
  /**
   * Image width when neither size nor aspect is given. Default: the model's (Turbo 512, SDXL 1024,
   * SD 2.1 768 768), else 512. With only one of DEFAULT_WIDTH/DEFAULT_HEIGHT set, the other is 512.
   */
  DEFAULT_WIDTH: intIn(64, 4096).optional(),
  /** Image height when neither size nor aspect is given. Default: the model's, else 512. */
  DEFAULT_HEIGHT: intIn(64, 4096).optional(),
  /**
   * Largest width×height a user may ask for; when set, a cap on every model (a larger own size is scaled
   * down to fit). Default: unset, 589824 (768×768) or the chosen model's own size where larger (SDXL).
   */
  MAX_PIXELS: intIn(64 * 64, 4096 * 4096).optional(),

  /** Jobs one user may have queued or running at once. Default 2. */
  PER_USER_LIMIT: int(2, 1, 1000),
  /** Jobs waiting in the queue before new ones are refused. Default 200. */
  QUEUE_DEPTH_LIMIT: int(200, 1, 100000),
  /** Teams (workspaces, else channels) take turns on the GPU; false: plain FIFO. Default true. */
  FAIR_SHARING: bool(true),
  /**
   * Days a finished grid's record (prompts, seeds, settings, model) is kept, counted from when it
   * finished; its buttons work until then. Queued and running jobs never expire. Default 30.
   */
  RECORD_TTL_DAYS: num(30, 0.0001, 3650),
  /**
   * Hours a grid's PNGs are kept; a button that needs one after that makes it again from the record
   * (same seeds, same image). Capped by RECORD_TTL_DAYS. Default 24.
   */
  IMAGE_TTL_HOURS: num(24, 0.0001, 87600),
  /**
   * Redis memory, in MB, for grid PNGs of all jobs; past it the oldest are dropped first (and made
   * again when needed). 0 = no limit. Default 1024.
   */
  IMAGE_STORE_MAX_MB: num(1024, 0, 1_048_576),
  /** Batches one worker runs at once (keep 1 per GPU). Default 1. */
  WORKER_CONCURRENCY: int(1, 1, 64),
  /** Tries for a job that hits a transient error. Default 3. */
  JOB_ATTEMPTS: int(3, 1, 20),
  /**
   * Longest time, in ms, before a job whose worker died is picked up again by another running worker
   * (the worker derives its BullMQ lock and stall check from it). Default 30000.
   */
  STALLED_INTERVAL_MS: int(30_000, 1000, 3_600_000),
  /** On SIGTERM, how long a worker may finish its job before releasing it, in ms. Default 60000. */
  SHUTDOWN_TIMEOUT_MS: int(60_000, 0, 3_600_000),

  /** Only the requester may press a grid's buttons. Default false (anyone in the channel). */
  OWNER_ONLY_BUTTONS: bool(false),
  /** Comma-separated user ids (surface:user, e.g. `discord:123`) who may cancel anyone's jobs. Default empty. */
  ADMIN_USERS: idList,
  /**
   * Comma-separated words refused in every prompt on every surface (whole words, case- and
   * accent-insensitive; see core/team-settings.ts). Teams add their own but cannot lift these. Default empty.
   */
  BANNED_WORDS: idList,
  /**
   * What happens to images the safety checker flags, where no team sets its own `nsfw`: `block`
   * (replaced, the user told), `blur` (blurred; a spoiler on Discord) or `allow`. `allow` does not
   * apply on Discord outside age-restricted channels, nor on Slack (see core/nsfw.ts). Default `block`.
   */
  NSFW_POLICY: z.enum(NSFW_POLICIES).default('block'),

  /** Discord bot token. Unset: Discord is off. */
  DISCORD_TOKEN: optionalString,
  /** Discord application id (needed with DISCORD_TOKEN). */
  DISCORD_APP_ID: optionalString,
  /** Register commands in this guild only (instant); unset: global commands. */
  DISCORD_GUILD_ID: optionalString,
  /** Discord REST base including `/api`. Default `https://discord.com/api`. */
  DISCORD_API_URL: url('https://discord.com/api'),

  /** Slack bot token (xoxb-…). Unset: Slack is off. */
  SLACK_BOT_TOKEN: optionalString,
  /** Slack app-level token (xapp-…) for Socket Mode. */
  SLACK_APP_TOKEN: optionalString,
  /** Slack signing secret, for HTTP mode. */
  SLACK_SIGNING_SECRET: optionalString,
  /** socket (default, no public URL needed) or http. */
  SLACK_MODE: z.enum(['socket', 'http']).default('socket'),
  /** Port of the Slack HTTP receiver in http mode. Default 3000. */
  SLACK_PORT: int(3000, 1, 65535),
  /** Slack Web API base. Default `https://slack.com/api/`. */
  SLACK_API_URL: url('https://slack.com/api/'),

  /** Playground / API / health bind address. Default 127.0.0.1 (loopback only). */
  HOST: z.string().default('127.0.0.1'),
  /** Playground / API / health port. Default 8787. */
  PORT: int(8787, 0, 65535),
  /** Bearer token the playground requires; mandatory when HOST is not loopback. */
  PLAYGROUND_TOKEN: optionalString,
  /**
   * Worker health/metrics port in `npm run worker` mode. Unset: 8788, or the next free port above it
   * when 8788 is taken (several workers on one host). A port set here must be free, or the worker
   * stops at start. 0 picks any free port.
   */
  WORKER_PORT: intIn(0, 65535).optional(),

  /** pino log level. Default `info`. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = z.output<typeof configSchema>;

/**
 * True only for the literal loopback addresses (127.0.0.0/8 in dotted-quad form with four decimal
 * octets 0-255, `::1`, `[::1]`) and the name `localhost`. A name that merely starts with `127.`
 * (`127.attacker.example`) can resolve anywhere, so it is not loopback. Takes a bare host, no port.
 */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase();
  if (name === 'localhost' || name === '::1' || name === '[::1]') return true;
  // No leading zeros: some resolvers read `010` as octal, or fall back to DNS for `099`.
  const octets = /^127\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/u.exec(name);
  return octets?.slice(1).every((o) => Number(o) <= 255) === true;
}

/** Validation result: one message lists every bad variable and why. */
export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

export function parseConfig(env: Readonly<Record<string, string | undefined>>): ConfigResult {
  // Each variable is parsed on its own, so one message lists every bad variable, and the cross-field
  // rules below still run on the ones that parsed. Unrelated variables are never looked at.
  const errors: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(configSchema.shape)) {
    // An empty value means unset (the default), for every variable: `KEY=` in .env, compose's `${KEY:-}`.
    const raw = env[key];
    const parsed = (schema as z.ZodType).safeParse(raw === undefined || raw.trim() === '' ? undefined : raw);
    if (parsed.success) values[key] = parsed.data;
    else
      for (const issue of parsed.error.issues) {
        // zod's enum message lists the options but not what was given; say both.
        const got = issue.code === 'invalid_value' ? `, got "${env[key]}"` : '';
        errors.push(`${key}: ${issue.message}${got}`);
      }
  }
  const c = values as Partial<Config>;
  if (c.DEFAULT_STEPS !== undefined && c.MAX_STEPS !== undefined && c.DEFAULT_STEPS > c.MAX_STEPS) {
    errors.push(`DEFAULT_STEPS: must not exceed MAX_STEPS (${c.MAX_STEPS}), got ${c.DEFAULT_STEPS}`);
  }
  for (const key of ['DEFAULT_WIDTH', 'DEFAULT_HEIGHT'] as const) {
    const side = c[key];
    if (side !== undefined && side % 8 !== 0) errors.push(`${key}: must be a multiple of 8, got ${side}`);
  }
  // The built-in size must fit too: it applies on any model that has no size of its own.
  const [size, maxPixels] = [envDefaultSize(c) ?? BUILT_IN_DEFAULTS, c.MAX_PIXELS ?? BUILT_IN_MAX_PIXELS];
  if (size.width * size.height > maxPixels) {
    errors.push(`DEFAULT_WIDTH×DEFAULT_HEIGHT: must fit MAX_PIXELS (${maxPixels})`);
  }
  if (c.REDIS_URL !== undefined && c.REDIS_SENTINELS !== undefined && c.REDIS_SENTINELS.length > 0) {
    errors.push('REDIS_SENTINELS: give either REDIS_URL or REDIS_SENTINELS, not both');
  }
  if (c.MODELS !== undefined && c.MODEL_DIR !== undefined) {
    errors.push('MODELS: give either MODELS (name=folder,…) or MODEL_DIR (one model), not both');
  }
  if (c.DISCORD_TOKEN !== undefined && c.DISCORD_APP_ID === undefined) {
    errors.push('DISCORD_APP_ID: required when DISCORD_TOKEN is set');
  }
  if (c.SLACK_BOT_TOKEN !== undefined) {
    if (c.SLACK_MODE === 'socket' && c.SLACK_APP_TOKEN === undefined) {
      errors.push('SLACK_APP_TOKEN: required for SLACK_MODE=socket (or set SLACK_MODE=http)');
    }
    if (c.SLACK_MODE === 'http' && c.SLACK_SIGNING_SECRET === undefined) {
      errors.push('SLACK_SIGNING_SECRET: required for SLACK_MODE=http');
    }
  }
  if (c.HOST !== undefined && !isLoopbackHost(c.HOST) && c.PLAYGROUND_TOKEN === undefined) {
    errors.push(`PLAYGROUND_TOKEN: required when HOST (${c.HOST}) is not a loopback address`);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, config: values as Config };
}

/** Parses or throws one CodedError whose message lists every bad variable. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const result = parseConfig(env);
  if (!result.ok) {
    throw new CodedError(
      ErrorCode.Config,
      `Invalid configuration:\n${result.errors.map((e) => `  - ${e}`).join('\n')}`,
      { context: { errors: result.errors } },
    );
  }
  return result.config;
}

/** DEFAULT_WIDTH×DEFAULT_HEIGHT when either is set (the other then built-in); undefined when neither is. */
function envDefaultSize(c: Partial<Pick<Config, 'DEFAULT_WIDTH' | 'DEFAULT_HEIGHT'>>) {
  if (c.DEFAULT_WIDTH === undefined && c.DEFAULT_HEIGHT === undefined) return undefined;
  const { width, height } = BUILT_IN_DEFAULTS;
  return { width: c.DEFAULT_WIDTH ?? width, height: c.DEFAULT_HEIGHT ?? height };
}

/** The request limits the parser enforces, derived from config. */
export interface RequestLimits {
  /**
   * The defaults when nothing else sets one (no model's known): the environment's, else built-in.
   * `limitsWith` (core/team-settings.ts) puts a team's and a model's on top.
   */
  readonly defaultSteps: number;
  readonly maxSteps: number;
  readonly defaultGuidance: number;
  readonly defaultSampler: (typeof SAMPLERS)[number];
  readonly defaultWidth: number;
  readonly defaultHeight: number;
  readonly maxPixels: number;
  /** MAX_PIXELS unset: `maxPixels` is built in; a model's larger own size raises it. @defaultValue false */
  readonly maxPixelsBuiltIn?: boolean;
  /** The model's own size, when `limitsWith` scaled it down to MAX_PIXELS. @defaultValue none */
  readonly modelSizeReduced?: { readonly width: number; readonly height: number };
  /** Negative prompt when none is given (a team's setting). @defaultValue none */
  readonly defaultNegative?: string;
  /** Aspect `W:H` when neither size nor aspect is given (a team's setting). @defaultValue DEFAULT_WIDTH×DEFAULT_HEIGHT */
  readonly defaultAspect?: string;
  /** Names of the served models, the default first (`--model` picks one). @defaultValue `['default']` */
  readonly models?: readonly string[];
  /**
   * The DEFAULT_* set in the environment (only those): they win over a model's own defaults, while
   * the `default*` fields above give way to them. @defaultValue none
   */
  readonly envDefaults?: DefaultsLayer;
}

/**
 * The served models in order, the default first: MODELS, else one model named `default` from
 * MODEL_DIR (undefined dir: the demo model).
 */
export function modelsFrom(config: Config): readonly ModelEntry[] {
  return config.MODELS ?? [{ name: DEFAULT_MODEL_NAME, dir: config.MODEL_DIR }];
}

/** The DEFAULT_* the environment sets (unset ones absent). */
export function envDefaultsFrom(config: Config): DefaultsLayer {
  const size = envDefaultSize(config);
  const layer: Record<string, unknown> = {
    steps: config.DEFAULT_STEPS,
    guidance: config.DEFAULT_GUIDANCE,
    sampler: config.DEFAULT_SAMPLER,
    ...size,
  };
  return Object.fromEntries(Object.entries(layer).filter(([, v]) => v !== undefined)) as DefaultsLayer;
}

export function requestLimitsFrom(config: Config): RequestLimits {
  const env = envDefaultsFrom(config);
  const base = resolveDefaults([env]);
  return {
    defaultSteps: Math.min(base.steps, config.MAX_STEPS),
    maxSteps: config.MAX_STEPS,
    defaultGuidance: base.guidance,
    defaultSampler: base.sampler,
    defaultWidth: base.width,
    defaultHeight: base.height,
    maxPixels: config.MAX_PIXELS ?? BUILT_IN_MAX_PIXELS,
    maxPixelsBuiltIn: config.MAX_PIXELS === undefined,
    models: modelsFrom(config).map((m) => m.name),
    envDefaults: env,
  };
}
