import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { expect, it } from 'vitest';

const repoRoot = resolve(import.meta.dirname, '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return /\.(ts|md)$/u.test(entry.name) ? [path] : [];
  });
}

// A reader can't follow a citation of a document that isn't in the repository; comments name the
// recipe itself (diffusers' deterministic batch generation) instead.
it('no source or doc cites the "seed document", which is not in the repository', () => {
  const citing = ['core', 'models', 'queue', 'bots', 'test']
    .flatMap((layer) => sourceFiles(join(repoRoot, layer)))
    .filter((path) => path !== import.meta.filename)
    .filter((path) => /seed[- ]doc/iu.test(readFileSync(path, 'utf8')))
    .map((path) => relative(repoRoot, path));
  expect(citing).toEqual([]);
});
