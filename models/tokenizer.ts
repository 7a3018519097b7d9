import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, InternalError } from '../core/errors.ts';
import { bpeWord, type MergeRanks } from './tokenizer/bpe.ts';

/**
 * The CLIP tokenizer of SD 1.x, identical to transformers 5's `CLIPTokenizer` (the `tokenizers`
 * backend) called with `padding="max_length", max_length=77, truncation=True`:
 *
 * 1. special tokens `<|startoftext|>` / `<|endoftext|>` are cut out of the raw text first
 *    (case-sensitive) and become their ids;
 * 2. each remaining segment is normalized: NFC, whitespace runs → " ", lowercase (per character);
 * 3. pre-tokenized with CLIP's pattern (contractions, letter runs, single digits, runs of other
 *    non-space characters; whitespace is dropped), each piece UTF-8 encoded and mapped through
 *    GPT-2's byte→unicode table;
 * 4. BPE with `</w>` marking the end of each piece;
 * 5. `[BOS] tokens[:75] [EOS]`, padded to 77 with the pad token: EOS for SD 1.x, `!` (id 0) for
 *    OpenCLIP tokenizers (SD 2.x, SDXL's second tokenizer), as their `tokenizer_config.json` says.
 *
 * Unlike the old slow tokenizer, this pipeline does not run ftfy or HTML unescaping: the oracle
 * (transformers 5.18) keeps curly quotes and `&amp;` as they are, and so do we.
 */

export const CLIP_MAX_LENGTH = 77;
const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';

export interface ClipEncoding {
  /** 77 token ids: BOS, up to 75 prompt tokens, EOS, then padding (EOS unless the config names another). */
  readonly ids: Int32Array;
  /** Length of the untruncated encoding, BOS and EOS included. */
  readonly tokenCount: number;
  /** Prompt tokens cut off by truncation: max(0, tokenCount - 77). */
  readonly truncatedTokens: number;
}

// Oniguruma's `\s` (what `tokenizers` uses): Unicode White_Space, which unlike JS `\s` includes
// U+0085 and excludes U+FEFF.
const WS_CLASS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${WS_CLASS}]+`, 'gu');
const CLIP_PIECE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS_CLASS}\\p{L}\\p{N}]+`,
  'gu',
);
const SPECIAL_SPLIT = /(<\|startoftext\|>|<\|endoftext\|>)/;
const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

/** GPT-2's reversible byte → printable unicode character table. */
function byteToUnicodeTable(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}
const BYTE_TO_UNICODE = byteToUnicodeTable();
const utf8 = new TextEncoder();

/** Lowercases per code point, like Rust's `char::to_lowercase` (no final-sigma context rule). */
function lowercase(text: string): string {
  if (!text.includes('\u03a3')) return text.toLowerCase();
  let out = '';
  for (const ch of text) out += ch.toLowerCase();
  return out;
}

const WORD_CACHE_LIMIT = 20_000;

export class ClipTokenizer {
  private readonly vocab: ReadonlyMap<string, number>;
  private readonly ranks: MergeRanks;
  private readonly bosId: number;
  private readonly eosId: number;
  private readonly padId: number;
  private readonly cache = new Map<string, readonly number[]>();

  private constructor(
    vocab: ReadonlyMap<string, number>,
    ranks: MergeRanks,
    bosId: number,
    eosId: number,
    padId: number,
  ) {
    this.vocab = vocab;
    this.ranks = ranks;
    this.bosId = bosId;
    this.eosId = eosId;
    this.padId = padId;
  }

