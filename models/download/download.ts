/**
 * Downloads the ONNX Stable Diffusion (SD 1.x, SD 2.x, SDXL) files of a Hugging Face repo into
 * `{dir}/{owner}--{name}`.
 *
 * - Picks only what the ONNX pipeline needs (model_index.json, scheduler/, tokenizer/, text_encoder/,
 *   unet/, vae_decoder/, SDXL's text_encoder_2/ + tokenizer_2/, and optionally safety_checker/ +
 *   feature_extractor/), including external weight files (model.onnx_data, model.onnx.data, weights.pb).
 *   A repo without the required files fails before any transfer, naming what is missing.
 * - Every file from the commit the revision resolved to; each written to `<file>.part`, resumed with
 *   `Range` after an interruption (also across runs), checked against the hub's size and sha256 (LFS) or
 *   git blob id (regular files), then renamed into place. A bad file is deleted.
 * - `installed.json` (written last) records the repo, commit and verified files; a re-run skips files
 *   that are already complete.
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { SDXL_EXTRA_FILES } from '../family.ts';
import { PIPELINE_FOLDERS, REQUIRED_MODEL_FILES, SAFETY_FOLDERS, SKIPPED_EXTENSIONS } from '../layout.ts';
import { DownloadError } from './errors.ts';
import {
  authHeaders,
  type FetchLike,
  fetchRepoInfo,
  type HubFile,
  hubError,
  isRetryableStatus,
  resolveUrl,
  validateRepoId,
} from './hub.ts';
import { type DownloadProgress, SpeedMeter } from './progress.ts';

export const MANIFEST_FILE = 'installed.json';
/** Present while a download into the folder is unfinished. */
export const DOWNLOAD_STATE_FILE = '.download-state.json';

export { REQUIRED_MODEL_FILES };

export interface DownloadOptions {
  /** Hub repo id, `owner/name`. */
  readonly repo: string;
  /** Branch, tag or commit. @defaultValue 'main' */
  readonly revision?: string | undefined;
  /** Models folder; the model goes to `{dir}/{owner}--{name}`. */
  readonly dir: string;
  /** @defaultValue 'https://huggingface.co' */
  readonly endpoint?: string | undefined;
  /** Hugging Face access token (HF_TOKEN), sent as `Authorization: Bearer`. */
  readonly token?: string | undefined;
  /** @defaultValue globalThis.fetch */
  readonly fetchImpl?: FetchLike | undefined;
  readonly onProgress?: ((progress: DownloadProgress) => void) | undefined;
  /** Also fetch safety_checker/ and feature_extractor/ when the repo has them. @defaultValue true */
  readonly safetyChecker?: boolean | undefined;
  /** Failed attempts in a row (without new bytes) before giving up on a file. @defaultValue 5 */
  readonly retries?: number | undefined;
  /** First retry delay; doubles each time, capped at 30 s. @defaultValue 1000 */
  readonly retryDelayMs?: number | undefined;
  /** Minimum time between progress callbacks (the last one of each file always comes). @defaultValue 100 */
  readonly progressIntervalMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  /** 'sdxl' requires text_encoder_2/ and tokenizer_2/ even if the listing lacks them (catalogue entries). */
  readonly family?: 'sd1' | 'sd2' | 'sdxl' | undefined;
  /** Sees the hub's file list before any transfer; throws to stop (the catalogue's layout check). */
  readonly checkFiles?: ((files: readonly HubFile[]) => void) | undefined;
}

export interface InstalledFile {
  readonly path: string;
  readonly size: number;
  readonly sha256?: string;
  readonly gitBlobId?: string;
}

/** Contents of `installed.json`. */
export interface InstallManifest {
  readonly repo: string;
  readonly revision: string;
  readonly commit: string | null;
  readonly endpoint: string;
  readonly installedAt: string;
  readonly bytes: number;
  readonly files: readonly InstalledFile[];
}

export interface DownloadResult {
  /** Absolute path of the model folder. */
  readonly dir: string;
  readonly manifest: InstallManifest;
  /** Bytes transferred by this call (0 when everything was already there). */
  readonly bytesDownloaded: number;
  /** Files fetched by this call (the rest were already complete). */
  readonly filesDownloaded: readonly string[];
}

/** Folder name of a repo: `owner/name` → `owner--name` (as the hub cache names repos). */
export function modelFolderName(repo: string): string {
  return repo.replace('/', '--');
}

/**
 * Picks the files the ONNX pipeline uses; throws `not-sd-onnx` listing what is missing. A repo with
 * text_encoder_2/ or tokenizer_2/ files (or `family: 'sdxl'`) is SDXL and needs both.
 */
