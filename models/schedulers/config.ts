import { ErrorCode, InternalError } from '../../core/errors.ts';
import type { SchedulerConfig } from '../types.ts';

/**
 * Reads a `scheduler_config.json` the way diffusers' `SchedulerClass.from_config(config, **overrides)`
 * does: keys listed in `_use_default_values` were defaults of the class that wrote the file, so they are
 * dropped and the reading class's own defaults apply; keys the class doesn't know are ignored.
 */
export class ConfigReader {
  private readonly values: ReadonlyMap<string, unknown>;

  constructor(
    private readonly className: string,
    raw: SchedulerConfig,
    overrides: SchedulerConfig = {},
  ) {
    const usedDefaults = new Set<string>();
    const listed = raw._use_default_values;
    if (Array.isArray(listed)) for (const key of listed) if (typeof key === 'string') usedDefaults.add(key);
    const values = new Map<string, unknown>();
    for (const [key, value] of Object.entries(raw)) {
      if (!usedDefaults.has(key) && !key.startsWith('_')) values.set(key, value);
    }
    for (const [key, value] of Object.entries(overrides)) values.set(key, value);
    this.values = values;
  }

  /** A key present in the config (also one the class doesn't take: diffusers keeps those in `.config`). */
  has(key: string): boolean {
    const v = this.values.get(key);
    return v !== undefined && v !== null;
  }

  number(key: string, fallback: number): number {
    const v = this.values.get(key);
    if (v === undefined) return fallback;
    // Python's json writes float('-inf') as -Infinity (e.g. lambda_min_clipped); a loader that
    // pre-quotes it to keep JSON.parse happy hands us the string.
    if (v === '-Infinity') return Number.NEGATIVE_INFINITY;
    if (v === 'Infinity') return Number.POSITIVE_INFINITY;
    if (typeof v !== 'number' || Number.isNaN(v)) throw this.invalid(key, v, 'a number');
    return v;
  }

  nullableNumber(key: string): number | null {
    const v = this.values.get(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || Number.isNaN(v)) throw this.invalid(key, v, 'a number or null');
    return v;
  }

  integer(key: string, fallback: number): number {
    const v = this.number(key, fallback);
    if (!Number.isSafeInteger(v)) throw this.invalid(key, v, 'an integer');
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.values.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw this.invalid(key, v, 'a boolean');
    return v;
  }

  choice<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.values.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw this.invalid(key, v, `one of ${allowed.join(', ')}`);
    }
    return v as T;
  }

  /** `null` and a missing key both mean "not set". */
  nullableChoice<T extends string>(key: string, allowed: readonly T[]): T | null {
    const v = this.values.get(key);
    if (v === undefined || v === null) return null;
    return this.choice(key, allowed, allowed[0]!);
  }

  numberArray(key: string): number[] | null {
    const v = this.values.get(key);
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number'))
      throw this.invalid(key, v, 'a list of numbers');
    return v as number[];
  }

  invalid(key: string, value: unknown, expected: string): InternalError {
    return new InternalError(
      ErrorCode.Config,
      `${this.className}: scheduler config "${key}" must be ${expected}, got ${JSON.stringify(value)}`,
      { context: { scheduler: this.className, key } },
    );
  }

  unsupported(what: string): InternalError {
    return new InternalError(ErrorCode.Config, `${this.className}: ${what} is not supported`, {
      context: { scheduler: this.className },
    });
  }
}
