import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG, findCatalogEntry, formatBytes } from '../../models/download/index.ts';
import { imagine } from './cli-run.ts';
import { FakeHub } from './fake-hub.ts';
import { TINY_SD2, TINY_SDXL } from './tiny-sd.ts';

/** `imagine models download NAME` and `imagine models list`, run as the real bin in a child process. */

async function treeFiles(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const abs = path.join(e.parentPath, e.name);
    out.set(path.relative(dir, abs).split(path.sep).join('/'), await readFile(abs));
  }
  return out;
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}

/** `models list` rows by their first column. */
function rows(stdout: string): Map<string, string[]> {
  const lines = stdout.trim().split('\n');
  expect(lines[0]).toBe('NAME\tFAMILY\tTYPE\tSIZE\tDEFAULTS\tFOLDER');
  return new Map(lines.slice(1).map((l) => [l.split('\t')[0]!, l.split('\t')]));
}

const hub = new FakeHub();
let work = '';
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'models-cli-'));
  await hub.start();
  const entry = findCatalogEntry('sdxl-turbo')!;
  const files = await treeFiles(TINY_SDXL);
  files.delete('README.md');
  for (const f of entry.files) if (!files.has(f.path)) files.set(f.path, Buffer.from(`weights of ${f.path}`));
  hub.repos.set(entry.repo, { files, commit: entry.revision });
});
afterAll(async () => {
  await hub.stop();
  await rm(work, { recursive: true, force: true });
});

describe('imagine models download NAME / models list', () => {
  it('downloads a catalogue entry, and lists every folder with family, size and defaults', async () => {
    const models = path.join(work, 'models');
    const dl = await imagine(['models', 'download', 'sdxl-turbo', '--dir', models], {
      HF_ENDPOINT: hub.endpoint,
    });
    expect(dl.code, dl.stderr).toBe(0);
    const dir = path.join(models, 'stabilityai--sdxl-turbo');
    expect(dl.stdout.trim()).toBe(dir);
    expect(dl.stderr).toContain(
      `Defaults (1 step, guidance 0, 512x512, euler_a) written to ${dir}/imagine.json`,
    );
    expect(dl.stderr).toMatch(
      /warning: text_encoder_2\/model\.onnx_data is \d+ bytes; the catalogue recorded 2\.78 GB/,
    );
    expect(JSON.parse(await readFile(path.join(dir, 'imagine.json'), 'utf8'))).toMatchObject({
      catalog: 'sdxl-turbo',
    });

    // Hand-copied folders: SDXL by its scheduler (turbo here, base after the edit), SD 2.x 768 by its UNet config.
    const xl = path.join(models, 'my-sdxl');
    await cp(TINY_SDXL, xl, { recursive: true });
    const sched = path.join(xl, 'scheduler', 'scheduler_config.json');
    const config = JSON.parse(await readFile(sched, 'utf8')) as Record<string, unknown>;
    await writeFile(
      sched,
      JSON.stringify({ ...config, _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'leading' }),
    );
    const sd2 = path.join(models, 'sd21-768');
    await cp(TINY_SD2, sd2, { recursive: true });
    await writeFile(path.join(sd2, 'unet', 'config.json'), JSON.stringify({ sample_size: 96 }));
    const bad = path.join(models, 'bad-defaults');
    await cp(TINY_SD2, bad, { recursive: true });
    await writeFile(path.join(bad, 'imagine.json'), JSON.stringify({ defaults: { step: 4 } }));

    const list = await imagine(['models', 'list', '--dir', models]);
    expect(list.code, list.stderr).toBe(0);
    const r = rows(list.stdout);
    expect(r.get('stabilityai/sdxl-turbo')).toEqual([
      'stabilityai/sdxl-turbo',
      'sdxl',
      'fp32',
      formatBytes(await folderBytes(dir)),
      '1 step, guidance 0, 512x512, euler_a',
      `${dir}  [catalogue: sdxl-turbo]`,
    ]);
    expect(r.get('my-sdxl')).toEqual([
      'my-sdxl',
      'sdxl',
      'fp32',
      formatBytes(await folderBytes(xl)),
      '30 steps, guidance 5, 1024x1024, euler',
      xl,
    ]);
    expect(r.get('sd21-768')?.slice(1, 5)).toEqual([
      'sd2',
      'fp32',
      formatBytes(await folderBytes(sd2)),
      '25 steps, guidance 7.5, 768x768, ddim',
    ]);
    // A folder whose imagine.json is wrong is still listed, and the reason is told.
    expect(r.get('bad-defaults')?.slice(1, 5)).toEqual([
      '?',
      'fp32',
      formatBytes(await folderBytes(bad)),
      '?',
    ]);
    expect(list.stderr).toContain('warning: bad-defaults: ');
    expect(list.stderr).toContain('unknown key "defaults.step"');

    // The catalogue entries not downloaded yet, marked as such; the downloaded one is not repeated.
    expect(r.has('sdxl-turbo')).toBe(false);
    for (const e of CATALOG.filter((x) => x.name !== 'sdxl-turbo')) {
      const row = r.get(e.name);
      expect(row?.slice(1, 4), e.name).toEqual([e.family, '-', 'not downloaded']);
      expect(row?.[5]).toContain(`imagine models download ${e.name}  (${e.repo}`);
    }
    expect(r.get('sd-turbo')?.[4]).toBe('1 step, guidance 0, 512x512, euler_a');
  });

  it('an empty models folder lists the catalogue and says how to download', async () => {
    const list = await imagine(['models', 'list', '--dir', path.join(work, 'none')]);
    expect(list.code, list.stderr).toBe(0);
    expect([...rows(list.stdout).keys()]).toEqual(CATALOG.map((e) => e.name));
    expect(list.stderr).toContain('imagine models download NAME');
  });

  it('refuses an unknown name and a --revision on a pinned entry', async () => {
    const unknown = await imagine(['models', 'download', 'sdxl-turbbo', '--dir', path.join(work, 'x')]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      '"sdxl-turbbo" is neither a catalogue entry (sd15, sd-turbo, sdxl, sdxl-turbo',
    );
    expect(unknown.stderr).toContain('[E_DOWNLOAD]');
    const pinned = await imagine(['models', 'download', 'sdxl-turbo', '--revision', 'main']);
    expect(pinned.code).toBe(2);
    expect(pinned.stderr).toContain('--revision is for repo ids; the catalogue entry "sdxl-turbo" is pinned');
  });
});
