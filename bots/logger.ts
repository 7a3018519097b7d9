import { type DestinationStream, type Logger, pino } from 'pino';

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
}

/** JSON logs, one object a line, with every known secret field replaced by `[redacted]`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.role === undefined ? { pid: process.pid } : { pid: process.pid, role: options.role },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination,
  );
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
