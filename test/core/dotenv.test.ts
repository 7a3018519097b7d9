import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config.ts';
import { mergeDotenv, parseDotenv } from '../../core/dotenv.ts';

describe('parseDotenv', () => {
  it('reads the forms people write: comments, export, quotes, escapes, empty values', () => {
    const text = [
      '\uFEFF# a comment',
      '',
      'PORT=9000',
      'export QUEUE_PREFIX=from-file',
      '  SUFFIXES = , a|, b   # trailing comment',
      'PLAYGROUND_TOKEN=\'lit#er\\al "x"\'',
      'SLACK_SIGNING_SECRET="dq \\"in\\" \\\\ # not a comment" # comment',
      'MULTI="line one',
      'line two"',
      'REDIS_URL=',
      'HASH=a#b',
      'PORT=9001',
      'CRLF=yes\r',
    ].join('\n');
    const { values, errors } = parseDotenv(text);
    expect(errors).toEqual([]);
    expect(values).toEqual({
      PORT: '9001',
      QUEUE_PREFIX: 'from-file',
      SUFFIXES: ', a|, b',
      PLAYGROUND_TOKEN: 'lit#er\\al "x"',
      SLACK_SIGNING_SECRET: 'dq "in" \\ # not a comment',
      MULTI: 'line one\nline two',
      REDIS_URL: '',
      HASH: 'a#b',
      CRLF: 'yes',
    });
  });

  it('names each bad line and never quotes it (a mistyped line may hold a token)', () => {
    const { errors } = parseDotenv(
      ['xoxb-secret-token-only', 'GOOD=1', '1BAD=x', 'OPEN="never closed', 'LAST=1'].join('\n'),
    );
    expect(errors).toEqual([
      'line 1: expected KEY=value',
      'line 3: the name before "=" must be letters, digits and _, not starting with a digit',
      'line 4: OPEN: the " quote is never closed',
    ]);
    expect(errors.join('\n')).not.toContain('xoxb-secret');
    expect(parseDotenv('AFTER="x" junk').errors).toEqual([
      'line 1: AFTER: unexpected text after the closing quote',
    ]);
  });
});

describe('mergeDotenv', () => {
  it('lets the environment win, even with an empty value, and reports names only', () => {
    const merged = mergeDotenv(
      { PORT: '1234', LOG_LEVEL: '', PATH: '/bin' },
      { PORT: '9000', LOG_LEVEL: 'debug', QUEUE_PREFIX: 'x' },
    );
    expect(merged.env).toEqual({ PORT: '1234', LOG_LEVEL: '', PATH: '/bin', QUEUE_PREFIX: 'x' });
    expect(merged.applied).toEqual(['QUEUE_PREFIX']);
    expect(merged.overridden).toEqual(['PORT', 'LOG_LEVEL']);
  });

  it('an empty value means the default for every setting, as .env.example shows them', () => {
    const empty = parseConfig({
      ORT_EP: '',
      HOST: ' ',
      QUEUE_PREFIX: '',
      DEFAULT_SAMPLER: '',
      LOG_LEVEL: '',
      MODELS_DIR: '',
      WORKER_PORT: '',
    });
    const defaults = parseConfig({});
    expect(empty.ok && defaults.ok).toBe(true);
    if (empty.ok && defaults.ok) expect(empty.config).toEqual(defaults.config);
  });
});
