import { describe, expect, it } from 'vitest';
import { modelsFrom, parseConfig, requestLimitsFrom } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { modelOf, parseImagineOptions, parseImagineText } from '../../core/request.ts';

function config(env: Record<string, string>) {
  const parsed = parseConfig(env);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.config;
}

describe('MODELS: several models per deployment', () => {
  it('lists name=folder pairs in order, the first the default', () => {
    const c = config({ MODELS: 'turbo=/models/sd-turbo, sdxl=/models/sdxl' });
    expect(modelsFrom(c)).toEqual([
      { name: 'turbo', dir: '/models/sd-turbo' },
      { name: 'sdxl', dir: '/models/sdxl' },
    ]);
    expect(requestLimitsFrom(c).models).toEqual(['turbo', 'sdxl']);
  });

  it('without MODELS: one model named default, from MODEL_DIR or the demo model', () => {
    expect(modelsFrom(config({}))).toEqual([{ name: 'default', dir: undefined }]);
    expect(modelsFrom(config({ MODEL_DIR: '/m/sd15' }))).toEqual([{ name: 'default', dir: '/m/sd15' }]);
  });

  it.each([
    ['turbo', 'MODELS: each entry must be name=folder, got "turbo"'],
    [
      'Turbo=/m',
      'MODELS: model name "Turbo" must be 1-32 lowercase letters, digits, _ . - (starting with a letter or digit)',
    ],
    ['a=/x,a=/y', 'MODELS: model name "a" is listed twice'],
    ['a=', 'MODELS: each entry must be name=folder, got "a="'],
  ])('refuses %s with a clear message', (value, message) => {
    const parsed = parseConfig({ MODELS: value });
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.errors).toEqual([message]);
  });

  it('refuses MODELS together with MODEL_DIR, and a bad MODEL_MEMORY_MB', () => {
    const parsed = parseConfig({ MODELS: 'a=/x', MODEL_DIR: '/y', MODEL_MEMORY_MB: 'lots' });
    expect(parsed.ok).toBe(false);
    if (!parsed.ok)
      expect(parsed.errors).toEqual([
        'MODEL_MEMORY_MB: must be an integer, got "lots"',
        'MODELS: give either MODELS (name=folder,…) or MODEL_DIR (one model), not both',
      ]);
  });

  it('--model picks a served model; none given: the default; an unknown one is refused with the list', () => {
    const limits = requestLimitsFrom(config({ MODELS: 'sd1=/a,sd2=/b' }));
    const picked = parseImagineText('a fox --model sd2', limits);
    expect(picked.ok && picked.value.model).toBe('sd2');
    const plain = parseImagineText('a fox', limits);
    expect(plain.ok && modelOf(plain.value, limits)).toBe('sd1');
    const typed = parseImagineOptions({ prompt: 'a fox', model: 'SD2' }, limits);
    expect(typed.ok && typed.value.model).toBe('sd2');
    const unknown = parseImagineText('a fox --model sdxl', limits);
    expect(unknown.ok).toBe(false);
    if (!unknown.ok) {
      expect(unknown.error.code).toBe(ErrorCode.UnknownModel);
      expect(unknown.error.message).toBe(
        'Unknown model `sdxl`. This deployment serves: sd1, sd2 (the first is the default).',
      );
    }
  });
});
