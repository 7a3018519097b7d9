import { describe, expect, it } from 'vitest';
import { loadConfig, type RequestLimits, requestLimitsFrom } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { parseImagineText } from '../../core/request.ts';
import {
  type EffectiveSettings,
  effectiveSettings,
  findBannedWord,
  limitsWith,
  parseTeamPatch,
  quotaError,
  utcDay,
} from '../../core/team-settings.ts';

const limits: RequestLimits = requestLimitsFrom(loadConfig({}));

const global: EffectiveSettings = {
  suffixes: [', a', ', b'],
  negative: '',
  sampler: 'pndm',
  steps: 25,
  guidance: 7.5,
  ownerOnlyButtons: false,
  bannedWords: ['globalword'],
  dailyQuota: 0,
  admins: ['slack:UADMIN'],
};

describe('effectiveSettings: environment, then workspace, then channel', () => {
  it('takes the global defaults when no scope sets anything', () => {
    expect(effectiveSettings(global)).toEqual(global);
  });

  it('lets a channel override its workspace field by field, and the workspace override the defaults', () => {
    const e = effectiveSettings(
      global,
      { steps: 30, sampler: 'ddim', suffixes: [', w'], aspect: '3:2', dailyQuota: 8 },
      { steps: 12, negative: 'blurry', dailyQuota: 4 },
    );
    expect(e).toMatchObject({
      steps: 12,
      sampler: 'ddim',
      suffixes: [', w'],
      negative: 'blurry',
      aspect: '3:2',
      dailyQuota: 4,
      guidance: 7.5,
    });
  });

  it('adds banned words and admins up: a channel cannot lift what its workspace or the environment bans', () => {
    const e = effectiveSettings(
      global,
      { bannedWords: ['teamword'], admins: ['slack:U1'] },
      { bannedWords: [], admins: ['slack:U2'] },
    );
    expect(e.bannedWords).toEqual(['globalword', 'teamword']);
    expect(e.admins).toEqual(['slack:UADMIN', 'slack:U1', 'slack:U2']);
  });
});

describe('banned words', () => {
  it('matches whole words, case- and accent-insensitively', () => {
    expect(findBannedWord('A LightHouse at dusk', ['lighthouse'])).toBe('lighthouse');
    expect(findBannedWord('a lïghthoùse!', ['lighthouse'])).toBe('lighthouse');
    expect(findBannedWord('a café', ['CAFE'])).toBe('CAFE');
    expect(findBannedWord('two lighthouses', ['lighthouse'])).toBeUndefined();
    expect(findBannedWord('a flighthouse', ['lighthouse'])).toBeUndefined();
  });

  it('matches words split by punctuation or spaces, but only at word boundaries', () => {
    for (const text of ['a light-house', 'a light.house', 'a light house', 'a l.i.g.h.t.h.o.u.s.e'])
      expect(findBannedWord(text, ['lighthouse'])).toBe('lighthouse');
    expect(findBannedWord('slight housework', ['lighthouse'])).toBeUndefined();
  });

  it('matches banned phrases of several words', () => {
    expect(findBannedWord('the Red—Fox runs', ['red fox'])).toBe('red fox');
    expect(findBannedWord('a redder fox', ['red fox'])).toBeUndefined();
  });
});

describe('parseTeamPatch', () => {
  const ctx = { limits, bannedWords: ['globalword'] };

  it('accepts a valid partial update, and null to reset a field', () => {
    expect(parseTeamPatch({ suffixes: [', x'], steps: 20, aspect: null }, ctx)).toEqual({
      ok: true,
      value: { suffixes: [', x'], steps: 20, aspect: null },
    });
  });

  it.each([
    [{ suffixes: [] }, 'suffixes'],
    [{ suffixes: ['a', 'b', 'c', 'd', 'e'] }, 'suffixes'],
    [{ suffixes: ['x'.repeat(101)] }, 'suffixes.0'],
    [{ steps: 0 }, 'steps'],
    [{ steps: 51 }, 'steps'],
    [{ steps: 'ten' }, 'steps'],
    [{ guidance: 31 }, 'guidance'],
    [{ sampler: 'magic' }, 'sampler'],
    [{ aspect: '9:1' }, 'aspect'],
    [{ dailyQuota: -1 }, 'dailyQuota'],
    [{ bannedWords: ['--'] }, 'bannedWords.0'],
    [{ admins: ['not an id'] }, 'admins.0'],
    [{ colour: 'red' }, 'colour'],
  ])('refuses %j naming the field', (input, field) => {
    const result = parseTeamPatch(input, ctx);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe(ErrorCode.InvalidRequest);
      expect(result.error.message).toContain(`"${field}"`);
    }
  });

  it('refuses a suffix with a banned word without naming the word', () => {
    const result = parseTeamPatch({ suffixes: [', Global-Word style'] }, ctx);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.message).toContain('"suffixes.0"');
      expect(result.error.message.toLowerCase()).not.toContain('globalword');
    }
  });
});

describe('team defaults in the request parser', () => {
  const team = effectiveSettings(global, {
    negative: 'blurry',
    sampler: 'euler_a',
    steps: 9,
    guidance: 3,
    aspect: '3:2',
  });

  it('apply when the user gave none', () => {
    const parsed = parseImagineText('a fox', limitsWith(limits, team));
    expect(parsed).toMatchObject({
      ok: true,
      value: { negative: 'blurry', sampler: 'euler_a', steps: 9, guidance: 3, width: 576, height: 384 },
    });
  });

  it('give way to what the user typed', () => {
    const parsed = parseImagineText(
      'a fox --no text --sampler ddim --steps 5 --cfg 6 --size 512x512',
      limitsWith(limits, team),
    );
    expect(parsed).toMatchObject({
      ok: true,
      value: { negative: 'text', sampler: 'ddim', steps: 5, guidance: 6, width: 512, height: 512 },
    });
  });
});

describe('quota', () => {
  it('counts per UTC day and says when it resets, with a retry hint in seconds', () => {
    const now = Date.UTC(2026, 11, 3, 22, 30);
    const { day, resetsAt } = utcDay(now);
    expect(day).toBe('20261203');
    expect(resetsAt).toBe(Date.UTC(2026, 11, 4));
    const error = quotaError(4, resetsAt, now);
    expect(error.code).toBe(ErrorCode.Quota);
    expect(error.retryAfterSeconds).toBe(5400);
    expect(error.message).toContain('00:00 UTC (in 1 h 30 min)');
  });
});
