import { describe, expect, it } from 'vitest';
import type { Engine } from '../../models/engine.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { modelFolderFacts } from '../../models/revision.ts';
import { createEnginePool, createSlots, type ServedModel } from '../../queue/engine-pool.ts';
import { silentLogger } from '../../queue/logger.ts';
import { TINY_SD, TINY_SD2 } from '../models/tiny-sd.ts';

const request = {
  prompts: ['a red fox'],
  negative: '',
  seeds: [1],
  scheduler: 'euler' as const,
  steps: 1,
  guidance: 1,
  width: 64,
  height: 64,
};

/** The two tiny fixture models as served models, with the engines they load (real onnxruntime sessions). */
async function fixtures() {
  const loads: string[] = [];
  const closed: string[] = [];
  const made = async (name: string, dir: string): Promise<ServedModel> => {
    const facts = await modelFolderFacts(dir);
    return {
      name,
      sizeBytes: facts.weightBytes,
      revision: facts.revision,
      load: async () => {
        loads.push(name);
        const engine = await loadEngine(dir);
        return {
          info: engine.info,
          generate: (r, o) => engine.generate(r, o),
          close: async () => {
            closed.push(name);
            await engine.close();
          },
        } satisfies Engine;
      },
    };
  };
  const models = [await made('sd1', TINY_SD), await made('sd2', TINY_SD2)];
  return { models, loads, closed };
}

describe('engine pool (MODEL_MEMORY_MB)', () => {
  it('reads a model folder: a stable revision, and the weights’ size', async () => {
    const a = await modelFolderFacts(TINY_SD);
    const b = await modelFolderFacts(TINY_SD2);
    expect(a.revision).toMatch(/^[0-9a-f]{12}$/u);
    expect(a.revision).not.toBe(b.revision);
    expect((await modelFolderFacts(TINY_SD)).revision).toBe(a.revision);
    // The fixtures' weights are a few MB each.
    expect(a.weightBytes).toBeGreaterThan(1_000_000);
  });

  it('a budget that holds one model: loading the other unloads the least recently used idle one', async () => {
    const { models, loads, closed } = await fixtures();
    const [sd1, sd2] = models as [ServedModel, ServedModel];
    // Room for the larger of the two, not for both.
    const pool = createEnginePool(models, Math.max(sd1.sizeBytes, sd2.sizeBytes), silentLogger);
    try {
      const a = await pool.acquire('sd1');
      expect((await a.engine.generate(request)).images).toHaveLength(1);
      a.release();
      expect(pool.loaded()).toEqual(['sd1']);
      const b = await pool.acquire('sd2');
      expect(b.engine.info.family).toBe('sd2');
      expect(closed).toEqual(['sd1']);
      expect(pool.loaded()).toEqual(['sd2']);
      b.release();
      // Back to the first: loaded again, the second unloaded.
      const again = await pool.acquire('sd1');
      expect((await again.engine.generate(request)).images).toHaveLength(1);
      again.release();
      expect(loads).toEqual(['sd1', 'sd2', 'sd1']);
      expect(closed).toEqual(['sd1', 'sd2']);
    } finally {
      await pool.close();
    }
  });

  it('a model in use is never unloaded: the other load waits for its release', async () => {
    const { models, closed } = await fixtures();
    const budget = Math.max(models[0]!.sizeBytes, models[1]!.sizeBytes);
    const pool = createEnginePool(models, budget, silentLogger);
    try {
      const a = await pool.acquire('sd1');
      let got = false;
      const b = pool.acquire('sd2').then((lease) => {
        got = true;
        return lease;
      });
      // The first lease is still held: nothing may be closed, and the second waits.
      await a.engine.generate(request);
      expect(got).toBe(false);
      expect(closed).toEqual([]);
      a.release();
      const lease = await b;
      expect(closed).toEqual(['sd1']);
      lease.release();
    } finally {
      await pool.close();
    }
  });

  it('without a budget both stay loaded; close unloads them all', async () => {
    const { models, loads, closed } = await fixtures();
    const pool = createEnginePool(models, 0, silentLogger);
    (await pool.acquire('sd1')).release();
    (await pool.acquire('sd2')).release();
    (await pool.acquire('sd1')).release();
    expect(loads).toEqual(['sd1', 'sd2']);
    expect(pool.loaded()).toEqual(['sd2', 'sd1']);
    await pool.close();
    expect(closed.sort()).toEqual(['sd1', 'sd2']);
  });

  it('slots: one batch at a time across models', async () => {
    const slots = createSlots(1);
    const first = await slots.take();
    let second = false;
    const next = slots.take().then((free) => {
      second = true;
      return free;
    });
    await Promise.resolve();
    expect(second).toBe(false);
    first();
    (await next)();
    expect(second).toBe(true);
  });
});