  /**
   * Loads `vocab.json` and `merges.txt` (the files of a diffusers `tokenizer/` folder). `padToken` is the
   * config's `pad_token`; absent, padding is EOS (CLIP's own choice).
   */
  static async fromFiles(
    vocabJsonPath: string,
    mergesTxtPath: string,
    padToken?: string,
  ): Promise<ClipTokenizer> {
    const [vocabText, mergesText] = await Promise.all([
      readTokenizerFile(vocabJsonPath, 'the CLIP vocabulary (vocab.json, a JSON object of token → id)'),
      readTokenizerFile(mergesTxtPath, 'the CLIP BPE merges (merges.txt, one "left right" pair per line)'),
    ]);
    const vocab = parseVocab(vocabText, vocabJsonPath);
    const ranks = parseMerges(mergesText, mergesTxtPath, vocab);
    const bosId = vocab.get(BOS_TOKEN);
    const eosId = vocab.get(EOS_TOKEN);
    if (bosId === undefined || eosId === undefined) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer vocabulary ${vocabJsonPath} has no ${bosId === undefined ? BOS_TOKEN : EOS_TOKEN} entry; expected CLIP's special tokens`,
        { context: { file: vocabJsonPath } },
      );
    }
    const padId = padToken === undefined ? eosId : vocab.get(padToken);
    if (padId === undefined) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer vocabulary ${vocabJsonPath} has no entry for the pad token ${JSON.stringify(padToken)} its config names`,
        { context: { file: vocabJsonPath } },
      );
    }
    return new ClipTokenizer(vocab, ranks, bosId, eosId, padId);
  }

  /**
   * Loads `<dir>/<folder>/vocab.json` and `merges.txt` of a diffusers model folder, padding with the
   * `pad_token` of its `tokenizer_config.json` (else `special_tokens_map.json`, else EOS).
   */
  static async fromModelDir(dir: string, folder = 'tokenizer'): Promise<ClipTokenizer> {
    const padToken = await readPadToken(join(dir, folder));
    return ClipTokenizer.fromFiles(
      join(dir, folder, 'vocab.json'),
      join(dir, folder, 'merges.txt'),
      padToken,
    );
  }

  get padTokenId(): number {
    return this.padId;
  }

  get bosTokenId(): number {
    return this.bosId;
  }

  get eosTokenId(): number {
    return this.eosId;
  }

  /** Token ids of the prompt alone (no BOS/EOS, untruncated). */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    // Special tokens are matched on the raw text, before normalization, as `tokenizers` does.
    const parts = text.split(SPECIAL_SPLIT);
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (i % 2 === 1) {
        ids.push(part === BOS_TOKEN ? this.bosId : this.eosId);
        continue;
      }
      if (part.length === 0) continue;
      const normalized = lowercase(part.normalize('NFC').replace(WHITESPACE_RUN, ' '));
      for (const match of normalized.matchAll(CLIP_PIECE)) {
        const piece = match[0];
        if (piece === BOS_TOKEN || piece === EOS_TOKEN) {
          // Produced by normalization (e.g. "<|EndOfText|>"): the ByteLevel pre-tokenizer's GPT-2
          // pattern then splits it into "<|", the word, and "|>".
          const word = piece.slice(2, -2);
          for (const sub of ['<|', word, '|>']) this.encodePiece(sub, ids);
        } else {
          this.encodePiece(piece, ids);
        }
      }
    }
    return ids;
  }

  /** `CLIPTokenizer(text, padding="max_length", max_length=77, truncation=True)`, plus truncation info. */
  encode(text: string): ClipEncoding {
    const tokens = this.tokenize(text);
    const ids = new Int32Array(CLIP_MAX_LENGTH).fill(this.padId);
    ids[0] = this.bosId;
    const kept = Math.min(tokens.length, CLIP_MAX_LENGTH - 2);
    for (let i = 0; i < kept; i++) ids[i + 1] = tokens[i]!;
    ids[kept + 1] = this.eosId;
    const tokenCount = tokens.length + 2;
    return { ids, tokenCount, truncatedTokens: Math.max(0, tokenCount - CLIP_MAX_LENGTH) };
  }

  private encodePiece(piece: string, out: number[]): void {
    const word = PRINTABLE_ASCII.test(piece) ? piece : toByteLevel(piece);
    let cached = this.cache.get(word);
    if (cached === undefined) {
      const unk = this.eosId; // CLIP's unk token is <|endoftext|>
      cached = bpeWord(word, this.ranks).map((symbol) => this.vocab.get(symbol) ?? unk);
      if (this.cache.size >= WORD_CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, cached);
    }
    for (const id of cached) out.push(id);
  }
}

/**
 * UTF-8 bytes of a piece mapped through the byte→unicode table. Printable ASCII (0x21-0x7e) maps to
 * itself, so the caller skips this for such pieces; controls and everything else are remapped.
 */
function toByteLevel(piece: string): string {
  const bytes = utf8.encode(piece);
  let out = '';
  for (const b of bytes) out += BYTE_TO_UNICODE[b]!;
  return out;
}

/** A `pad_token` entry: a string, or transformers' AddedToken form `{content: "..."}`. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null) {
    const content = (value as Record<string, unknown>).content;
    if (typeof content === 'string') return content;
  }
  return undefined;
}

/** The pad token a tokenizer folder's configs name; absent or unreadable configs mean CLIP's default (EOS). */
async function readPadToken(folder: string): Promise<string | undefined> {
  for (const file of ['tokenizer_config.json', 'special_tokens_map.json']) {
    let text: string;
    try {
      text = await readFile(join(folder, file), 'utf8');
    } catch {
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer config ${join(folder, file)} is not valid JSON; expected an object with pad_token`,
        { cause, context: { file: join(folder, file) } },
      );
    }
    const pad = tokenText((parsed as Record<string, unknown> | null)?.pad_token);
    if (pad !== undefined) return pad;
  }
  return undefined;
}

