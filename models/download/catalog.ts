/**
 * A short catalogue of public ONNX repositories known to fit this engine's layout, for
 * `imagine models download NAME`. What each entry records was checked against the repository's
 * published file listing (Hugging Face tree pages, read through a search index: this machine cannot
 * reach the hub); `seen: false` marks a file the layout needs whose own listing line was not seen. The
 * download itself trusts only the hub: sizes and sha256 come from its API at download time, and the
 * listing is checked against the entry before any byte moves.
 */

import type { SamplerName } from '../../core/samplers.ts';
import { IMAGINE_JSON, writeImagineJson } from '../defaults.ts';
import type { FamilyName } from '../family.ts';
import { type DownloadOptions, type DownloadResult, downloadModel } from './download.ts';
import { DownloadError } from './errors.ts';
import type { HubFile } from './hub.ts';

export interface CatalogFile {
  readonly path: string;
  /** Size as the hub's tree page showed it (3 significant digits, SI units), when seen. */
  readonly shown?: string;
  /** False: the folder was seen in the listing, this file's own line was not. */
  readonly seen: boolean;
}

export interface CatalogEntry {
  /** What to type: `imagine models download NAME`. */
  readonly name: string;
  readonly title: string;
  readonly repo: string;
  /** A full commit id where one was seen holding the files, else the branch. */
  readonly revision: string;
  readonly family: FamilyName;
  /** Written to the folder's imagine.json by `models download`. */
  readonly defaults: {
    readonly steps: number;
    readonly guidance: number;
    readonly width: number;
    readonly height: number;
    readonly scheduler: SamplerName;
  };
  /** The files the layout needs, as published. */
  readonly files: readonly CatalogFile[];
  /** Approximate download, as the listing showed the files that were seen. */
  readonly approxDownload: string;
  /** What was checked, and how; and what was not. */
  readonly checked: string;
}

const TOKENIZER = (dir: string): CatalogFile[] => [
  { path: `${dir}/vocab.json`, seen: false },
  { path: `${dir}/merges.txt`, seen: false },
];

