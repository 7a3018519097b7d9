import { describe, expect, it } from 'vitest';
import { nsfwPolicyFor, nsfwSettingRefusal } from '../../core/nsfw.ts';

describe('which NSFW policy applies where (core/nsfw.ts)', () => {
  it('Discord: allow only in age-restricted channels, where it is the default', () => {
    const open = { surface: 'discord' };
    const restricted = { surface: 'discord', ageRestricted: true };
    expect(nsfwPolicyFor(open, undefined, 'block')).toBe('block');
    expect(nsfwPolicyFor(open, undefined, 'blur')).toBe('blur');
    expect(nsfwPolicyFor(open, undefined, 'allow')).toBe('block');
    expect(nsfwPolicyFor(open, 'allow', 'block')).toBe('block');
    expect(nsfwPolicyFor(restricted, undefined, 'block')).toBe('allow');
    expect(nsfwPolicyFor(restricted, 'blur', 'block')).toBe('blur');
    expect(nsfwPolicyFor(restricted, 'block', 'allow')).toBe('block');
  });

  it('Slack: allow only when a team sets it; the playground: its setting, else the environment', () => {
    expect(nsfwPolicyFor({ surface: 'slack' }, undefined, 'allow')).toBe('block');
    expect(nsfwPolicyFor({ surface: 'slack' }, undefined, 'blur')).toBe('blur');
    expect(nsfwPolicyFor({ surface: 'slack' }, 'allow', 'block')).toBe('allow');
    expect(nsfwPolicyFor({ surface: 'web' }, undefined, 'allow')).toBe('allow');
    expect(nsfwPolicyFor({ surface: 'web' }, 'blur', 'allow')).toBe('blur');
  });

  it('setting allow is refused on Discord outside an age-restricted channel and server-wide', () => {
    expect(nsfwSettingRefusal({ surface: 'discord' }, 'channel', 'allow')).toContain('age-restricted');
    expect(nsfwSettingRefusal({ surface: 'discord', ageRestricted: true }, 'workspace', 'allow')).toContain(
      'age-restricted',
    );
    expect(
      nsfwSettingRefusal({ surface: 'discord', ageRestricted: true }, 'channel', 'allow'),
    ).toBeUndefined();
    expect(nsfwSettingRefusal({ surface: 'discord' }, 'channel', 'blur')).toBeUndefined();
    expect(nsfwSettingRefusal({ surface: 'slack' }, 'workspace', 'allow')).toBeUndefined();
  });
});