async function readTokenizerFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new InternalError(
        ErrorCode.ModelMissingFile,
        `Tokenizer file not found: ${path} (expected ${what})`,
        {
          cause,
          context: { file: path },
        },
      );
    }
    throw new InternalError(ErrorCode.ModelLoad, `Cannot read tokenizer file ${path} (expected ${what})`, {
      cause,
      context: { file: path },
    });
  }
}

function parseVocab(text: string, path: string): Map<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Tokenizer vocabulary ${path} is not valid JSON; expected an object mapping token → id`,
      { cause, context: { file: path } },
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Tokenizer vocabulary ${path} is not a JSON object; expected an object mapping token → id`,
      { context: { file: path } },
    );
  }
  const vocab = new Map<string, number>();
  const record = parsed as Record<string, unknown>;
  for (const token in record) {
    const id = record[token];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer vocabulary ${path} maps ${JSON.stringify(token)} to ${JSON.stringify(id)}; expected a non-negative integer id`,
        { context: { file: path } },
      );
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Tokenizer vocabulary ${path} is empty; expected CLIP's tokens`,
      {
        context: { file: path },
      },
    );
  }
  return vocab;
}

function parseMerges(text: string, path: string, vocab: ReadonlyMap<string, number>): Map<string, number> {
  const ranks = new Map<string, number>();
  const lines = text.split('\n');
  let rank = 0;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (i === 0 && line.startsWith('#version')) continue;
    if (line.length === 0) continue;
    const space = line.indexOf(' ');
    if (space <= 0 || space === line.length - 1 || line.indexOf(' ', space + 1) !== -1) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer merges ${path} line ${i + 1} is ${JSON.stringify(line.slice(0, 80))}; expected "left right"`,
        { context: { file: path, line: i + 1 } },
      );
    }
    const merged = line.slice(0, space) + line.slice(space + 1);
    if (!vocab.has(merged)) {
      throw new InternalError(
        ErrorCode.ModelLoad,
        `Tokenizer merges ${path} line ${i + 1} makes ${JSON.stringify(merged)}, which the vocabulary lacks; are vocab.json and merges.txt from the same model?`,
        { context: { file: path, line: i + 1 } },
      );
    }
    // The first occurrence of a pair wins, like tokenizers' merge map built in file order.
    if (!ranks.has(line)) ranks.set(line, rank);
    rank++;
  }
  if (ranks.size === 0) {
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Tokenizer merges ${path} has no merges; expected CLIP's BPE merges`,
      {
        context: { file: path },
      },
    );
  }
  return ranks;
}
