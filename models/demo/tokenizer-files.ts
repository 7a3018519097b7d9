/**
 * The CLIP tokenizer files of every SD 1.x model, for the demo model's `tokenizer/` folder.
 * Only `merges.txt` is shipped (assets/clip-merges.txt, OpenAI's BPE merges, MIT licence); `vocab.json`
 * is fully determined by it (CLIP builds its vocabulary as the 256 byte symbols, the same with `</w>`,
 * one entry per merge, then the two special tokens) and is written byte-identical to the hub's file
 * (Python `json.dump(indent=1, ensure_ascii=True)` formatting).
 */

import { readFile } from 'node:fs/promises';

export const MERGES_ASSET = new URL('./assets/clip-merges.txt', import.meta.url);

/** GPT-2/CLIP's reversible byte → unicode mapping, in CLIP's vocabulary order. */
export function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let c = 0x21; c <= 0x7e; c++) printable.push(c);
  for (let c = 0xa1; c <= 0xac; c++) printable.push(c);
  for (let c = 0xae; c <= 0xff; c++) printable.push(c);
  const symbols = printable.map((c) => String.fromCharCode(c));
  const taken = new Set(printable);
  let next = 0;
  for (let byte = 0; byte < 256; byte++) {
    if (taken.has(byte)) continue;
    symbols.push(String.fromCharCode(256 + next));
    next++;
  }
  return symbols;
}

/** The CLIP vocabulary (token → id) implied by a merges.txt text. */
export function vocabFromMerges(mergesText: string): Map<string, number> {
  const lines = mergesText.split('\n');
  const merges = lines.slice(1).filter((l) => l.length > 0);
  const tokens = byteSymbols();
  for (const s of [...tokens]) tokens.push(`${s}</w>`);
  for (const m of merges) tokens.push(m.replace(' ', ''));
  tokens.push('<|startoftext|>', '<|endoftext|>');
  return new Map(tokens.map((t, i) => [t, i]));
}

/** Python escapes everything outside printable ASCII, DEL included, as lowercase \\uXXXX. */
function asciiEscape(json: string): string {
  return json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Python's `json.dumps(obj, indent=1, ensure_ascii=True)` for JSON-safe values. */
export function pythonJson(value: unknown): string {
  return asciiEscape(JSON.stringify(value, null, 1));
}

/**
 * The same for a flat string → number map, keeping insertion order (a JS object would move
 * integer-like keys such as "10" to the front).
 */
export function pythonJsonMap(map: ReadonlyMap<string, number>): string {
  const lines = Array.from(map, ([k, v]) => ` ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return asciiEscape(`{\n${lines.join(',\n')}\n}`);
}

export const TOKENIZER_CONFIG = {
  model_max_length: 77,
  do_lower_case: true,
  pad_token: '<|endoftext|>',
  tokenizer_class: 'CLIPTokenizer',
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
} as const;

export const SPECIAL_TOKENS_MAP = {
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
} as const;

/** The four tokenizer files: name → contents. */
export async function tokenizerFiles(): Promise<Map<string, string>> {
  const merges = await readFile(MERGES_ASSET, 'utf8');
  return new Map([
    ['vocab.json', pythonJsonMap(vocabFromMerges(merges))],
    ['merges.txt', merges],
    ['tokenizer_config.json', pythonJson(TOKENIZER_CONFIG)],
    ['special_tokens_map.json', pythonJson(SPECIAL_TOKENS_MAP)],
  ]);
}
