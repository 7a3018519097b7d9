import { describe, expect, it } from 'vitest';
import { DEFAULT_SUFFIXES, loadConfig, parseConfig } from '../../core/config.ts';
import {
  asCodedError,
  CodedError,
  ErrorCode,
  InternalError,
  reportError,
  toPublicError,
  UserError,
} from '../../core/errors.ts';
import { JOB_SPEC_VERSION, jobIdFor, parseJobSpec } from '../../core/jobspec.ts';

describe('config', () => {
  it('has documented defaults', () => {
    const c = loadConfig({});
    expect(c.SUFFIXES).toEqual([...DEFAULT_SUFFIXES]);
    expect(c).toMatchObject({
      ORT_EP: 'cpu',
      GENERATOR: 'cpu',
      HOST: '127.0.0.1',
      PORT: 8787,
      PER_USER_LIMIT: 2,
      QUEUE_DEPTH_LIMIT: 200,
      RECORD_TTL_DAYS: 30,
      LOG_LEVEL: 'info',
      DISCORD_API_URL: 'https://discord.com/api',
      SLACK_API_URL: 'https://slack.com/api/',
      SLACK_MODE: 'socket',
      OWNER_ONLY_BUTTONS: false,
    });
    expect(c.REDIS_URL).toBeUndefined();
    expect(c.MODEL_DIR).toBeUndefined();
  });

  it('parses values and ignores unrelated variables', () => {
    const c = loadConfig({
      REDIS_URL: 'redis://10.0.0.1:6380/2',
      SUFFIXES: ', a|, b',
      MAX_STEPS: '80',
      DEFAULT_GUIDANCE: '5.5',
      OWNER_ONLY_BUTTONS: 'true',
      ADMIN_USERS: 'discord:1, slack:U2 ,',
      PATH: '/bin',
      SOMETHING_ELSE: '???',
    });
    expect(c.REDIS_URL).toBe('redis://10.0.0.1:6380/2');
    expect(c.SUFFIXES).toEqual([', a', ', b']);
    expect(c.MAX_STEPS).toBe(80);
    expect(c.DEFAULT_GUIDANCE).toBe(5.5);
    expect(c.OWNER_ONLY_BUTTONS).toBe(true);
    expect(c.ADMIN_USERS).toEqual(['discord:1', 'slack:U2']);
  });

  it('lists every bad variable in one message', () => {
    const r = parseConfig({
      REDIS_URL: 'http://nope',
      ORT_EP: 'tpu',
      MAX_STEPS: 'ten',
      PORT: '70000',
      SUFFIXES: 'a|b|c|d|e',
      DEFAULT_GUIDANCE: '31',
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const keys = r.errors.map((e) => e.split(':')[0]);
    expect(keys.sort()).toEqual(['DEFAULT_GUIDANCE', 'MAX_STEPS', 'ORT_EP', 'PORT', 'REDIS_URL', 'SUFFIXES']);
    expect(() => loadConfig({ ORT_EP: 'tpu', PORT: 'x' })).toThrow(/ORT_EP[\s\S]*PORT|PORT[\s\S]*ORT_EP/);
    expect(r.errors.find((e) => e.startsWith('ORT_EP'))).toMatch(/"cpu"\|"cuda"\|"webgpu", got "tpu"$/);
  });

  it('never echoes a bad URL setting whole: it may hold a password', () => {
    const r = parseConfig({
      REDIS_URL: 'http://admin:Pw-in-url-77@redis.example:6379/0',
      DISCORD_API_URL: 'ftp://u:Other-pw-88@proxy.example/api',
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toEqual([
      'REDIS_URL: must be a redis:// or rediss:// URL, got http://redis.example:6379 (credentials not shown)',
      'DISCORD_API_URL: must be an http(s) URL, got ftp://proxy.example (credentials not shown)',
    ]);
    const malformed = parseConfig({ REDIS_URL: 'redis://admin:Pw-in-url-77@host:port/0' });
    expect(malformed.ok).toBe(false);
    if (!malformed.ok) {
      expect(malformed.errors).toEqual([
        'REDIS_URL: must be a redis:// or rediss:// URL, got a value that is not a URL (not shown: it may hold a password)',
      ]);
    }
  });

  it('still checks cross-field rules when other variables are bad', () => {
    const r = parseConfig({ ORT_EP: 'tpu', HOST: '0.0.0.0', DEFAULT_WIDTH: '500' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.split(':')[0]).sort()).toEqual([
      'DEFAULT_WIDTH',
      'ORT_EP',
      'PLAYGROUND_TOKEN',
    ]);
  });

  it('checks cross-field rules', () => {
    const r = parseConfig({
      DEFAULT_STEPS: '60',
      DEFAULT_WIDTH: '500',
      DISCORD_TOKEN: 'x',
      SLACK_BOT_TOKEN: 'xoxb',
      HOST: '0.0.0.0',
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const text = r.errors.join('\n');
    expect(text).toContain('DEFAULT_STEPS: must not exceed MAX_STEPS');
    expect(text).toContain('DEFAULT_WIDTH: must be a multiple of 8');
    expect(text).toContain('DISCORD_APP_ID: required');
    expect(text).toContain('SLACK_APP_TOKEN: required');
    expect(text).toContain('PLAYGROUND_TOKEN: required');
    expect(parseConfig({ HOST: '0.0.0.0', PLAYGROUND_TOKEN: 'secret' }).ok).toBe(true);
  });
});

describe('errors', () => {
  it('names carry the code', () => {
    expect(new UserError(ErrorCode.QueueFull, 'full').name).toBe('UserError[E_QUEUE_FULL]');
    expect(new InternalError(ErrorCode.Inference, 'boom').name).toBe('InternalError[E_INFERENCE]');
  });

  it('shows user errors verbatim and internal errors only by id', () => {
    expect(
      toPublicError(new UserError(ErrorCode.QueueFull, 'The queue is full.', { retryAfterSeconds: 30 })),
    ).toEqual({
      code: ErrorCode.QueueFull,
      message: 'The queue is full.',
      retryAfterSeconds: 30,
    });
    const internal = new InternalError(ErrorCode.Inference, 'CUDA out of memory at node 17');
    const shown = toPublicError(internal);
    expect(shown.errorId).toBe(internal.errorId);
    expect(shown.message).toContain(internal.errorId);
    expect(shown.message).not.toContain('CUDA');
  });

  it('wraps foreign errors and logs through one sink', () => {
    expect(asCodedError(new TypeError('x'))).toBeInstanceOf(InternalError);
    expect(asCodedError('str').message).toBe('str');
    const calls: [string, object, string][] = [];
    const log = {
      warn: (o: object, m: string) => calls.push(['warn', o, m]),
      error: (o: object, m: string) => calls.push(['error', o, m]),
    };
    const shown = reportError(log, new Error('secret detail'), { jobId: 'j1' });
    expect(calls[0]?.[0]).toBe('error');
    expect(calls[0]?.[1]).toMatchObject({ jobId: 'j1', errorId: shown.errorId });
    expect(shown.message).not.toContain('secret detail');
    reportError(log, new UserError(ErrorCode.InvalidRequest, 'bad seed'));
    expect(calls[1]?.[0]).toBe('warn');
    expect(new CodedError(ErrorCode.Config, 'c')).toBeInstanceOf(Error);
  });
});

describe('job spec', () => {
  const base = {
    v: JOB_SPEC_VERSION,
    kind: 'imagine',
    prompts: ['a', 'a', 'a', 'a'],
    seeds: [1, 2, 3, 4],
    negative: '',
    sampler: 'pndm',
    steps: 20,
    guidance: 7.5,
    width: 512,
    height: 512,
    origin: { surface: 'discord', user: 'u1', channel: 'c1', interactionId: '123' },
    requestedAt: 1,
  };

  it('accepts a valid spec and fills defaults', () => {
    const r = parseJobSpec(base);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.spec.origin.messageRef).toEqual({});
  });

  it.each([
    [{ v: 2 }, 'v'],
    [{ seeds: [1, 2, 3] }, 'seeds: needs one seed per prompt'],
    [{ seeds: [1, 2, 3, 2 ** 32] }, 'seeds.3'],
    [{ width: 500 }, 'width'],
    [{ sampler: 'heun' }, 'sampler'],
    [{ kind: 'refine' }, 'parent'],
    [{ kind: 'refine', parent: { gridId: 'g' } }, 'parent.index'],
    [{ prompts: [] }, 'prompts'],
    [{ origin: { surface: 'irc', user: 'u', channel: 'c', interactionId: 'i' } }, 'origin.surface'],
  ])('rejects %j', (patch, path) => {
    const r = parseJobSpec({ ...base, ...patch });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(path);
  });

  it('derives stable, safe job ids from interaction ids', () => {
    expect(jobIdFor('discord', '1234567890')).toBe('discord-1234567890');
    expect(jobIdFor('slack', 'a.b:c/d')).toBe('slack-a_b_c_d');
    const long = 'x'.repeat(300);
    expect(jobIdFor('web', long)).toBe(jobIdFor('web', long));
    expect(jobIdFor('web', long).length).toBeLessThanOrEqual(64);
    expect(jobIdFor('web', `${long}1`)).not.toBe(jobIdFor('web', `${long}2`));
  });
});
