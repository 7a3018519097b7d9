import { ErrorCode, InternalError } from '../core/errors.ts';
import type { Engine, ModelDefaults, ModelInfo } from '../models/engine.ts';
import type { QueueLogger } from './logger.ts';

/** A model a worker serves: its name, how to load it, what it costs in memory, and its revision. */
export interface ServedModel {
  readonly name: string;
  /** Loads the model; called when first needed, and again after it was unloaded for the budget. */
  load(): Promise<Engine>;
  /** Memory it takes once loaded, in bytes (estimated from its ONNX files on disk); 0 = unknown. */
  readonly sizeBytes: number;
  /** Revision of its files (models/revision.ts); '' when unknown. */
  readonly revision: string;
  /** Its own generation defaults, when known before loading (read from its folder). */
  readonly defaults?: ModelDefaults;
  /** The engine belongs to the caller: never closed by the pool (so never unloaded either). */
  readonly keepOpen?: boolean;
}

/** An engine lent for one batch; give it back with `release`. */
export interface Lease {
  readonly engine: Engine;
  release(): void;
}

/**
 * The loaded engines of a worker, within a memory budget: a model is loaded when a job needs it, and
 * before loading one that would not fit, the least recently used idle models are unloaded. A model in
 * use is never unloaded; a load waits for one to be released when only busy models could make room.
 * A model larger than the whole budget still loads (alone), with a warning: refusing would leave it
 * unservable.
 */
export interface EnginePool {
  acquire(name: string): Promise<Lease>;
  /** Names of the loaded models, least recently used first. */
  loaded(): readonly string[];
  /** Unloads every model (waits for none: call it after the last batch). */
  close(): Promise<void>;
}

interface Entry {
  readonly model: ServedModel;
  readonly engine: Promise<Engine>;
  users: number;
  lastUsed: number;
}

export function createEnginePool(
  models: readonly ServedModel[],
  budgetBytes: number,
  logger: QueueLogger,
): EnginePool {
  const byName = new Map(models.map((m) => [m.name, m]));
  const entries = new Map<string, Entry>();
  // Admissions (make room, start a load) run one at a time, so two loads never both count on the same room.
  let admitting: Promise<unknown> = Promise.resolve();
  let released: (() => void)[] = [];
  let tick = 0;

  const used = () => [...entries.values()].reduce((sum, e) => sum + e.model.sizeBytes, 0);

  function whenReleased(): Promise<void> {
    return new Promise((resolve) => released.push(resolve));
  }

  async function unload(entry: Entry): Promise<void> {
    entries.delete(entry.model.name);
    logger.info(
      { model: entry.model.name, sizeMb: Math.round(entry.model.sizeBytes / 2 ** 20) },
      'model unloaded to stay within MODEL_MEMORY_MB',
    );
    const engine = await entry.engine.catch(() => undefined);
    if (engine !== undefined && entry.model.keepOpen !== true) await engine.close();
  }

  async function admit(model: ServedModel): Promise<Entry> {
    for (;;) {
      const present = entries.get(model.name);
      if (present !== undefined) return present;
      if (budgetBytes <= 0 || used() + model.sizeBytes <= budgetBytes) break;
      const idle = [...entries.values()]
        .filter((e) => e.users === 0 && e.model.keepOpen !== true)
        .sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (idle !== undefined) {
        await unload(idle);
        continue;
      }
      if ([...entries.values()].some((e) => e.users > 0)) {
        await whenReleased();
        continue;
      }
      logger.warn(
        { model: model.name, sizeMb: Math.round(model.sizeBytes / 2 ** 20), budgetMb: budgetBytes / 2 ** 20 },
        'model is larger than MODEL_MEMORY_MB allows; loading it anyway',
      );
      break;
    }
    const engine = model.load();
    const entry: Entry = { model, engine, users: 0, lastUsed: tick++ };
    entries.set(model.name, entry);
    // A failed load is forgotten, so the next job tries again.
    engine.catch(() => {
      if (entries.get(model.name) === entry) entries.delete(model.name);
    });
    return entry;
  }

  return {
    async acquire(name) {
      const model = byName.get(name);
      if (model === undefined) {
        throw new InternalError(ErrorCode.Internal, `this worker does not serve the model ${name}`);
      }
      // Counted as a user inside the admission, so the next admission can't unload it first.
      const admission = admitting.then(async () => {
        const entry = entries.get(name) ?? (await admit(model));
        entry.users++;
        entry.lastUsed = tick++;
        return entry;
      });
      admitting = admission.catch(() => undefined);
      const entry = await admission;
      let engine: Engine;
      try {
        engine = await entry.engine;
      } catch (error) {
        entry.users--;
        throw error;
      }
      let done = false;
      return {
        engine,
        release() {
          if (done) return;
          done = true;
          entry.users--;
          entry.lastUsed = tick++;
          const waiting = released;
          released = [];
          for (const wake of waiting) wake();
        },
      };
    },
    loaded: () => [...entries.values()].sort((a, b) => a.lastUsed - b.lastUsed).map((e) => e.model.name),
    async close() {
      const all = [...entries.values()];
      entries.clear();
      await Promise.all(
        all.map(async (entry) => {
          const engine = await entry.engine.catch(() => undefined);
          if (engine !== undefined && entry.model.keepOpen !== true) await engine.close();
        }),
      );
    },
  };
}

/** A count of batches a worker may run at once, shared by its models' queues. */
export interface Slots {
  take(): Promise<() => void>;
}

export function createSlots(count: number): Slots {
  let free = count;
  const waiting: (() => void)[] = [];
  return {
    async take() {
      if (free > 0) free--;
      else await new Promise<void>((resolve) => waiting.push(resolve));
      let given = false;
      return () => {
        if (given) return;
        given = true;
        const next = waiting.shift();
        if (next !== undefined) next();
        else free++;
      };
    },
  };
}

export type { ModelInfo };
