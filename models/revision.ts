import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

/** Files that hold weights: what a loaded model keeps in memory. */
const WEIGHT_FILE = /\.(onnx|onnx_data|pb|data|bin)$/u;

export interface ModelFolderFacts {
  /**
   * 12 hex digits of SHA-256 over `model_index.json` and every file's path and size. Cheap (no weights
   * are read) and stable across copies (mtimes are left out); replacing the model's files with other
   * ones changes it, as any re-export or other checkpoint changes some file's size or the index.
   */
  readonly revision: string;
  /** Bytes of weight files (`.onnx`, external data), the estimate of the memory the model takes loaded. */
  readonly weightBytes: number;
}

/** What a model folder is, for routing and the memory budget: its revision and its weights' size. */
export async function modelFolderFacts(dir: string): Promise<ModelFolderFacts> {
  const hash = createHash('sha256');
  hash.update(await readFile(join(dir, 'model_index.json')).catch(() => Buffer.alloc(0)));
  let weightBytes = 0;
  const files = (await listFiles(dir)).sort();
  for (const file of files) {
    const size = (await stat(file)).size;
    hash.update(`\n${relative(dir, file)}\t${size}`);
    if (WEIGHT_FILE.test(file)) weightBytes += size;
  }
  return { revision: hash.digest('hex').slice(0, 12), weightBytes };
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return listFiles(path);
      return entry.isFile() ? [path] : [];
    }),
  );
  return nested.flat();
}