export function selectModelFiles(
  files: readonly HubFile[],
  options: {
    readonly safetyChecker?: boolean | undefined;
    readonly repo?: string;
    readonly revision?: string;
    readonly family?: 'sd1' | 'sd2' | 'sdxl' | undefined;
  } = {},
): HubFile[] {
  const folders: readonly string[] =
    options.safetyChecker === false ? PIPELINE_FOLDERS : [...PIPELINE_FOLDERS, ...SAFETY_FOLDERS];
  const picked = files.filter((f) => {
    if (SKIPPED_EXTENSIONS.some((e) => f.path.endsWith(e))) return false;
    if (f.path === 'model_index.json') return true;
    return folders.some((d) => f.path.startsWith(d));
  });
  const present = new Set(picked.map((f) => f.path));
  const sdxl =
    options.family === 'sdxl' ||
    files.some((f) => f.path.startsWith('text_encoder_2/') || f.path.startsWith('tokenizer_2/'));
  const required: readonly string[] = sdxl
    ? [...REQUIRED_MODEL_FILES, ...SDXL_EXTRA_FILES]
    : REQUIRED_MODEL_FILES;
  const missing = required.filter((f) => !present.has(f));
  if (missing.length > 0) {
    const where = options.repo === undefined ? 'The repo' : `${options.repo}@${options.revision ?? 'main'}`;
    const pytorch = files.some((f) => /^unet\/diffusion_pytorch_model\./.test(f.path));
    const hint = pytorch
      ? ' It holds diffusers PyTorch weights; pick an ONNX export instead (owner/name of an SD ONNX export, or a name from `imagine models list`), or a branch that has one (some repos keep ONNX files on an "onnx" revision).'
      : ' An ONNX SD repo has text_encoder/, unet/ and vae_decoder/ model.onnx files plus tokenizer/ and scheduler/; SDXL also text_encoder_2/ and tokenizer_2/.';
    throw new DownloadError(
      'not-sd-onnx',
      `${where} is not an ONNX Stable Diffusion ${sdxl ? 'XL ' : ''}model: missing ${missing.join(', ')}.${hint}`,
      { context: { missing } },
    );
  }
  return picked;
}

function safeTarget(root: string, path: string): string {
  const target = resolve(root, ...path.split('/'));
  if (!target.startsWith(root + sep)) {
    throw new DownloadError('http', `Refusing to write outside the model folder: ${path}`, {
      context: { path },
    });
  }
  return target;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** sha256 of a file's content, or its git blob id (sha1 of `blob <size>\0` + content). */
export async function hashFile(path: string, kind: 'sha256' | 'git'): Promise<string> {
  const hash = kind === 'sha256' ? createHash('sha256') : createHash('sha1');
  if (kind === 'git') hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function verifyContent(path: string, file: HubFile): Promise<{ ok: boolean; actual?: string }> {
  if (file.sha256 !== undefined) {
    const actual = await hashFile(path, 'sha256');
    return { ok: actual === file.sha256, actual };
  }
  if (file.gitBlobId !== undefined && /^[0-9a-f]{40}$/.test(file.gitBlobId)) {
    const actual = await hashFile(path, 'git');
    return { ok: actual === file.gitBlobId, actual };
  }
  return { ok: true };
}

export async function readManifest(modelDir: string): Promise<InstallManifest | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(modelDir, MANIFEST_FILE), 'utf8')) as InstallManifest;
    return typeof parsed === 'object' && parsed !== null && Array.isArray(parsed.files) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}

function sameFile(a: InstalledFile, b: HubFile): boolean {
  return (
    a.path === b.path &&
    a.size === b.size &&
    (a.sha256 ?? undefined) === b.sha256 &&
    (a.gitBlobId ?? undefined) === b.gitBlobId
  );
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((res, rej) => {
    if (ms <= 0) {
      res();
      return;
    }
    const t = setTimeout(res, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        rej(new DownloadError('aborted', 'Download cancelled.'));
      },
      { once: true },
    );
  });

