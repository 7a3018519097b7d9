/** Lists the models in a models folder: downloaded ones, the demo model, and hand-copied ONNX folders. */

import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readImagineJson, resolveModelDefaults } from '../defaults.ts';
import type { ModelDefaults } from '../engine.ts';
import { type FamilyName, folderKind, SDXL_EXTRA_FILES } from '../family.ts';
import { readOnnxIo } from '../onnx-builder/inspect.ts';
import { ClipTokenizer } from '../tokenizer.ts';
import { DOWNLOAD_STATE_FILE, MANIFEST_FILE, REQUIRED_MODEL_FILES, readManifest } from './download.ts';

export interface InstalledModel {
  /** Hub repo id for downloads, else the folder name (`demo` for the demo model). */
  readonly name: string;
  /** Absolute path of the model folder. */
  readonly dir: string;
  /** `demo` for models built by models/demo (their images are synthetic); else the UNet's float type. */
  readonly kind: 'demo' | 'fp16' | 'fp32';
  readonly dtype: 'float32' | 'float16';
  /** Bytes on disk, all files included. */
  readonly sizeBytes: number;
  readonly hasSafetyChecker: boolean;
  /** All required files present and no unfinished download. */
  readonly complete: boolean;
  /** The demo model's label (demo.json). */
  readonly label?: string;
  readonly repo?: string;
  readonly revision?: string;
  readonly commit?: string | null;
  /** The family its files declare (without opening sessions); absent when they don't say. */
  readonly family?: FamilyName;
  /** The defaults the engine will report for it (ModelInfo.defaults). */
  readonly defaults?: ModelDefaults;
  /** The catalogue entry it was downloaded from (imagine.json `catalog`). */
  readonly catalog?: string;
  /** Why family or defaults could not be read (e.g. a bad imagine.json), in the loader's words. */
  readonly problem?: string;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  try {
    const v = JSON.parse(await readFile(file, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Family, defaults and catalogue name as the loader would find them, from the files alone. */
async function describeFolder(
  dir: string,
): Promise<Pick<InstalledModel, 'family' | 'defaults' | 'catalog' | 'problem'>> {
  try {
    const index = await readJson(join(dir, 'model_index.json'));
    const kind = folderKind(dir, index, await exists(join(dir, 'text_encoder_2', 'model.onnx')));
    let family: FamilyName = 'sdxl';
    if (kind === 'sd') {
      // SD 2.x pads with OpenCLIP's "!", SD 1.x with EOS: the loader's own test.
      const tokenizer = await ClipTokenizer.fromModelDir(dir, 'tokenizer');
      family = tokenizer.padTokenId !== tokenizer.eosTokenId ? 'sd2' : 'sd1';
    }
    const scheduler = await readJson(join(dir, 'scheduler', 'scheduler_config.json'));
    const defaults = await resolveModelDefaults(dir, family, scheduler);
    const catalog = (await readImagineJson(dir))?.catalog;
    return { family, defaults, ...(catalog === undefined ? {} : { catalog }) };
  } catch (error) {
    return { problem: (error as Error).message };
  }
}

/** The defaults the engine will report for a folder, from its files alone; undefined when unreadable. */
export async function folderDefaults(dir: string): Promise<ModelDefaults | undefined> {
  return (await describeFolder(dir)).defaults;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function folderSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) total += await folderSize(p);
    else if (entry.isFile()) total += (await stat(p)).size;
  }
  return total;
}

async function unetDtype(dir: string): Promise<'float32' | 'float16' | undefined> {
  try {
    const io = await readOnnxIo(join(dir, 'unet', 'model.onnx'));
    const sample = io.inputs.find((i) => i.name === 'sample') ?? io.inputs[0];
    if (sample === undefined) return undefined;
    return sample.elemType === 'float16' ? 'float16' : 'float32';
  } catch {
    return undefined;
  }
}

async function readDemoJson(dir: string): Promise<{ label?: unknown; dtype?: unknown } | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, 'demo.json'), 'utf8')) as { demo?: unknown };
    return parsed.demo === true ? (parsed as { label?: unknown; dtype?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** Model folders directly under `modelsDir`, sorted by name. A missing `modelsDir` lists nothing. */
export async function listModels(modelsDir: string): Promise<InstalledModel[]> {
  const root = resolve(modelsDir);
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const out: InstalledModel[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const dir = join(root, entry.name);
    const markers = await Promise.all(
      ['model_index.json', 'demo.json', MANIFEST_FILE, DOWNLOAD_STATE_FILE, 'unet/model.onnx'].map((f) =>
        exists(join(dir, f)),
      ),
    );
    if (!markers.some(Boolean)) continue;
    const demo = await readDemoJson(dir);
    const manifest = await readManifest(dir);
    const described = await describeFolder(dir);
    const needed =
      described.family === 'sdxl' ? [...REQUIRED_MODEL_FILES, ...SDXL_EXTRA_FILES] : REQUIRED_MODEL_FILES;
    const required = await Promise.all(needed.map((f) => exists(join(dir, f))));
    const unfinished = await exists(join(dir, DOWNLOAD_STATE_FILE));
    const dtype =
      demo?.dtype === 'float16' || demo?.dtype === 'float32'
        ? demo.dtype
        : ((await unetDtype(dir)) ?? 'float32');
    out.push({
      name: manifest?.repo ?? entry.name,
      dir,
      kind: demo !== undefined ? 'demo' : dtype === 'float16' ? 'fp16' : 'fp32',
      dtype,
      sizeBytes: await folderSize(dir),
      hasSafetyChecker: await exists(join(dir, 'safety_checker', 'model.onnx')),
      complete: required.every(Boolean) && !unfinished,
      ...described,
      ...(demo !== undefined && typeof demo.label === 'string' ? { label: demo.label } : {}),
      ...(manifest === undefined
        ? {}
        : { repo: manifest.repo, revision: manifest.revision, commit: manifest.commit }),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