export const CATALOG: readonly CatalogEntry[] = [
  {
    name: 'sd15',
    title: 'Stable Diffusion 1.5 (fp32, diffusers ONNX exporter layout)',
    repo: 'onnx-community/stable-diffusion-v1-5-ONNX',
    revision: 'main',
    family: 'sd1',
    defaults: { steps: 25, guidance: 7.5, width: 512, height: 512, scheduler: 'pndm' },
    files: [
      { path: 'model_index.json', shown: '670 B', seen: true },
      { path: 'scheduler/scheduler_config.json', seen: false },
      { path: 'text_encoder/model.onnx', seen: false },
      ...TOKENIZER('tokenizer'),
      { path: 'unet/model.onnx', shown: '1.09 MB', seen: true },
      { path: 'unet/weights.pb', shown: '3.44 GB', seen: true },
      { path: 'vae_decoder/model.onnx', seen: false },
    ],
    approxDownload: '5.5 GB with the safety checker (the listing shows 5.48 GB for the whole repo)',
    checked:
      'tree pages of main (last commit 90ff1f1, full id not seen): folders feature_extractor, ' +
      'safety_checker, scheduler, text_encoder, tokenizer, unet, vae_decoder, vae_encoder; unet/ holds ' +
      'model.onnx + weights.pb. Not run here.',
  },
  {
    name: 'sd-turbo',
    title: 'SD-Turbo (SD 2.1 distilled), ONNX Runtime / Olive export',
    repo: 'onnxruntime/sd-turbo',
    revision: '6d0b4c16d1606606694b58681a91b0edf1415268',
    family: 'sd2',
    defaults: { steps: 1, guidance: 0, width: 512, height: 512, scheduler: 'euler_a' },
    files: [
      { path: 'model_index.json', shown: '595 B', seen: true },
      { path: 'scheduler/scheduler_config.json', seen: false },
      { path: 'text_encoder/model.onnx', seen: false },
      ...TOKENIZER('tokenizer'),
      { path: 'unet/model.onnx', seen: false },
      { path: 'vae_decoder/model.onnx', seen: false },
    ],
    approxDownload:
      'not seen (fp16: roughly 2.6 GB, the size the listing shows for tlwu/sd-turbo-onnxruntime)',
    checked:
      'tree page at commit 6d0b4c1 ("Add model files"; later commits on main, up to 80d4d2e, change ' +
      'README.md only): folders scheduler, text_encoder, tokenizer, unet, vae_decoder, vae_encoder, ' +
      'model_index.json 595 B. Per-file listing not seen. Olive-optimised fp16 for the CUDA execution ' +
      'provider: the README it was copied from says the models cannot run on other providers such as CPU.',
  },
  {
    name: 'sdxl',
    title: 'Stable Diffusion XL 1.0 base (fp32, optimum export)',
    repo: 'stabilityai/stable-diffusion-xl-base-1.0',
    revision: 'main',
    family: 'sdxl',
    defaults: { steps: 30, guidance: 5, width: 1024, height: 1024, scheduler: 'euler' },
    files: [
      { path: 'model_index.json', seen: false },
      { path: 'scheduler/scheduler_config.json', seen: false },
      { path: 'text_encoder/model.onnx', seen: false },
      { path: 'text_encoder_2/model.onnx', seen: false },
      ...TOKENIZER('tokenizer'),
      ...TOKENIZER('tokenizer_2'),
      { path: 'unet/model.onnx', shown: '7.29 MB', seen: true },
      { path: 'unet/model.onnx_data', shown: '10.3 GB', seen: true },
      { path: 'vae_decoder/config.json', shown: '767 B', seen: true },
      { path: 'vae_decoder/model.onnx', shown: '198 MB', seen: true },
    ],
    approxDownload: 'about 14 GB (unet 10.3 GB; the text encoders were not seen)',
    checked:
      'tree pages of unet/ and vae_decoder/ at commits after "onnx-model (#18)" (51f7329): the ONNX files ' +
      'sit beside the PyTorch and OpenVINO weights, which the downloader skips. Full commit of main not ' +
      'seen, so the entry follows main; the download pins the commit main resolves to. Not run here.',
  },
  {
    name: 'sdxl-turbo',
    title: 'SDXL-Turbo (fp32, optimum export by Hugging Face)',
    repo: 'stabilityai/sdxl-turbo',
    revision: 'fbda35297a8280789ffe2e25206800702fa5c4c1',
    family: 'sdxl',
    defaults: { steps: 1, guidance: 0, width: 512, height: 512, scheduler: 'euler_a' },
    files: [
      { path: 'model_index.json', shown: '685 B', seen: true },
      { path: 'scheduler/scheduler_config.json', seen: false },
      { path: 'text_encoder/model.onnx', seen: false },
      { path: 'text_encoder_2/model.onnx', shown: '1.04 MB', seen: true },
      { path: 'text_encoder_2/model.onnx_data', shown: '2.78 GB', seen: true },
      ...TOKENIZER('tokenizer'),
      ...TOKENIZER('tokenizer_2'),
      { path: 'unet/model.onnx', seen: false },
      { path: 'unet/model.onnx_data', seen: false },
      { path: 'vae_decoder/config.json', shown: '607 B', seen: true },
      { path: 'vae_decoder/model.onnx', shown: '198 MB', seen: true },
    ],
    approxDownload: 'about 14 GB (unet not seen; as SDXL base, about 10.3 GB)',
    checked:
      'tree pages at commit fbda352 ("onnx (#15)", which added the ONNX files) and later ones: folders ' +
      'scheduler, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, vae_decoder, vae_encoder; ' +
      'text_encoder_2/ and vae_decoder/ file by file. Not run here.',
  },
  {
    name: 'sdxl-turbo-ort',
    title: 'SDXL-Turbo, ONNX Runtime / Olive export (fp16, CUDA)',
    repo: 'onnxruntime/sdxl-turbo',
    revision: 'bd6180e5aa5a5e326fbb0ba1bdda15cb3817f63c',
    family: 'sdxl',
    defaults: { steps: 1, guidance: 0, width: 512, height: 512, scheduler: 'euler_a' },
    files: [
      { path: 'model_index.json', shown: '785 B', seen: true },
      { path: 'scheduler/scheduler_config.json', seen: false },
      { path: 'text_encoder/model.onnx', seen: false },
      { path: 'text_encoder_2/model.onnx', shown: '1.39 GB', seen: true },
      { path: 'text_encoder_2/model.onnx.data', shown: '2.78 GB', seen: true },
      ...TOKENIZER('tokenizer'),
      ...TOKENIZER('tokenizer_2'),
      { path: 'unet/model.onnx', seen: false },
      { path: 'vae_decoder/model.onnx', seen: false },
    ],
    approxDownload: 'not seen in full (text_encoder_2 alone 4.17 GB)',
    checked:
      'tree pages at commit bd6180e (head of main as listed): the folders as for sdxl-turbo, ' +
      'text_encoder_2/ file by file, model_index.json 785 B. Olive-optimised for the CUDA execution ' +
      'provider: its README says the models cannot run on other providers such as CPU. Whether its text ' +
      'encoders expose the hidden states SDXL needs was not checked.',
  },
];