/** Downloads (or completes, or verifies) an ONNX SD 1.x/2.x/SDXL model from the hub. */
export async function downloadModel(options: DownloadOptions): Promise<DownloadResult> {
  const repo = options.repo;
  validateRepoId(repo);
  const revision = options.revision ?? 'main';
  const endpoint = options.endpoint ?? 'https://huggingface.co';
  const fetchImpl: FetchLike = options.fetchImpl ?? ((input, init) => fetch(input, init));
  const token = options.token === '' ? undefined : options.token;
  const retries = options.retries ?? 5;
  const baseDelay = options.retryDelayMs ?? 1000;
  const interval = options.progressIntervalMs ?? 100;
  const signal = options.signal;
  const ctx = { repo, revision, hasToken: token !== undefined, endpoint };

  const info = await fetchRepoInfo({ repo, revision, endpoint, token, fetchImpl, signal });
  const files = selectModelFiles(info.files, {
    safetyChecker: options.safetyChecker,
    repo,
    revision,
    family: options.family,
  });
  options.checkFiles?.(info.files);
  // Pin every request to one commit so a push during the download cannot mix versions.
  const ref = info.commit ?? revision;
  const root = resolve(options.dir, modelFolderName(repo));
  await mkdir(root, { recursive: true });
  const prior = await readManifest(root);
  await writeJsonAtomic(join(root, DOWNLOAD_STATE_FILE), { repo, revision, commit: info.commit ?? null });

  const sizes = files.map((f) => f.size);
  const total = sizes.every((s) => s !== undefined)
    ? sizes.reduce<number>((a, s) => a + (s ?? 0), 0)
    : undefined;
  const meter = new SpeedMeter();
  let doneBytes = 0; // bytes of files finished (or found complete)
  let received = 0; // bytes transferred by this call
  let lastEmit = Number.NEGATIVE_INFINITY;
  const emit = (file: HubFile, index: number, fileBytes: number, force: boolean, done = false): void => {
    const now = performance.now();
    meter.add(now, received);
    if (options.onProgress === undefined || (!force && now - lastEmit < interval)) return;
    lastEmit = now;
    const bytes = doneBytes + fileBytes;
    const speed = meter.bytesPerSecond();
    options.onProgress({
      file: file.path,
      fileIndex: index + 1,
      fileCount: files.length,
      fileBytes,
      fileTotal: file.size,
      bytes,
      total,
      bytesPerSecond: speed,
      etaSeconds: total !== undefined && speed > 0 ? Math.max(0, total - bytes) / speed : undefined,
      done,
    });
  };

  const fetched: string[] = [];
  for (const [index, file] of files.entries()) {
    if (signal?.aborted === true) throw new DownloadError('aborted', 'Download cancelled.');
    const target = safeTarget(root, file.path);
    await mkdir(dirname(target), { recursive: true });
    const existing = await fileSize(target);
    if (existing !== undefined && (file.size === undefined || existing === file.size)) {
      const recorded = prior?.files.find((f) => f.path === file.path);
      if ((recorded !== undefined && sameFile(recorded, file)) || (await verifyContent(target, file)).ok) {
        doneBytes += existing;
        emit(file, index, 0, true);
        continue;
      }
    }
    await fetchFile(file, index, target);
    doneBytes += file.size ?? (await fileSize(target)) ?? 0;
    fetched.push(file.path);
    emit(file, index, 0, true);
  }

  // Files of an earlier install that this revision no longer has (e.g. renamed external data).
  const keep = new Set(files.map((f) => f.path));
  for (const old of prior?.files ?? []) {
    if (!keep.has(old.path)) await rm(safeTarget(root, old.path), { force: true });
  }
  const manifest: InstallManifest = {
    repo,
    revision,
    commit: info.commit ?? null,
    endpoint,
    installedAt: new Date().toISOString(),
    bytes: doneBytes,
    files: files.map((f) => ({
      path: f.path,
      size: f.size ?? 0,
      ...(f.sha256 === undefined ? {} : { sha256: f.sha256 }),
      ...(f.gitBlobId === undefined ? {} : { gitBlobId: f.gitBlobId }),
    })),
  };
  await writeJsonAtomic(join(root, MANIFEST_FILE), manifest);
  await rm(join(root, DOWNLOAD_STATE_FILE), { force: true });
  const last = files[files.length - 1];
  if (last !== undefined) emit(last, files.length - 1, 0, true, true);
  return { dir: root, manifest, bytesDownloaded: received, filesDownloaded: fetched };

  async function fetchFile(file: HubFile, index: number, target: string): Promise<void> {
    const part = `${target}.part`;
    const url = resolveUrl(endpoint, repo, ref, file.path);
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted === true) throw new DownloadError('aborted', 'Download cancelled.');
      let have = (await fileSize(part)) ?? 0;
      if (file.size !== undefined && have > file.size) {
        await rm(part, { force: true });
        have = 0;
      }
      let progressed = false;
      try {
        if (file.size === undefined || have < file.size) {
          progressed = await transfer(file, index, url, part, have);
        }
        const size = (await fileSize(part)) ?? 0;
        if (file.size !== undefined && size !== file.size) {
          if (size < file.size)
            throw new TransientError(`${file.path}: transfer ended at ${size} of ${file.size} bytes`);
          await rm(part, { force: true });
          throw new DownloadError(
            'size-mismatch',
            `${file.path} is ${size} bytes but the hub lists ${file.size}; the partial file was deleted. Run the download again.`,
            { context: { file: file.path, size, expected: file.size } },
          );
        }
        const check = await verifyContent(part, file);
        if (!check.ok) {
          await rm(part, { force: true });
          throw new DownloadError(
            'hash-mismatch',
            `${file.path} failed verification (expected ${file.sha256 ?? file.gitBlobId}, got ${check.actual}); the file was deleted. Run the download again; if it keeps failing the mirror or repo is inconsistent.`,
            { context: { file: file.path, expected: file.sha256 ?? file.gitBlobId, actual: check.actual } },
          );
        }
        await rename(part, target);
        return;
      } catch (error) {
        if (!(error instanceof TransientError)) throw error;
        failures = progressed || error.progressed ? 1 : failures + 1;
        if (failures > retries || attempt >= 100) {
          throw new DownloadError(
            'network',
            `Downloading ${file.path} failed ${failures} times in a row (${error.message}). The partial file is kept; run the same command again to resume.`,
            { cause: error.cause ?? error, context: { file: file.path } },
          );
        }
        await sleep(Math.min(30_000, baseDelay * 2 ** (failures - 1)), signal);
      }
    }
  }

  /**
   * GET with redirects followed by hand: the token goes only to the hub's own origin, never to the CDN
   * that LFS files redirect to (its signed URL needs none); Range goes everywhere.
   */
  async function fetchFollowing(first: string, have: number): Promise<Response> {
    const hubOrigin = new URL(endpoint).origin;
    let url = first;
    for (let hop = 0; hop <= 10; hop++) {
      const headers = new URL(url).origin === hubOrigin ? authHeaders(token) : authHeaders(undefined);
      if (have > 0) headers.range = `bytes=${have}-`;
      const res = await fetchImpl(url, {
        headers,
        redirect: 'manual',
        ...(signal === undefined ? {} : { signal }),
      });
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || location === null) return res;
      await res.body?.cancel();
      url = new URL(location, url).toString();
    }
    throw new TransientError(`too many redirects for ${first}`);
  }

  /** One HTTP attempt, appending to `part` from byte `have`. Returns whether any bytes arrived. */
  async function transfer(
    file: HubFile,
    index: number,
    url: string,
    part: string,
    have: number,
  ): Promise<boolean> {
    let res: Response;
    try {
      res = await fetchFollowing(url, have);
    } catch (error) {
      if (signal?.aborted === true)
        throw new DownloadError('aborted', 'Download cancelled.', { cause: error });
      throw new TransientError((error as Error).message, error);
    }
    if (res.status === 416 && have > 0) {
      // Our partial file is not a prefix the server can continue: start over.
      await res.body?.cancel();
      await rm(part, { force: true });
      throw new TransientError('range not satisfiable; restarting the file');
    }
    if (!res.ok) {
      await res.body?.cancel();
      if (isRetryableStatus(res.status)) throw new TransientError(`HTTP ${res.status}`);
      throw hubError(res, { ...ctx, file: file.path });
    }
    let offset = have;
    if (res.status === 206) {
      const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
      if (start === undefined || Number(start) !== have) {
        await res.body?.cancel();
        await rm(part, { force: true });
        throw new TransientError('server resumed at the wrong offset; restarting the file');
      }
    } else {
      offset = 0; // a 200 is the whole file: the server ignored Range
    }
    if (res.body === null) return false;
    const reader = res.body.getReader();
    const fh = await open(part, offset === 0 ? 'w' : 'a');
    let got = 0;
    try {
      for (;;) {
        const { done, value: chunk } = await reader.read();
        if (done) break;
        if (signal?.aborted === true) throw new DownloadError('aborted', 'Download cancelled.');
        await fh.write(chunk);
        got += chunk.length;
        received += chunk.length;
        emit(file, index, offset + got, false);
      }
    } catch (error) {
      await reader.cancel().catch(() => undefined);
      if (error instanceof DownloadError) throw error;
      if (signal?.aborted === true)
        throw new DownloadError('aborted', 'Download cancelled.', { cause: error });
      throw new TransientError(`connection lost after ${offset + got} bytes`, error, got > 0);
    } finally {
      await fh.close();
    }
    emit(file, index, offset + got, true);
    return got > 0;
  }
}

/** A failure worth retrying (network drop, 5xx, 429). */
class TransientError extends Error {
  readonly progressed: boolean;
  constructor(message: string, cause?: unknown, progressed = false) {
    super(message, cause === undefined ? undefined : { cause });
    this.progressed = progressed;
  }
}
