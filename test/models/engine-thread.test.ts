import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import type { Engine } from '../../models/engine.ts';
import { loadEngineInThread, TERMINATE_THREAD } from '../../models/engine-thread/index.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { CASES, closeness, IMG2IMG, IMG2IMG_CASES, referenceRgb, requestOf, TINY_SD } from './tiny-sd.ts';

describe('engine hosted in a worker thread', () => {
  let threaded: Engine;
  let direct: Engine;
  beforeAll(async () => {
    [threaded, direct] = await Promise.all([
      loadEngineInThread(TINY_SD, { intraOpThreads: 1 }),
      loadEngine(TINY_SD, { intraOpThreads: 1 }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([threaded?.close(), direct?.close()]);
  });

  it('reports the same model info', () => {
    expect(threaded.info).toEqual(direct.info);
  });

  it('makes exactly the images the in-process engine makes, and diffusers', async () => {
    const c = CASES[0]!;
    const [a, b] = await Promise.all([threaded.generate(requestOf(c)), direct.generate(requestOf(c))]);
    expect(a.images).toHaveLength(c.images.length);
    for (let k = 0; k < a.images.length; k++) {
      expect(Buffer.from(a.images[k]!.data).equals(Buffer.from(b.images[k]!.data))).toBe(true);
      const match = closeness(a.images[k]!.data, await referenceRgb(c.images[k]!.file));
      expect(match.within1).toBeGreaterThanOrEqual(0.999);
      expect(match.maxDiff).toBeLessThanOrEqual(2);
    }
    expect(a.truncatedTokens).toEqual(b.truncatedTokens);
  });

  it('runs image-to-image with the picture sent to the thread, progress counting only the steps run', async () => {
    const c = IMG2IMG[2]!;
    const initImage = new Uint8Array(await readFile(path.join(IMG2IMG_CASES, c.init_image)));
    const request = {
      prompts: c.prompts,
      negative: c.negative ?? '',
      negativeGiven: c.negative !== undefined,
      seeds: c.seeds,
      scheduler: c.scheduler,
      steps: c.steps,
      guidance: c.guidance,
      width: 96,
      height: 64,
      initImage,
      strength: c.strength,
    };
    const steps: [number, number][] = [];
    const result = await threaded.generate(request, { onStep: (p) => void steps.push([p.step, p.total]) });
    const run = Math.trunc(c.steps * c.strength);
    expect(steps).toEqual(Array.from({ length: run }, (_, i) => [i + 1, run]));
    const match = closeness(result.images[0]!.data, await referenceRgb(c.images[0]!.file, IMG2IMG_CASES));
    expect(match.within1).toBeGreaterThanOrEqual(0.999);
    expect(match.maxDiff).toBeLessThanOrEqual(2);
  });

  it('streams progress with a preview of each image', async () => {
    const c = CASES[0]!;
    const steps: number[] = [];
    let previewShape: [number, number, number] | undefined;
    const result = await threaded.generate(requestOf(c), {
      onStep: (p) => {
        steps.push(p.step);
        const img = p.preview(c.seeds.length - 1);
        previewShape = [img.width, img.height, img.data.length];
        expect(() => p.preview(99)).toThrow(RangeError);
      },
    });
    expect(steps.length).toBe(result.timings.stepMs.length);
    expect(steps).toEqual(steps.map((_, i) => i + 1));
    expect(previewShape).toEqual([c.width / 8, c.height / 8, (c.width / 8) * (c.height / 8) * 3]);
  });

  it('cancels between steps through the AbortSignal', async () => {
    const c = CASES[0]!;
    const controller = new AbortController();
    let seen = 0;
    const error = await threaded
      .generate(requestOf(c), {
        signal: controller.signal,
        onStep: () => {
          seen++;
          if (seen === 2) controller.abort();
        },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.Cancelled);
    expect(seen).toBeLessThan(c.steps);
    // The engine is still usable afterwards.
    expect((await threaded.generate({ ...requestOf(c), steps: 2 })).images).toHaveLength(c.seeds.length);
  });

  it('keeps user errors user-facing across the thread boundary', async () => {
    const error = await threaded.generate({ ...requestOf(CASES[0]!), width: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
  });

  it('reports a model folder that cannot load, naming the problem', async () => {
    const error = await loadEngineInThread('/nonexistent/model').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toMatch(/E_MODEL/);
    expect((error as CodedError).message).toContain('/nonexistent/model');
  });

  it('a thread that dies fails its batch (retryable) and is started again for the next one', async () => {
    const engine = await loadEngineInThread(TINY_SD, { intraOpThreads: 1 });
    try {
      const c = CASES[0]!;
      const before = await engine.generate(requestOf(c));
      let crashed = false;
      const inFlight = engine
        .generate(requestOf(c), {
          onStep: () => {
            if (crashed) return;
            crashed = true;
            (engine as unknown as { [TERMINATE_THREAD](): void })[TERMINATE_THREAD]();
          },
        })
        .catch((e: unknown) => e);
      const error = await inFlight;
      expect(error).toBeInstanceOf(InternalError);
      expect((error as InternalError).code).toBe(ErrorCode.Inference);
      expect((error as InternalError).message).toMatch(/engine thread died.*code 70/);
      // Dying while idle is recovered the same way.
      (engine as unknown as { [TERMINATE_THREAD](): void })[TERMINATE_THREAD]();
      await new Promise((r) => setTimeout(r, 200));
      const after = await engine.generate(requestOf(c));
      for (let k = 0; k < after.images.length; k++) {
        expect(Buffer.from(after.images[k]!.data).equals(Buffer.from(before.images[k]!.data))).toBe(true);
      }
    } finally {
      await engine.close();
    }
  });

  it('refuses work after close', async () => {
    const engine = await loadEngineInThread(TINY_SD, { intraOpThreads: 1 });
    await engine.close();
    await engine.close();
    await expect(engine.generate(requestOf(CASES[0]!))).rejects.toThrow(/closed/);
  });
});