export function findCatalogEntry(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}

/** A name that looks like a catalogue entry (no slash) but is none. */
export function unknownEntry(name: string): DownloadError {
  return new DownloadError(
    'unknown-catalog-entry',
    `"${name}" is neither a catalogue entry (${CATALOG.map((e) => e.name).join(', ')}) nor a Hugging Face ` +
      'repo id (owner/name).',
    { context: { name } },
  );
}

const UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** Whether `bytes` reads as `shown` at the hub's 3 significant digits. */
export function sizeMatches(bytes: number, shown: string): boolean {
  const m = /^([\d.]+) (B|kB|MB|GB|TB)$/.exec(shown);
  if (m === null) return false;
  const approx = Number(m[1]) * UNITS[m[2]!]!;
  return m[2] === 'B' ? bytes === approx : Math.abs(bytes - approx) <= approx * 0.005;
}

/**
 * Checks the hub's listing against the entry: every file the entry names must be there (else the
 * repository changed its layout: refuse before downloading); a size that differs from the recorded one
 * is only reported (the hub's own size and sha256 still guard the transfer).
 */
export function checkAgainstEntry(
  entry: CatalogEntry,
  files: readonly HubFile[],
  warn: (message: string) => void,
): void {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const missing = entry.files.filter((f) => !byPath.has(f.path)).map((f) => f.path);
  if (missing.length > 0) {
    throw new DownloadError(
      'catalog-mismatch',
      `${entry.repo}@${entry.revision} no longer has the layout the catalogue entry "${entry.name}" ` +
        `recorded: missing ${missing.join(', ')}. Nothing was downloaded.`,
      { context: { name: entry.name, missing } },
    );
  }
  for (const f of entry.files) {
    const size = byPath.get(f.path)?.size;
    if (f.shown !== undefined && size !== undefined && !sizeMatches(size, f.shown)) {
      warn(`${f.path} is ${size} bytes; the catalogue recorded ${f.shown} when the entry was checked`);
    }
  }
}

export interface CatalogDownloadOptions extends Omit<DownloadOptions, 'repo' | 'revision' | 'family'> {
  /** Told about size differences from the entry. */
  readonly warn?: ((message: string) => void) | undefined;
}

/** Downloads a catalogue entry, then writes its defaults to the folder's imagine.json. */
export async function downloadCatalogEntry(
  entry: CatalogEntry,
  options: CatalogDownloadOptions,
): Promise<DownloadResult & { readonly imagineJson: string }> {
  const warn = options.warn ?? (() => undefined);
  const result = await downloadModel({
    ...options,
    repo: entry.repo,
    revision: entry.revision,
    family: entry.family,
    checkFiles: (files) => checkAgainstEntry(entry, files, warn),
  });
  await writeImagineJson(result.dir, { catalog: entry.name, defaults: entry.defaults });
  return { ...result, imagineJson: `${result.dir}/${IMAGINE_JSON}` };
}
