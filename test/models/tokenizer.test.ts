import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode } from '../../core/errors.ts';
import { CLIP_MAX_LENGTH, ClipTokenizer } from '../../models/tokenizer.ts';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'tokenizer');
const vocabPath = join(fixtures, 'vocab.json');
const mergesPath = join(fixtures, 'merges.txt');

interface TokenizerCase {
  text: string;
  input_ids: number[];
  untruncated_length: number;
}
const cases = JSON.parse(readFileSync(join(fixtures, 'tokenizer-cases.json'), 'utf8')) as TokenizerCase[];

const BOS = 49406;
const EOS = 49407;

let tokenizer: ClipTokenizer;
let scratch: string;

beforeAll(async () => {
  tokenizer = await ClipTokenizer.fromFiles(vocabPath, mergesPath);
  scratch = await mkdtemp(join(tmpdir(), 'clip-tokenizer-test-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('ClipTokenizer matches transformers CLIPTokenizer on every reference case', () => {
  it('has all the reference cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(22);
  });

  for (const c of cases) {
    it(`encodes ${JSON.stringify(c.text.length > 60 ? `${c.text.slice(0, 60)}…` : c.text)}`, () => {
      const enc = tokenizer.encode(c.text);
      expect(enc.ids).toBeInstanceOf(Int32Array);
      expect(Array.from(enc.ids)).toEqual(c.input_ids);
      expect(enc.tokenCount).toBe(c.untruncated_length);
      expect(enc.truncatedTokens).toBe(Math.max(0, c.untruncated_length - CLIP_MAX_LENGTH));
    });
  }

  it('covers truncation: a case over 77 tokens keeps EOS last and reports the dropped count', () => {
    const long = cases.filter((c) => c.untruncated_length > CLIP_MAX_LENGTH);
    expect(long.length).toBeGreaterThan(0);
    for (const c of long) {
      const enc = tokenizer.encode(c.text);
      expect(enc.ids[CLIP_MAX_LENGTH - 1]).toBe(EOS);
      expect(enc.truncatedTokens).toBe(c.untruncated_length - CLIP_MAX_LENGTH);
    }
  });
});

describe('ClipTokenizer structure on arbitrary text', () => {
  it('always returns 77 ids: BOS, tokens, EOS, EOS padding', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (text) => {
        const enc = tokenizer.encode(text);
        expect(enc.ids.length).toBe(CLIP_MAX_LENGTH);
        expect(enc.ids[0]).toBe(BOS);
        expect(enc.tokenCount).toBeGreaterThanOrEqual(2);
        expect(enc.truncatedTokens).toBe(Math.max(0, enc.tokenCount - CLIP_MAX_LENGTH));
        const eosAt = Math.min(enc.tokenCount, CLIP_MAX_LENGTH) - 1;
        for (let i = eosAt; i < CLIP_MAX_LENGTH; i++) expect(enc.ids[i]).toBe(EOS);
        for (const id of enc.ids) expect(id >= 0 && id <= EOS).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('is deterministic with a warm cache', () => {
    const text = 'Labrador in the style of Vermeer, highly realistic';
    expect(Array.from(tokenizer.encode(text).ids)).toEqual(Array.from(tokenizer.encode(text).ids));
  });

  it('handles a very long word quickly (BPE is not quadratic)', () => {
    const enc = tokenizer.encode('ab'.repeat(20_000));
    expect(enc.tokenCount).toBeGreaterThan(CLIP_MAX_LENGTH);
    expect(enc.ids[CLIP_MAX_LENGTH - 1]).toBe(EOS);
  });
});

describe('OpenCLIP padding (SD 2.x, SDXL tokenizer_2): pad_token "!" from the tokenizer config', () => {
  let openClip: ClipTokenizer;
  beforeAll(async () => {
    const dir = join(scratch, 'openclip');
    await mkdir(join(dir, 'tokenizer'), { recursive: true });
    await copyFile(vocabPath, join(dir, 'tokenizer', 'vocab.json'));
    await copyFile(mergesPath, join(dir, 'tokenizer', 'merges.txt'));
    // transformers may save the token as an AddedToken object; both forms name the same token.
    await writeFile(
      join(dir, 'tokenizer', 'tokenizer_config.json'),
      JSON.stringify({ pad_token: { content: '!' } }),
    );
    openClip = await ClipTokenizer.fromModelDir(dir);
  });

  it('pads every reference case with id 0 after EOS, and keeps EOS last when truncating', () => {
    expect(openClip.padTokenId).toBe(0);
    for (const c of cases) {
      const kept = Math.min(c.untruncated_length, CLIP_MAX_LENGTH);
      const expected = c.input_ids.map((id, i) => (i < kept ? id : 0));
      expect(Array.from(openClip.encode(c.text).ids), c.text).toEqual(expected);
      expect(openClip.encode(c.text).ids[kept - 1]).toBe(EOS);
    }
  });

  it('names a pad token the vocabulary lacks', async () => {
    const dir = join(scratch, 'bad-pad');
    await mkdir(join(dir, 'tokenizer'), { recursive: true });
    await copyFile(vocabPath, join(dir, 'tokenizer', 'vocab.json'));
    await copyFile(mergesPath, join(dir, 'tokenizer', 'merges.txt'));
    await writeFile(
      join(dir, 'tokenizer', 'special_tokens_map.json'),
      JSON.stringify({ pad_token: '<pad>' }),
    );
    await expect(ClipTokenizer.fromModelDir(dir)).rejects.toMatchObject({
      code: ErrorCode.ModelLoad,
      message: expect.stringContaining('"<pad>"'),
    });
  });
});

describe('ClipTokenizer loading', () => {
  it('loads <dir>/tokenizer/{vocab.json,merges.txt} from a model folder', async () => {
    const modelDir = join(scratch, 'model');
    await mkdir(join(modelDir, 'tokenizer'), { recursive: true });
    await copyFile(vocabPath, join(modelDir, 'tokenizer', 'vocab.json'));
    await copyFile(mergesPath, join(modelDir, 'tokenizer', 'merges.txt'));
    const fromDir = await ClipTokenizer.fromModelDir(modelDir);
    const c = cases[1]!;
    expect(Array.from(fromDir.encode(c.text).ids)).toEqual(c.input_ids);
  });

  it('names the missing vocab file', async () => {
    const missing = join(scratch, 'nope', 'vocab.json');
    const error = await ClipTokenizer.fromFiles(missing, mergesPath).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.ModelMissingFile);
    expect((error as CodedError).message).toContain(missing);
    expect((error as CodedError).message).toContain('vocab.json');
  });

  it('names the missing merges file, also through fromModelDir', async () => {
    const modelDir = join(scratch, 'no-merges');
    await mkdir(join(modelDir, 'tokenizer'), { recursive: true });
    await copyFile(vocabPath, join(modelDir, 'tokenizer', 'vocab.json'));
    const error = await ClipTokenizer.fromModelDir(modelDir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.ModelMissingFile);
    expect((error as CodedError).message).toContain(join(modelDir, 'tokenizer', 'merges.txt'));
  });

  it('rejects a vocab that is not JSON, naming the file', async () => {
    const bad = join(scratch, 'bad-vocab.json');
    await writeFile(bad, '{"a": 1,');
    const error = await ClipTokenizer.fromFiles(bad, mergesPath).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((error as CodedError).message).toContain(bad);
  });

  it('rejects a vocab with non-integer ids', async () => {
    const bad = join(scratch, 'bad-ids.json');
    await writeFile(bad, JSON.stringify({ a: 'one' }));
    const error = await ClipTokenizer.fromFiles(bad, mergesPath).catch((e: unknown) => e);
    expect((error as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((error as CodedError).message).toContain('integer');
  });

  it('rejects malformed merges lines and merges unknown to the vocab', async () => {
    const badLine = join(scratch, 'bad-line.txt');
    await writeFile(badLine, '#version: 0.2\ni n\nthis line has three\n');
    const e1 = await ClipTokenizer.fromFiles(vocabPath, badLine).catch((e: unknown) => e);
    expect((e1 as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((e1 as CodedError).message).toContain(`${badLine} line 3`);

    const unknown = join(scratch, 'unknown-merge.txt');
    await writeFile(unknown, '#version: 0.2\nzzzq xxxj\n');
    const e2 = await ClipTokenizer.fromFiles(vocabPath, unknown).catch((e: unknown) => e);
    expect((e2 as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((e2 as CodedError).message).toContain('vocabulary lacks');
  });

  it('rejects a vocab without the CLIP special tokens', async () => {
    const noSpecial = join(scratch, 'no-special.json');
    await writeFile(noSpecial, JSON.stringify({ 'i</w>': 0, in: 1, i: 2, n: 3 }));
    const merges = join(scratch, 'tiny-merges.txt');
    await writeFile(merges, '#version: 0.2\ni n\n');
    const error = await ClipTokenizer.fromFiles(noSpecial, merges).catch((e: unknown) => e);
    expect((error as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((error as CodedError).message).toContain('<|startoftext|>');
  });
});
