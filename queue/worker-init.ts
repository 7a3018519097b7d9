import { ErrorCode, UserError } from '../core/errors.ts';
import type { InitSource, JobSpec } from '../core/jobspec.ts';
import type { Engine, GenerateRequest } from '../models/engine.ts';
import { encodePng } from '../models/png.ts';
import type { RedisClient } from './connection.ts';
import { initImageGoneError } from './init-images.ts';
import type { QueueKeys } from './keys.ts';
import { loadRecord } from './queue-state.ts';

/**
 * The worker's side of image-to-image: the engine request of a spec, with its starting picture read
 * from the store. A grid image whose PNG was dropped (IMAGE_TTL, the byte budget) is made again here,
 * alone, from its grid's record (same prompt, seed and settings, so the same picture): waiting on the
 * re-render queue instead could wait on this very worker. A picture that can't be had (its upload or its
 * grid's record expired) fails the job with a UserError, which is never retried.
 */

/** How many image-to-image generations deep a lost picture is made again (a vary of a vary of …). */
const MAX_REMAKE_DEPTH = 4;

export function requestFor(spec: JobSpec, initImage?: Uint8Array): GenerateRequest {
  return {
    prompts: spec.prompts,
    negative: spec.negative,
    seeds: spec.seeds,
    scheduler: spec.sampler,
    steps: spec.steps,
    guidance: spec.guidance,
    width: spec.width,
    height: spec.height,
    ...(initImage === undefined || spec.strength === undefined ? {} : { initImage, strength: spec.strength }),
  };
}

/** The words a result's `parameters` chunk uses for where its starting picture came from. */
export function initLabel(init: InitSource): string {
  return init.from === 'grid' ? `${init.gridId} image ${init.index + 1}` : `upload sha256:${init.sha256}`;
}

export interface InitImages {
  /** The engine request of `spec`, with its starting picture when it has one. */
  request(spec: JobSpec, engine: Engine, signal?: AbortSignal): Promise<GenerateRequest>;
  /** Renews an uploaded picture's TTL once its job ended (the record's TTL starts then); never shortens it. */
  renew(spec: JobSpec, ttlMs: number): Promise<void>;
}

export function createInitImages(client: RedisClient, keys: QueueKeys): InitImages {
  async function picture(
    spec: JobSpec,
    engine: Engine,
    depth: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    const init = spec.init;
    if (init === undefined) return undefined;
    if (init.from === 'upload') {
      const bytes = await client.getBuffer(keys.initImage(init.sha256));
      if (bytes === null) throw initImageGoneError(init.sha256);
      return bytes;
    }
    const stored = await client.getBuffer(keys.image(init.gridId, init.index));
    if (stored !== null) return stored;
    return remake(init.gridId, init.index, engine, depth, signal);
  }

  /** Image `index` of a finished grid, made again from its record (one image: it depends on nothing else). */
  async function remake(
    gridId: string,
    index: number,
    engine: Engine,
    depth: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const gone = new UserError(
      ErrorCode.Expired,
      `The grid this job starts from has expired, so its image ${index + 1} can no longer be read. Run /imagine again.`,
      { context: { gridId, index } },
    );
    if (depth >= MAX_REMAKE_DEPTH) throw gone;
    const record = await loadRecord(client, keys, gridId);
    const prompt = record?.spec.prompts[index];
    const seed = record?.spec.seeds[index];
    if (record === null || record.state.status.state !== 'done' || prompt === undefined || seed === undefined)
      throw gone;
    const one: JobSpec = { ...record.spec, prompts: [prompt], seeds: [seed] };
    const result = await engine.generate(
      await requestWith(one, engine, depth + 1, signal),
      signal === undefined ? {} : { signal },
    );
    const image = result.images[0];
    if (image === undefined) throw gone;
    return encodePng(image);
  }

  async function requestWith(
    spec: JobSpec,
    engine: Engine,
    depth: number,
    signal?: AbortSignal,
  ): Promise<GenerateRequest> {
    return requestFor(spec, await picture(spec, engine, depth, signal));
  }

  return {
    request: (spec, engine, signal) => requestWith(spec, engine, 0, signal),
    async renew(spec, ttlMs) {
      if (spec.init?.from !== 'upload') return;
      const key = keys.initImage(spec.init.sha256);
      // Only ever lengthened: another job using the same picture may need it for longer.
      if ((await client.pttl(key)) < ttlMs) await client.pexpire(key, ttlMs);
    },
  };
}
