import { cp, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CATALOG,
  type CatalogEntry,
  DownloadError,
  downloadCatalogEntry,
  downloadModel,
  findCatalogEntry,
  sizeMatches,
} from '../../models/download/index.ts';
import { loadModel } from '../../models/loader.ts';
import { COMMIT, FakeHub, type RepoSpec } from './fake-hub.ts';
import { TINY_SD, TINY_SD2, TINY_SDXL } from './tiny-sd.ts';

/**
 * `imagine models download NAME`: each catalogue entry's published layout, served by a local stand-in
 * for the hub with the tiny fixtures as payload, downloads into a folder the loader opens with the
 * entry's defaults.
 */

async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    out.set(
      relative(dir, join(e.parentPath, e.name)).split('\\').join('/'),
      await readFile(join(e.parentPath, e.name)),
    );
  }
  return out;
}

const FIXTURE = { sd1: TINY_SD, sd2: TINY_SD2, sdxl: TINY_SDXL } as const;
/** What such repos hold beside the ONNX layout; the downloader must leave them. */
const EXTRAS = [
  'README.md',
  'unet/diffusion_pytorch_model.safetensors',
  'unet/openvino_model.xml',
  'text_encoder/model.fp16.safetensors',
  'vae/config.json',
];

/** The entry's layout with the tiny fixture of its family as payload (external weights: filler). */
async function repoOf(entry: CatalogEntry): Promise<RepoSpec> {
  const files = await readTree(FIXTURE[entry.family]);
  files.delete('README.md');
  for (const f of entry.files) {
    if (!files.has(f.path)) files.set(f.path, Buffer.from(`external weights standing in for ${f.path}\n`));
  }
  for (const extra of EXTRAS) files.set(extra, Buffer.from(`not for this engine: ${extra}\n`));
  return { files, ...(/^[0-9a-f]{40}$/.test(entry.revision) ? { commit: entry.revision } : {}) };
}

const hub = new FakeHub();
let work = '';
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'catalog-'));
  await hub.start();
  for (const entry of CATALOG) hub.repos.set(entry.repo, await repoOf(entry));
});
afterAll(async () => {
  await hub.stop();
  await rm(work, { recursive: true, force: true });
});

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe('the catalogue', () => {
  it('has the entries the issue names, each with its family defaults and a recorded check', () => {
    expect(CATALOG.map((e) => e.name)).toEqual(['sd15', 'sd-turbo', 'sdxl', 'sdxl-turbo', 'sdxl-turbo-ort']);
    for (const e of CATALOG) {
      expect(e.checked.length).toBeGreaterThan(40);
      expect(e.revision === 'main' || /^[0-9a-f]{40}$/.test(e.revision)).toBe(true);
      if (e.family === 'sdxl') {
        for (const f of ['text_encoder_2/model.onnx', 'tokenizer_2/vocab.json', 'tokenizer_2/merges.txt']) {
          expect(e.files.map((x) => x.path)).toContain(f);
        }
      }
    }
    expect(findCatalogEntry('sdxl-turbo')?.defaults).toEqual({
      steps: 1,
      guidance: 0,
      width: 512,
      height: 512,
      scheduler: 'euler_a',
    });
    expect(findCatalogEntry('sdxl')?.defaults).toMatchObject({ width: 1024, height: 1024, steps: 30 });
  });

  it('reads sizes at the hub listing’s three significant digits', () => {
    expect(sizeMatches(2_781_234_567, '2.78 GB')).toBe(true);
    expect(sizeMatches(2_800_000_000, '2.78 GB')).toBe(false);
    expect(sizeMatches(198_400_000, '198 MB')).toBe(true);
    expect(sizeMatches(607, '607 B')).toBe(true);
    expect(sizeMatches(608, '607 B')).toBe(false);
  });
});

