import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_OK, EXIT_USAGE, runCli } from '../../models/cli/run.ts';
import { readPngText } from '../../models/png.ts';
import { imagine, ROOT } from './cli-run.ts';
import { CASES, closeness, FIXTURES, referenceRgb, TINY_SD } from './tiny-sd.ts';

const exec = promisify(execFile);

async function rgbOf(file: string): Promise<Uint8Array> {
  const { data } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function generateArgs(c: (typeof CASES)[number], out: string): string[] {
  const args = ['generate', '--model', TINY_SD, '--out', out];
  for (const p of c.prompts) args.push('--prompt', p);
  for (const s of c.seeds) args.push('--seed', String(s));
  if (c.negative !== undefined) args.push('--negative', c.negative);
  args.push('--scheduler', c.scheduler, '--steps', String(c.steps), '--guidance', String(c.guidance));
  args.push('--width', String(c.width), '--height', String(c.height));
  return args;
}

describe('imagine generate reproduces diffusers on tiny-sd', () => {
  for (const [index, c] of CASES.entries()) {
    it(`case ${String(index).padStart(2, '0')} (${c.scheduler}, ${c.width}x${c.height})`, async () => {
      const out = path.join(work, `case${index}`);
      const run = await imagine(generateArgs(c, out));
      expect(run.code, run.stderr).toBe(0);
      const files = (await readdir(out)).sort();
      expect(files).toEqual(c.images.map((_, k) => `${k}.png`));
      for (const [k, ref] of c.images.entries()) {
        const file = path.join(out, `${k}.png`);
        const close = closeness(await rgbOf(file), await referenceRgb(ref.file));
        expect(close.within1, `${ref.file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
        expect(close.maxDiff, `${ref.file}: largest difference`).toBeLessThanOrEqual(2);
        const parameters = readPngText(await readFile(file)).parameters!;
        expect(parameters.startsWith(`${c.prompts[k]}\n`)).toBe(true);
        expect(parameters).toContain(
          `Seed: ${c.seeds[k]}, Size: ${c.width}x${c.height}, Model: tiny-sd, RNG: CPU`,
        );
        expect(parameters).toContain(`Steps: ${c.steps}, `);
        if (c.negative !== undefined) expect(parameters).toContain(`\nNegative prompt: ${c.negative}\n`);
      }
      if (index === 9) expect(run.stderr).toMatch(/tokens were dropped/);
    });
  }

  it('case 02 through the CLI equals image 2 of case 00 bit for bit', async () => {
    for (const i of [0, 2]) {
      const out = path.join(work, `case${i}`);
      if ((await readdir(out).catch(() => [])).length === 0) await imagine(generateArgs(CASES[i]!, out));
    }
    const alone = await rgbOf(path.join(work, 'case2', '0.png'));
    const inBatch = await rgbOf(path.join(work, 'case0', '2.png'));
    expect(Buffer.from(alone).equals(Buffer.from(inBatch))).toBe(true);
  });
});

describe('imagine generate batches', () => {
  it('image k uses prompt k mod #prompts and seed k mod #seeds', async () => {
    const out = path.join(work, 'cycle');
    const run = await imagine([
      'generate',
      '--model',
      TINY_SD,
      '--prompt',
      'a cat',
      '--prompt',
      'a dog',
      '--seed',
      '5',
      '--seed',
      '6',
      '--seed',
      '7',
      '--steps',
      '3',
      '--width',
      '64',
      '--height',
      '64',
      '--out',
      out,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const expected = [
      ['a cat', 5],
      ['a dog', 6],
      ['a cat', 7],
    ] as const;
    for (const [k, [prompt, seed]] of expected.entries()) {
      const text = readPngText(await readFile(path.join(out, `${k}.png`))).parameters!;
      expect(text.split('\n')[0]).toBe(prompt);
      expect(text).toContain(`Seed: ${seed},`);
      expect(text).toContain('Sampler: PNDM, CFG scale: 7.5');
    }
    expect(run.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('uses the demo model when --model is not given, building it under MODELS_DIR', async () => {
    const models = path.join(work, 'models');
    const out = path.join(work, 'demo-out');
    const run = await imagine(
      [
        'generate',
        '--prompt',
        'a red fox',
        '--seed',
        '1',
        '--steps',
        '2',
        '--width',
        '64',
        '--height',
        '64',
        '--out',
        out,
      ],
      { MODELS_DIR: models },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/demo model/);
    expect(await readdir(path.join(models, 'demo'))).toContain('demo.json');
    const text = readPngText(await readFile(path.join(out, '0.png'))).parameters!;
    expect(text).toMatch(/Model: "Demo model/);
  });

  it('draws a progress bar on a terminal', async () => {
    const errors: string[] = [];
    const stdout: string[] = [];
    const code = await runCli(
      [
        'generate',
        '--model',
        TINY_SD,
        '--prompt',
        'x',
        '--seed',
        '1',
        '--steps',
        '4',
        '--width',
        '64',
        '--height',
        '64',
        '--out',
        path.join(work, 'tty'),
        '--scheduler',
        'euler',
      ],
      {},
      {
        stdout: { write: (t: string) => stdout.push(t) },
        stderr: { isTTY: true, write: (t: string) => errors.push(t) },
      },
    );
    expect(code).toBe(EXIT_OK);
    const text = errors.join('');
    expect(text).toContain('step 1/4');
    expect(text).toContain('step 4/4');
    expect(text).toContain('\r[');
  });
});

describe('imagine inspect', () => {
  it('prints what the loader read from each session', async () => {
    const out: string[] = [];
    const code = await runCli(
      ['inspect', '--model', TINY_SD],
      {},
      {
        stdout: { write: (t: string) => out.push(t) },
        stderr: { write: () => {} },
      },
    );
    expect(code).toBe(EXIT_OK);
    const info = JSON.parse(out.join(''));
    expect(info.unet.timestep).toEqual({ name: 'timestep', type: 'float32', shape: ['batch'] });
    expect(info.textEncoder.inputIds.type).toBe('int32');
    expect(info.vaeScalingFactor).toBe(0.18215);
  });
});

describe('imagine tokenize', () => {
  const cases: { text: string; input_ids: number[] }[] = JSON.parse(
    readFileSync(path.join(FIXTURES, 'tokenizer', 'tokenizer-cases.json'), 'utf8'),
  );

  it('prints the 77 ids of CLIPTokenizer as a JSON array on its last line', async () => {
    for (const c of cases.filter((x) => x.text === 'a photo of a cat' || x.text.length > 200).slice(0, 2)) {
      const run = await imagine(['tokenize', '--model', TINY_SD, c.text]);
      expect(run.code, run.stderr).toBe(0);
      const last = run.stdout.trim().split('\n').at(-1)!;
      expect(JSON.parse(last)).toEqual(c.input_ids);
    }
  });

  it('runs through npm exec -- imagine', async () => {
    const { stdout } = await exec(
      'npm',
      ['exec', '--', 'imagine', 'tokenize', '--model', TINY_SD, 'a photo of a cat'],
      {
        cwd: ROOT,
        timeout: 120_000,
      },
    );
    const ids = JSON.parse(stdout.trim().split('\n').at(-1)!) as number[];
    expect(ids).toHaveLength(77);
    expect(ids.slice(0, 2)).toEqual([49406, 320]);
  });
});

/** All files of a folder, relative paths with `/`. */
async function filesOf(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory()) out.push(...(await filesOf(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/**
 * A loopback stand-in for the Hugging Face Hub serving tiny-sd as `test-org/tiny-sd`: the revision API
 * (file list with sizes and sha256) and `resolve/` downloads, only for the right bearer token.
 */
async function startFakeHub(token: string): Promise<{ url: string; server: Server; requests: string[] }> {
  const files = new Map<string, Buffer>();
  for (const rel of await filesOf(TINY_SD)) {
    if (rel !== 'README.md') files.set(rel, await readFile(path.join(TINY_SD, rel)));
  }
  const commit = 'c0ffee'.padEnd(40, '0');
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { 'x-error-code': 'GatedRepo' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://hub');
    if (url.pathname === '/api/models/test-org/tiny-sd/revision/main') {
      const siblings = [...files].map(([rfilename, data]) => ({
        rfilename,
        size: data.length,
        lfs: { sha256: createHash('sha256').update(data).digest('hex'), size: data.length },
      }));
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ sha: commit, siblings }));
      return;
    }
    const prefix = `/test-org/tiny-sd/resolve/${commit}/`;
    const data = url.pathname.startsWith(prefix)
      ? files.get(decodeURIComponent(url.pathname.slice(prefix.length)))
      : undefined;
    if (data === undefined) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
      return;
    }
    res.writeHead(200, { 'content-length': data.length }).end(data);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, requests };
}

describe('imagine models', () => {
  let hub: Awaited<ReturnType<typeof startFakeHub>>;
  beforeAll(async () => {
    hub = await startFakeHub('hf_test_token');
  });
  afterAll(async () => {
    await new Promise((resolve) => hub.server.close(resolve));
  });

  it('downloads with HF_TOKEN from HF_ENDPOINT, lists the model, and generates with it', async () => {
    const models = path.join(work, 'downloaded');
    const env = { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_test_token' };
    const run = await imagine(['models', 'download', 'test-org/tiny-sd', '--dir', models], env);
    expect(run.code, run.stderr).toBe(0);
    const dir = run.stdout.trim().split('\n').at(-1)!;
    expect(dir).toBe(path.join(models, 'test-org--tiny-sd'));

    const list = await imagine(['models', 'list', '--dir', models]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(
      /^test-org\/tiny-sd\tsd1\tfp32\t.*\t25 steps, guidance 7\.5, 512x512, pndm\t/m,
    );

    const c = CASES[8]!;
    const out = path.join(work, 'downloaded-out');
    const gen = await imagine(generateArgs(c, out).map((a) => (a === TINY_SD ? dir : a)));
    expect(gen.code, gen.stderr).toBe(0);
    const close = closeness(await rgbOf(path.join(out, '0.png')), await referenceRgb(c.images[0]!.file));
    expect(close.within1).toBeGreaterThanOrEqual(0.999);
    expect(close.maxDiff).toBeLessThanOrEqual(2);
  });

  it('fails with exit 1 and the hub error without the token', async () => {
    const run = await imagine(
      ['models', 'download', 'test-org/tiny-sd', '--dir', path.join(work, 'no-token')],
      {
        HF_ENDPOINT: hub.url,
        HF_TOKEN: '',
      },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/E_DOWNLOAD/);
  });

  it('rejects a malformed repo id', async () => {
    const run = await imagine(['models', 'download', 'not a repo'], { HF_ENDPOINT: hub.url });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/owner\/name/);
  });
});

describe('bad input', () => {
  const usageCases: [string, string[], RegExp][] = [
    ['no command', [], /Usage/],
    ['an unknown command', ['paint'], /unknown command "paint"/],
    ['generate without --prompt', ['generate', '--model', TINY_SD], /at least one --prompt/],
    ['an unknown flag', ['generate', '--prompt', 'x', '--colour', 'red'], /colour/],
    [
      'a non-numeric --steps',
      ['generate', '--prompt', 'x', '--steps', 'many'],
      /--steps must be a whole number/,
    ],
    [
      'an unknown scheduler',
      ['generate', '--prompt', 'x', '--scheduler', 'heun'],
      /--scheduler must be one of/,
    ],
    ['a size not a multiple of 8', ['generate', '--prompt', 'x', '--width', '100'], /multiples of 8/],
    ['a seed over 2^32-1', ['generate', '--prompt', 'x', '--seed', '4294967296'], /--seed/],
    ['an unknown provider', ['generate', '--prompt', 'x', '--ep', 'tpu'], /--ep must be one of/],
    ['tokenize without text', ['tokenize', '--model', TINY_SD], /exactly one TEXT/],
  ];
  for (const [what, args, message] of usageCases) {
    it(`exits 2 with a clear message for ${what}`, async () => {
      const output: string[] = [];
      const sink = { write: (t: string) => output.push(t) };
      const code = await runCli(args, {}, { stdout: sink, stderr: sink });
      expect(code).toBe(EXIT_USAGE);
      expect(output.join('')).toMatch(message);
    });
  }

  it('exits 1 naming the folder when the model is missing', async () => {
    const run = await imagine(['generate', '--model', path.join(work, 'no-model'), '--prompt', 'x']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(path.join(work, 'no-model'));
    expect(run.stderr).toContain('E_MODEL_MISSING_FILE');
  });
});
