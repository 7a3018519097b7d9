/**
 * `ensureDemoModel`: returns a complete, current demo model folder, building it when missing or stale.
 * The build goes to a temporary sibling folder that is renamed into place, so readers never see a half-
 * written model and concurrent callers (several workers starting at once) are safe.
 */

import { randomBytes } from 'node:crypto';
import { access, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCode, InternalError } from '../../core/errors.ts';
import { REQUIRED_MODEL_FILES } from '../layout.ts';
import { buildDemoModel, DEMO_MARKER_FILE, DEMO_MODEL_VERSION, type DemoMarker } from './build.ts';
import { type BuildDemoOptions, resolveDemoOptions } from './options.ts';

/** A demo folder also has these, which real exports may lack. */
const REQUIRED_FILES = [...REQUIRED_MODEL_FILES, 'model_index.json', 'vae_decoder/config.json'] as const;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** JSON with object keys sorted, so option order never makes a model look stale. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** The folder's demo marker, or undefined when there is none or it is unreadable. */
export async function readDemoMarker(dir: string): Promise<DemoMarker | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(join(dir, DEMO_MARKER_FILE), 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && (parsed as { demo?: unknown }).demo === true) {
      return parsed as DemoMarker;
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** True when `dir` holds a complete demo model of the current version built with these options. */
export async function isDemoModelCurrent(dir: string, options: BuildDemoOptions = {}): Promise<boolean> {
  const marker = await readDemoMarker(dir);
  if (marker === undefined || marker.version !== DEMO_MODEL_VERSION) return false;
  if (canonicalJson(marker.options) !== canonicalJson(resolveDemoOptions(options))) return false;
  for (const f of [...REQUIRED_FILES, ...(marker.files ?? [])])
    if (!(await exists(join(dir, f)))) return false;
  return true;
}

/**
 * Makes sure `dir` holds the demo model for `options` (default: the tiny demo) and returns its absolute
 * path. Builds it when missing, incomplete, from an older DEMO_MODEL_VERSION, or from other options.
 */
export async function ensureDemoModel(dir: string, options: BuildDemoOptions = {}): Promise<string> {
  const target = resolve(dir);
  if (await isDemoModelCurrent(target, options)) return target;

  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const staging = join(dirname(target), `.${basename(target)}.building-${tag}`);
  const retired = join(dirname(target), `.${basename(target)}.old-${tag}`);
  try {
    await buildDemoModel(staging, options);
    if (await exists(target)) {
      // Another process may have finished first; keep its (identical) build.
      if (await isDemoModelCurrent(target, options)) return target;
      // Builds land by rename, so a folder without a marker was not made here: never delete it.
      if ((await readDemoMarker(target)) === undefined && (await readdir(target)).length > 0) {
        throw new InternalError(
          ErrorCode.Config,
          `${target} exists and is not a demo model folder; refusing to replace it. Point the demo model elsewhere or empty that folder.`,
          { context: { dir: target } },
        );
      }
      try {
        await rename(target, retired);
      } catch (error) {
        // A concurrent caller moved the stale folder first.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    try {
      await rename(staging, target);
    } catch (error) {
      // Lost a race with a concurrent build: fine if the winner's model is current.
      if (await isDemoModelCurrent(target, options)) return target;
      throw error;
    }
    return target;
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(retired, { recursive: true, force: true });
  }
}
