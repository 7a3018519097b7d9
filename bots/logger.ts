import { type DestinationStream, type Logger, pino } from 'pino';
import type { Config } from '../core/config.ts';

export type { Logger } from 'pino';

/**
 * Field names whose values are secrets wherever they appear. pino's redaction works on paths, so each
 * name is listed at the depths our log objects use (top level, one and two levels down).
 */
const SECRET_KEYS = [
  'token',
  'accessToken',
  'botToken',
  'appToken',
  'interactionToken',
  'password',
  'secret',
  'signingSecret',
  'authorization',
  'cookie',
  'set-cookie',
  'apiKey',
  'response_url',
  'responseUrl',
  'webhookUrl',
  'DISCORD_TOKEN',
  'SLACK_BOT_TOKEN',
  'SLACK_APP_TOKEN',
  'SLACK_SIGNING_SECRET',
  'PLAYGROUND_TOKEN',
  'REDIS_URL',
] as const;

export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((key) => {
  const k = /^[A-Za-z_$][\w$]*$/u.test(key) ? key : `["${key}"]`;
  const join = (prefix: string) => (k.startsWith('[') ? `${prefix}${k}` : `${prefix}.${k}`);
  return [k, join('*'), join('*.*'), join('*.*.*')];
});

export interface LoggerOptions {
  /** @defaultValue `'info'` */
  readonly level?: string;
  /** Process role, added to every line (`all`, `bot`, `worker`). */
  readonly role?: string;
  /** Where lines go. @defaultValue stdout */
  readonly destination?: DestinationStream;
  /**
   * Secret values (tokens, passwords) to blank out of every line, wherever they appear: field names
   * can't catch a password inside an error's text or a library's object. See `configSecrets`.
   * @defaultValue none
   */
  readonly secrets?: readonly (string | undefined)[];
}

/**
 * JSON logs, one object a line, with every known secret field replaced by `[redacted]`, every known
 * secret value removed from the finished line, and Redis commands' arguments dropped from errors.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const redact = createRedactor(options.secrets ?? []);
  return pino(
    {
      level: options.level ?? 'info',
      base: options.role === undefined ? { pid: process.pid } : { pid: process.pid, role: options.role },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError, error: serializeError },
      // The last step before a line is written: whatever a library put in it, no known secret leaves.
      hooks: { streamWrite: redact },
    },
    options.destination,
  );
}

/**
 * pino's error serializer, less the arguments of the Redis command that failed: ioredis attaches
 * `command: {name, args}` to its errors, and for the connection handshake the args are
 * `HELLO 3 AUTH <user> <password>`. The command name stays; nested causes are cleaned too.
 */
export function serializeError(error: unknown): unknown {
  const out = error instanceof Error ? pino.stdSerializers.err(error) : error;
  return dropCommandArgs(out, 0);
}

function dropCommandArgs(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object' || depth > 4) return value;
  if (Array.isArray(value)) return value.map((v) => dropCommandArgs(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === 'args') continue;
    if (key === 'command' && v !== null && typeof v === 'object') {
      const name = (v as { name?: unknown }).name;
      if (typeof name === 'string') out.command = name;
      continue;
    }
    out[key] = dropCommandArgs(v, depth + 1);
  }
  return out;
}

/** Secret values shorter than this are not searched for: they would blank ordinary words. */
const MIN_SECRET_LENGTH = 4;

/**
 * A function that replaces every occurrence of the given secrets in a text with `[redacted]`: as
 * written, JSON-escaped (once and twice, for JSON inside a log message) and URL-encoded.
 */
export function createRedactor(secrets: readonly (string | undefined)[]): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret === undefined || secret.length < MIN_SECRET_LENGTH) continue;
    const json = JSON.stringify(secret).slice(1, -1);
    for (const form of [secret, json, JSON.stringify(json).slice(1, -1), encodeURIComponent(secret)])
      forms.add(form);
  }
  if (forms.size === 0) return (text) => text;
  const pattern = new RegExp(
    [...forms]
      .sort((a, b) => b.length - a.length)
      .map((f) => f.replace(/[.*+?^${}()|[\]\\]/gu, '\\$&'))
      .join('|'),
    'gu',
  );
  return (text) => text.replace(pattern, '[redacted]');
}

/**
 * Every secret the configuration holds (tokens, the signing secret, Redis passwords, including the
 * one inside REDIS_URL, raw and percent-decoded), plus any extra ones such as HF_TOKEN.
 */
export function configSecrets(config: Config, extra: readonly (string | undefined)[] = []): string[] {
  const secrets: (string | undefined)[] = [
    config.DISCORD_TOKEN,
    config.SLACK_BOT_TOKEN,
    config.SLACK_APP_TOKEN,
    config.SLACK_SIGNING_SECRET,
    config.PLAYGROUND_TOKEN,
    config.REDIS_PASSWORD,
    ...extra,
  ];
  if (config.REDIS_URL !== undefined) {
    try {
      const { password } = new URL(config.REDIS_URL);
      if (password !== '') secrets.push(password, safeDecode(password));
    } catch {
      // Config has already checked it parses.
    }
  }
  return [...new Set(secrets.filter((s): s is string => s !== undefined && s !== ''))];
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A URL safe to log: credentials and query values (login tokens, signatures) replaced. */
export function safeUrl(raw: string): string {
  try {
    const url = new URL(raw, 'http://relative.invalid');
    if (url.username !== '') url.username = 'redacted';
    if (url.password !== '') url.password = 'redacted';
    for (const key of [...url.searchParams.keys()]) url.searchParams.set(key, 'redacted');
    const text = url.toString();
    return raw.startsWith('/') ? text.slice('http://relative.invalid'.length) : text;
  } catch {
    return '[unparseable url]';
  }
}
