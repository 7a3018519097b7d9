import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoModel, ensureDemoModel } from '../../models/demo/index.ts';
import {
  DownloadError,
  type DownloadProgress,
  downloadModel,
  formatBytes,
  formatDuration,
  formatProgressBar,
  listModels,
} from '../../models/download/index.ts';

import { COMMIT, FakeHub, sha256, TOKEN } from './fake-hub.ts';

async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const abs = join(e.parentPath, e.name);
    out.set(relative(dir, abs).split('\\').join('/'), await readFile(abs));
  }
  return out;
}

let base = '';
let modelFiles = new Map<string, Buffer>();
const hub = new FakeHub();

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'download-'));
  const built = await buildDemoModel(join(base, 'src'));
  modelFiles = await readTree(built.dir);
  modelFiles.delete('demo.json'); // a hub repo has no demo marker
  modelFiles.set('README.md', Buffer.from('# tiny\n'));
  modelFiles.set('unet/diffusion_pytorch_model.safetensors', Buffer.from('pytorch weights, skipped'));
  const fp16 = await readTree((await buildDemoModel(join(base, 'src16'), { fp16: true })).dir);
  fp16.delete('demo.json');
  const withSafety = new Map(modelFiles);
  withSafety.set('safety_checker/model.onnx', modelFiles.get('text_encoder/model.onnx')!);
  withSafety.set('feature_extractor/preprocessor_config.json', Buffer.from('{"crop_size": 224}'));
  hub.repos.set('tiny/sd-onnx', { files: modelFiles });
  hub.repos.set('tiny/sd-onnx-fp16', { files: fp16 });
  hub.repos.set('tiny/with-safety', { files: withSafety });
  hub.repos.set('tiny/private', { files: modelFiles, private: true });
  hub.repos.set('tiny/bad-hash', { files: modelFiles, badHash: new Set(['unet/model.onnx']) });
  hub.repos.set('tiny/flaky', {
    files: modelFiles,
    cut: new Map([['unet/model.onnx', { cutAt: 100_000, times: 1 }]]),
  });
  hub.repos.set('tiny/dead', {
    files: modelFiles,
    cut: new Map([['unet/model.onnx', { cutAt: 0, times: 1000 }]]),
  });
  hub.repos.set('tiny/pytorch', {
    files: new Map([
      ['model_index.json', Buffer.from('{}')],
      ['unet/diffusion_pytorch_model.safetensors', Buffer.from('x')],
      ['tokenizer/vocab.json', Buffer.from('{}')],
    ]),
  });
  await hub.start();
});

afterAll(async () => {
  await hub.stop();
  await rm(base, { recursive: true, force: true });
});

const opts = (repo: string, dir: string) => ({ repo, dir, endpoint: hub.endpoint, retryDelayMs: 5 });

async function expectDownloadError(p: Promise<unknown>, reason: string): Promise<DownloadError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DownloadError);
  expect((error as DownloadError).reason).toBe(reason);
  expect((error as DownloadError).code).toBe('E_DOWNLOAD');
  return error as DownloadError;
}

const PIPELINE_FILES = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'text_encoder/model.onnx',
  'tokenizer/merges.txt',
  'tokenizer/special_tokens_map.json',
  'tokenizer/tokenizer_config.json',
  'tokenizer/vocab.json',
  'unet/model.onnx',
  'vae_decoder/config.json',
  'vae_decoder/model.onnx',
  'vae_encoder/model.onnx',
];