describe('downloadCatalogEntry', () => {
  for (const entry of CATALOG) {
    it(`${entry.name}: fetches ${entry.repo}@${entry.revision.slice(0, 7)} and writes imagine.json; the loader takes it`, async () => {
      const dir = join(work, `dl-${entry.name}`);
      const warnings: string[] = [];
      const result = await downloadCatalogEntry(entry, {
        dir,
        endpoint: hub.endpoint,
        retryDelayMs: 5,
        warn: (m) => warnings.push(m),
      });
      const commit = entry.revision === 'main' ? COMMIT : entry.revision;
      expect(result.manifest.commit).toBe(commit);
      const got = await readTree(result.dir);
      for (const f of entry.files) expect(got.has(f.path), f.path).toBe(true);
      for (const extra of EXTRAS) expect(got.has(extra), extra).toBe(false);
      // The VAE encoder comes along where the repo has one, for image-to-image.
      if (entry.family !== 'sd2') expect(got.has('vae_encoder/model.onnx')).toBe(true);
      if (entry.family === 'sdxl') {
        expect(
          got
            .get('tokenizer_2/vocab.json')
            ?.equals(await readFile(join(TINY_SDXL, 'tokenizer_2/vocab.json'))),
        ).toBe(true);
      }
      // Every file came from the pinned commit.
      const resolves = hub.log.filter((l) => l.url.startsWith(`/${entry.repo}/resolve/`));
      expect(resolves.length).toBeGreaterThan(0);
      for (const l of resolves) expect(l.url).toContain(`/resolve/${commit}/`);
      // The tiny payload is not the size the listing showed: reported, not fatal.
      const shown = entry.files.filter((f) => f.shown !== undefined);
      expect(warnings).toHaveLength(shown.length);
      for (const f of shown) expect(warnings.join('\n')).toContain(`${f.path} is `);

      expect(JSON.parse(await readFile(join(result.dir, 'imagine.json'), 'utf8'))).toEqual({
        defaults: entry.defaults,
        catalog: entry.name,
      });
      const model = await loadModel(result.dir);
      try {
        expect(model.family).toBe(entry.family);
        expect(model.defaults).toMatchObject({ ...entry.defaults, source: 'imagine.json' });
      } finally {
        await model.close();
      }
    });
  }

  it('resumes an interrupted SDXL download where it stopped', async () => {
    const entry = findCatalogEntry('sdxl-turbo')!;
    const spec = await repoOf(entry);
    const big = spec.files.get('text_encoder_2/model.onnx')!;
    const cutAt = Math.floor(big.length / 2);
    spec.cut = new Map([['text_encoder_2/model.onnx', { cutAt, times: 1 }]]);
    hub.repos.set(entry.repo, spec);
    const dir = join(work, 'resume');
    const start = hub.log.length;
    try {
      const first = await downloadCatalogEntry(entry, { dir, endpoint: hub.endpoint, retries: 0 }).catch(
        (e: unknown) => e,
      );
      expect(first).toBeInstanceOf(DownloadError);
      expect((first as DownloadError).reason).toBe('network');
      const part = join(dir, 'stabilityai--sdxl-turbo', 'text_encoder_2', 'model.onnx.part');
      // Bytes in flight when the connection broke may not have reached the file; what counts is
      // that the next run asks for exactly what the part file lacks.
      const kept = (await stat(part)).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThanOrEqual(cutAt);
      expect(await exists(join(dir, 'stabilityai--sdxl-turbo', 'imagine.json'))).toBe(false);
      const before = hub.log.length;
      const second = await downloadCatalogEntry(entry, { dir, endpoint: hub.endpoint, retries: 0 });
      const ranges = hub.log.slice(before).filter((l) => l.url.endsWith('text_encoder_2/model.onnx'));
      expect(ranges.map((l) => l.range)).toContain(`bytes=${kept}-`);
      expect((await readFile(join(second.dir, 'text_encoder_2', 'model.onnx'))).equals(big)).toBe(true);
      // Files finished before the cut are not fetched again.
      expect(second.filesDownloaded[0]).toBe('text_encoder_2/model.onnx');
      const firstRun = hub.log.slice(start, before).filter((l) => l.url.includes('/resolve/'));
      for (const l of firstRun.filter((x) => !x.url.endsWith('text_encoder_2/model.onnx'))) {
        expect(second.filesDownloaded.map((f) => `/${f}`).some((f) => l.url.endsWith(f))).toBe(false);
      }
      expect(await exists(join(second.dir, 'imagine.json'))).toBe(true);
    } finally {
      hub.repos.set(entry.repo, await repoOf(entry));
    }
  });

  it('refuses, before any transfer, a repo whose layout no longer matches the entry', async () => {
    const entry = findCatalogEntry('sdxl')!;
    const spec = await repoOf(entry);
    spec.files.delete('unet/model.onnx_data');
    hub.repos.set(entry.repo, spec);
    const dir = join(work, 'mismatch');
    try {
      const error = await downloadCatalogEntry(entry, { dir, endpoint: hub.endpoint }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DownloadError);
      expect((error as DownloadError).reason).toBe('catalog-mismatch');
      expect((error as DownloadError).message).toContain('missing unet/model.onnx_data');
      expect(await exists(dir)).toBe(false);
    } finally {
      hub.repos.set(entry.repo, await repoOf(entry));
    }
  });

  it('an SDXL repo (by its text_encoder_2/) without tokenizer_2/ is refused by name', async () => {
    const files = await readTree(TINY_SDXL);
    files.delete('tokenizer_2/vocab.json');
    files.delete('tokenizer_2/merges.txt');
    hub.repos.set('tiny/sdxl-no-tok2', { files });
    const error = await downloadModel({
      repo: 'tiny/sdxl-no-tok2',
      dir: join(work, 'no-tok2'),
      endpoint: hub.endpoint,
    }).catch((e: unknown) => e);
    expect((error as DownloadError).reason).toBe('not-sd-onnx');
    expect((error as DownloadError).message).toContain(
      'not an ONNX Stable Diffusion XL model: missing tokenizer_2/vocab.json, tokenizer_2/merges.txt',
    );
  });

  it('a plain SDXL repo id downloads with text_encoder_2/ and tokenizer_2/ and no imagine.json', async () => {
    const files = await readTree(TINY_SDXL);
    hub.repos.set('tiny/sdxl', { files });
    const result = await downloadModel({
      repo: 'tiny/sdxl',
      dir: join(work, 'plain'),
      endpoint: hub.endpoint,
    });
    const got = await readTree(result.dir);
    expect(
      [...got.keys()].filter((p) => p.startsWith('text_encoder_2/') || p.startsWith('tokenizer_2/')).sort(),
    ).toEqual(
      [...files.keys()].filter((p) => p.startsWith('text_encoder_2/') || p.startsWith('tokenizer_2/')).sort(),
    );
    expect(got.has('imagine.json')).toBe(false);
    const copy = join(work, 'plain-copy');
    await cp(result.dir, copy, { recursive: true });
    const model = await loadModel(copy);
    try {
      expect(model.defaults.source).toBe('family');
    } finally {
      await model.close();
    }
  });
});
