import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode } from '../../core/errors.ts';
import { IMAGINE_JSON, readImagineJson, resolveModelDefaults } from '../../models/defaults.ts';
import type { ModelDefaults } from '../../models/engine.ts';
import { loadModel } from '../../models/loader.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { TINY_SD, TINY_SD2, TINY_SDXL } from './tiny-sd.ts';

/** Per-model defaults (issue 11): imagine.json, else known by family and scheduler config. */

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-defaults-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let copies = 0;
async function copyOf(source: string): Promise<string> {
  const dir = path.join(work, `m${copies++}`);
  await cp(source, dir, { recursive: true });
  return dir;
}

async function editJson(file: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  await writeFile(file, JSON.stringify(json));
}

const scheduler = (dir: string) => path.join(dir, 'scheduler', 'scheduler_config.json');

/** The defaults the engine API reports for a folder (loads every session, as a worker does). */
async function engineDefaults(dir: string): Promise<ModelDefaults | undefined> {
  const engine = await loadEngine(dir);
  try {
    return engine.info.defaults;
  } finally {
    await engine.close();
  }
}

async function loadError(dir: string): Promise<CodedError> {
  try {
    const m = await loadModel(dir);
    await m.close();
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    return error as CodedError;
  }
  throw new Error(`loading ${dir} succeeded`);
}

describe('known defaults by family and scheduler config', () => {
  it('SD 1.x (PNDM): 25 steps, guidance 7.5, 512², its own pndm — through the engine API', async () => {
    expect(await engineDefaults(TINY_SD)).toEqual({
      steps: 25,
      guidance: 7.5,
      width: 512,
      height: 512,
      scheduler: 'pndm',
      source: 'family',
      reason: 'SD 1.x',
    });
  });

  it('SDXL-Turbo (EulerAncestral, trailing): 1 step, guidance 0, 512² — through the engine API', async () => {
    expect(await engineDefaults(TINY_SDXL)).toMatchObject({
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      scheduler: 'euler_a',
      source: 'family',
      reason: expect.stringContaining('SDXL-Turbo'),
    });
  });

  it('SDXL base (EulerDiscrete, leading): 1024², 30 steps, guidance 5', async () => {
    const dir = await copyOf(TINY_SDXL);
    await editJson(scheduler(dir), (c) => {
      c._class_name = 'EulerDiscreteScheduler';
      c.timestep_spacing = 'leading';
    });
    expect(await engineDefaults(dir)).toMatchObject({
      steps: 30,
      guidance: 5,
      width: 1024,
      height: 1024,
      scheduler: 'euler',
      reason: 'SDXL',
    });
  });

  it('SD-Turbo: an SD 2.x folder with EulerAncestral and trailing spacing', async () => {
    const dir = await copyOf(TINY_SD2);
    await editJson(scheduler(dir), (c) => {
      c._class_name = 'EulerAncestralDiscreteScheduler';
      c.timestep_spacing = 'trailing';
      c.prediction_type = 'epsilon';
    });
    expect(await engineDefaults(dir)).toMatchObject({
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      scheduler: 'euler_a',
      reason: expect.stringContaining('SD-Turbo'),
    });
  });

  it('SD 2.x 768: v-prediction with unet sample_size 96 gives 768²; without it, 512²', async () => {
    const base = await resolveModelDefaults(
      TINY_SD2,
      'sd2',
      JSON.parse(await readFile(scheduler(TINY_SD2), 'utf8')),
    );
    expect(base).toMatchObject({ width: 512, height: 512, steps: 25, scheduler: 'ddim', reason: 'SD 2.x' });

    const dir = await copyOf(TINY_SD2);
    await writeFile(path.join(dir, 'unet', 'config.json'), JSON.stringify({ sample_size: 96 }));
    expect(await engineDefaults(dir)).toMatchObject({
      width: 768,
      height: 768,
      steps: 25,
      guidance: 7.5,
      scheduler: 'ddim',
      reason: expect.stringContaining('768'),
    });

    // sample_size 96 with epsilon prediction is not the 768 model's rule.
    await editJson(scheduler(dir), (c) => {
      c.prediction_type = 'epsilon';
    });
    expect(await engineDefaults(dir)).toMatchObject({ width: 512, height: 512 });
  });
});

describe('imagine.json', () => {
  it('overrides field by field, over the known defaults', async () => {
    const dir = await copyOf(TINY_SDXL);
    await writeFile(path.join(dir, IMAGINE_JSON), JSON.stringify({ defaults: { steps: 4, width: 768 } }));
    expect(await engineDefaults(dir)).toEqual({
      steps: 4,
      guidance: 0,
      width: 768,
      height: 512,
      scheduler: 'euler_a',
      source: 'imagine.json',
      reason: expect.stringContaining('imagine.json over SDXL-Turbo'),
    });
    expect(await readImagineJson(dir)).toEqual({ defaults: { steps: 4, width: 768 } });
  });

  it('refuses unknown keys, naming them and what is allowed', async () => {
    const dir = await copyOf(TINY_SD);
    await writeFile(path.join(dir, IMAGINE_JSON), JSON.stringify({ defaults: { stepz: 4 } }));
    const inner = await loadError(dir);
    expect(inner.code).toBe(ErrorCode.ModelLoad);
    expect(inner.message).toContain(path.join(dir, IMAGINE_JSON));
    expect(inner.message).toContain('unknown key "defaults.stepz"');
    expect(inner.message).toContain('allowed: catalog, defaults.steps');

    await writeFile(
      path.join(dir, IMAGINE_JSON),
      JSON.stringify({ defaults: {}, sampler: 'euler', extra: 1 }),
    );
    const top = await loadError(dir);
    expect(top.message).toContain('unknown keys "sampler", "extra"');
  });

  it('refuses bad values and broken JSON with what is expected', async () => {
    const dir = await copyOf(TINY_SD);
    await writeFile(
      path.join(dir, IMAGINE_JSON),
      JSON.stringify({ defaults: { width: 500, scheduler: 'heun' } }),
    );
    const bad = await loadError(dir);
    expect(bad.code).toBe(ErrorCode.ModelLoad);
    expect(bad.message).toMatch(/defaults\.width: .*multiple of 8/);
    expect(bad.message).toMatch(/defaults\.scheduler: /);
    expect(bad.message).toContain('"scheduler": pndm | ddim');

    await writeFile(path.join(dir, IMAGINE_JSON), '{"defaults": ');
    expect((await loadError(dir)).message).toContain('is not valid JSON');

    await writeFile(path.join(dir, IMAGINE_JSON), '[]');
    expect((await loadError(dir)).message).toContain(IMAGINE_JSON);
  });
});