describe('downloadModel against a local hub', () => {
  it('downloads the pipeline files from the resolved commit, verifies them, and writes installed.json', async () => {
    const dir = join(base, 'models-a');
    const progress: DownloadProgress[] = [];
    hub.log.length = 0;
    const result = await downloadModel({ ...opts('tiny/sd-onnx', dir), onProgress: (p) => progress.push(p) });
    expect(result.dir).toBe(join(dir, 'tiny--sd-onnx'));
    const got = await readTree(result.dir);
    expect([...got.keys()].sort()).toEqual([...PIPELINE_FILES, 'installed.json'].sort());
    for (const f of PIPELINE_FILES) expect(got.get(f)!.equals(modelFiles.get(f)!), f).toBe(true);
    // Every file request is pinned to the commit the revision resolved to.
    const fileRequests = hub.log.filter((l) => l.url.includes('/resolve/'));
    expect(fileRequests).toHaveLength(PIPELINE_FILES.length);
    for (const r of fileRequests) expect(r.url).toContain(`/resolve/${COMMIT}/`);

    const manifest = JSON.parse(got.get('installed.json')!.toString());
    expect(manifest).toMatchObject({ repo: 'tiny/sd-onnx', revision: 'main', commit: COMMIT });
    expect(manifest.files.map((f: { path: string }) => f.path).sort()).toEqual(PIPELINE_FILES);
    const total = PIPELINE_FILES.reduce((a, f) => a + modelFiles.get(f)!.length, 0);
    expect(result.bytesDownloaded).toBe(total);

    const last = progress[progress.length - 1]!;
    expect(last).toMatchObject({ done: true, bytes: total, total, fileCount: PIPELINE_FILES.length });
    for (let i = 1; i < progress.length; i++)
      expect(progress[i]!.bytes).toBeGreaterThanOrEqual(progress[i - 1]!.bytes);

    const s = await ort.InferenceSession.create(join(result.dir, 'unet/model.onnx'));
    expect(s.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
    await s.release();

    // A second run finds everything complete and transfers nothing.
    const again = await downloadModel(opts('tiny/sd-onnx', dir));
    expect(again.bytesDownloaded).toBe(0);
    expect(again.filesDownloaded).toEqual([]);
  });

  it('resumes an interrupted transfer with Range and verifies the sha256', async () => {
    const dir = join(base, 'models-flaky');
    hub.log.length = 0;
    const result = await downloadModel(opts('tiny/flaky', dir));
    const unet = hub.log.filter((l) => l.url.startsWith('/cdn/') && l.url.endsWith('/unet/model.onnx'));
    expect(unet).toHaveLength(2);
    expect(unet[0]!.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(unet[1]!.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    const file = await readFile(join(result.dir, 'unet/model.onnx'));
    expect(sha256(file)).toBe(sha256(modelFiles.get('unet/model.onnx')!));
    await expect(stat(join(result.dir, 'unet/model.onnx.part'))).rejects.toThrow();
  });

  it('continues a .part file left by an earlier run', async () => {
    const dir = join(base, 'models-part');
    const target = join(dir, 'tiny--sd-onnx', 'unet', 'model.onnx.part');
    const full = modelFiles.get('unet/model.onnx')!;
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, full.subarray(0, 12345));
    hub.log.length = 0;
    const result = await downloadModel(opts('tiny/sd-onnx', dir));
    const unet = hub.log.filter((l) => l.url.startsWith('/cdn/') && l.url.endsWith('/unet/model.onnx'));
    expect(unet.map((l) => l.range)).toEqual(['bytes=12345-']);
    expect((await readFile(join(result.dir, 'unet/model.onnx'))).equals(full)).toBe(true);
    const total = PIPELINE_FILES.reduce((a, f) => a + modelFiles.get(f)!.length, 0);
    expect(result.bytesDownloaded).toBe(total - 12345);
  });

  it('gives up after a bounded number of failed attempts, keeping the partial file', async () => {
    const dir = join(base, 'models-dead');
    hub.log.length = 0;
    const error = await expectDownloadError(
      downloadModel({ ...opts('tiny/dead', dir), retries: 3 }),
      'network',
    );
    expect(error.message).toMatch(/unet\/model\.onnx.*run the same command again to resume/s);
    const attempts = hub.log.filter((l) => l.url.startsWith('/cdn/') && l.url.endsWith('/unet/model.onnx'));
    expect(attempts).toHaveLength(4);
    const listed = await listModels(dir);
    expect(listed.map((m) => [m.name, m.complete])).toEqual([['tiny--dead', false]]);
  });

  it('404: unknown repo or revision', async () => {
    const dir = join(base, 'models-404');
    const repoError = await expectDownloadError(downloadModel(opts('tiny/nope', dir)), 'not-found');
    expect(repoError.status).toBe(404);
    expect(repoError.message).toContain('tiny/nope');
    const revError = await expectDownloadError(
      downloadModel({ ...opts('tiny/sd-onnx', dir), revision: 'v9' }),
      'not-found',
    );
    expect(revError.message).toContain('Revision "v9" not found');
  });

  it('401: private repo without a token names HF_TOKEN; with the token it downloads', async () => {
    const dir = join(base, 'models-401');
    const error = await expectDownloadError(downloadModel(opts('tiny/private', dir)), 'unauthorized');
    expect(error.status).toBe(401);
    expect(error.message).toContain('HF_TOKEN');
    hub.log.length = 0;
    const result = await downloadModel({ ...opts('tiny/private', dir), token: TOKEN });
    expect(
      (await readFile(join(result.dir, 'unet/model.onnx'))).equals(modelFiles.get('unet/model.onnx')!),
    ).toBe(true);
    // The token goes to the hub, never to the CDN origin that LFS files redirect to.
    const toHub = hub.log.filter((l) => !l.url.startsWith('/cdn/'));
    const toCdn = hub.log.filter((l) => l.url.startsWith('/cdn/'));
    expect(toCdn.length).toBeGreaterThan(0);
    expect(toHub.every((l) => l.auth === `Bearer ${TOKEN}`)).toBe(true);
    expect(toCdn.every((l) => l.auth === undefined)).toBe(true);
  });

  it('hash mismatch: fails and deletes the bad file', async () => {
    const dir = join(base, 'models-hash');
    const error = await expectDownloadError(downloadModel(opts('tiny/bad-hash', dir)), 'hash-mismatch');
    expect(error.message).toContain('unet/model.onnx');
    const folder = join(dir, 'tiny--bad-hash', 'unet');
    expect(await readdir(folder)).toEqual([]);
  });

  it('not an ONNX SD repo: lists what is missing before downloading anything', async () => {
    const dir = join(base, 'models-pt');
    hub.log.length = 0;
    const error = await expectDownloadError(downloadModel(opts('tiny/pytorch', dir)), 'not-sd-onnx');
    expect(error.message).toContain('text_encoder/model.onnx');
    expect(error.message).toContain('unet/model.onnx');
    expect(error.message).toMatch(/PyTorch/);
    expect(hub.log.filter((l) => !l.url.startsWith('/api/'))).toEqual([]);
  });

  it('rejects malformed repo ids', async () => {
    await expectDownloadError(downloadModel(opts('../etc', base)), 'invalid-repo');
    await expectDownloadError(downloadModel(opts('just-a-name', base)), 'invalid-repo');
  });
});

describe('listModels', () => {
  it('lists downloaded, fp16, safety-checker and demo models with kind and size', async () => {
    const dir = join(base, 'models-list');
    await downloadModel(opts('tiny/sd-onnx', dir));
    await downloadModel(opts('tiny/sd-onnx-fp16', dir));
    await downloadModel(opts('tiny/with-safety', dir));
    await ensureDemoModel(join(dir, 'demo'));
    const list = await listModels(dir);
    expect(list.map((m) => [m.name, m.kind, m.dtype, m.hasSafetyChecker, m.complete])).toEqual([
      ['demo', 'demo', 'float32', false, true],
      ['tiny/sd-onnx', 'fp32', 'float32', false, true],
      ['tiny/sd-onnx-fp16', 'fp16', 'float16', false, true],
      ['tiny/with-safety', 'fp32', 'float32', true, true],
    ]);
    const safety = list.find((m) => m.name === 'tiny/with-safety')!;
    expect(safety.dir).toBe(join(dir, 'tiny--with-safety'));
    expect(await readdir(join(safety.dir, 'feature_extractor'))).toEqual(['preprocessor_config.json']);
    const onDisk = [...(await readTree(safety.dir)).values()].reduce((a, b) => a + b.length, 0);
    expect(safety.sizeBytes).toBe(onDisk);
    expect(safety).toMatchObject({ repo: 'tiny/with-safety', revision: 'main', commit: COMMIT });
    expect(list[0]!.label).toMatch(/demo/i);
    expect(await listModels(join(base, 'does-not-exist'))).toEqual([]);
  });

  it('skips the safety checker when asked', async () => {
    const dir = join(base, 'models-nosafety');
    const r = await downloadModel({ ...opts('tiny/with-safety', dir), safetyChecker: false });
    await expect(stat(join(r.dir, 'safety_checker'))).rejects.toThrow();
  });
});

describe('progress formatting', () => {
  const p: DownloadProgress = {
    file: 'unet/model.onnx_data',
    fileIndex: 3,
    fileCount: 9,
    fileBytes: 500_000_000,
    fileTotal: 1_700_000_000,
    bytes: 1_020_000_000,
    total: 2_680_000_000,
    bytesPerSecond: 41_300_000,
    etaSeconds: 40.2,
    done: false,
  };

  it('draws a bar with percentage, sizes, speed, ETA and the current file', () => {
    const line = formatProgressBar(p);
    expect(line.trimEnd()).toBe(
      '[#########---------------]  38% 1.02 GB/2.68 GB 41.3 MB/s ETA 40s (3/9 unet/model.onnx_data)',
    );
    expect(formatProgressBar({ ...p, bytes: p.total!, done: true }).trimEnd()).toBe(
      '[########################] 100% 2.68 GB/2.68 GB done (3/9 unet/model.onnx_data)',
    );
    expect(formatProgressBar({ ...p, total: undefined, etaSeconds: undefined }).trimEnd()).toContain(
      '?% 1.02 GB',
    );
    expect(formatProgressBar(p, { columns: 60 })).toHaveLength(59);
    expect(formatProgressBar(p, { columns: 200 })).toHaveLength(199);
  });

  it('formats sizes and durations', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1234)).toBe('1.23 kB');
    expect(formatBytes(3_400_000_000)).toBe('3.40 GB');
    expect(formatDuration(7)).toBe('7s');
    expect(formatDuration(65)).toBe('1m05s');
    expect(formatDuration(3725)).toBe('1h02m05s');
  });
});
