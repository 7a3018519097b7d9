/**
 * Engine benchmark: `npm run bench:engine [-- --model DIR | --preset demo|sd15-mini|sd15] [--size 512 --steps 20 ...]`.
 * Prints where a generation's time goes (tokenizer, text encoder, UNet steps, VAE), throughput at
 * batch 1 and 4, peak RSS, and the share of step time spent outside onnxruntime's session.run
 * (goal: at most 5%), and image-to-image next to it (`--strength`, default 0.6: the same request started
 * from a picture the model made, so int(steps * strength) steps run plus the VAE encoder).
 * Ends with one JSON line holding every number.
 */
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isSamplerName, type SamplerName } from '../../core/samplers.ts';
import { type BuildDemoOptions, ensureDemoModel } from '../demo/index.ts';
import type { GenerateRequest } from '../engine.ts';
import { loadEngine, type OnnxEngine, type RunProfile } from '../pipeline.ts';
import { encodePng } from '../png.ts';
import { isExecutionProviderName } from '../providers.ts';
import { FAMILY_PRESETS } from './presets.ts';
import { runFamilyPreset } from './presets-run.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    size: { type: 'string', default: '512' },
    steps: { type: 'string', default: '20' },
    scheduler: { type: 'string', default: 'pndm' },
    batches: { type: 'string', default: '1,4' },
    runs: { type: 'string', default: '2' },
    threads: { type: 'string', default: '0' },
    ep: { type: 'string', default: 'cpu' },
    'device-id': { type: 'string', default: '0' },
    preset: { type: 'string', default: 'demo' },
    decoders: { type: 'string', default: 'vae,taesd' },

    strength: { type: 'string', default: '0.6' },
  },
  strict: true,
});

function int(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got "${value}"`);
    process.exit(2);
  }
  return n;
}

const size = int('size', values.size, 8);
if (size % 8 !== 0) {
  console.error(`--size must be a multiple of 8, got ${size}`);
  process.exit(2);
}
const steps = int('steps', values.steps, 1);
const runs = int('runs', values.runs, 1);
const batches = values.batches.split(',').map((b) => int('batches', b.trim(), 1));
const scheduler = values.scheduler;
if (!isSamplerName(scheduler)) {
  console.error(`--scheduler: unknown sampler "${scheduler}"`);
  process.exit(2);
}
const strength = Number(values.strength);
if (!(strength > 0 && strength <= 1)) {
  console.error(`--strength must be above 0 and at most 1, got "${values.strength}"`);
  process.exit(2);
}
const ep = values.ep;
if (!isExecutionProviderName(ep)) {
  console.error(`--ep must be cpu, cuda or webgpu, got "${ep}"`);
  process.exit(2);
}

/**
 * Without --model, the benchmark builds (once) a model of the chosen size with the demo builder:
 * `demo` (the tiny default), `sd15` (SD 1.5's UNet shape and parameter count, random weights; ~3.4 GB)
 * or `sd15-mini` (SD 1.5's architecture at a fifth of its width: enough compute per step to show
 * what the pipeline costs around onnxruntime on a real-shaped UNet, small enough for a CPU).
 */
const PRESETS: Record<string, BuildDemoOptions> = {
  demo: {},
  sd15: { scale: 'sd15' },
  'sd15-mini': {
    scale: 'sd15',
    channels: 64,
    hiddenSize: 256,
    textLayers: 4,
    textHeads: 4,
    heads: 4,
    vaeChannels: 32,
    externalData: false,
    label: 'Benchmark model (SD 1.5 architecture at 1/5 width, random weights, not Stable Diffusion)',
  },
};
const presetName = values.preset ?? 'demo';
if (FAMILY_PRESETS[presetName] !== undefined) {
  // Full-size family presets have their own runner (grid timing, TAESD vs VAE), in presets-run.ts.
  await runFamilyPreset(presetName, process.argv.slice(2));
  process.exit(0);
}
const preset = PRESETS[presetName];
if (preset === undefined) {
  console.error(
    `--preset must be one of ${[...Object.keys(PRESETS), ...Object.keys(FAMILY_PRESETS)].join(', ')}, got "${presetName}"`,
  );
  process.exit(2);
}
const modelsDir = process.env.MODELS_DIR ?? './data/models';
const modelDir =
  values.model ??
  (await ensureDemoModel(
    path.join(modelsDir, presetName === 'demo' ? 'demo' : `bench-${presetName}`),
    preset,
  ));

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function p95(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)]!;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

function request(batch: number): GenerateRequest {
  return {
    prompts: Array.from(
      { length: batch },
      (_, k) => `a lighthouse on a cliff at dusk, oil painting, variation ${k}`,
    ),
    negative: 'blurry, low quality',
    seeds: Array.from({ length: batch }, (_, k) => 1000 + k),
    scheduler: scheduler as SamplerName,
    steps,
    guidance: 7.5,
    width: size,
    height: size,
  };
}

interface BatchResult {
  readonly batch: number;
  readonly totalMs: number;
  readonly imagesPerSecond: number;
  readonly tokenizeMs: number;
  readonly textEncoderMs: number;
  readonly unetStepMeanMs: number;
  readonly unetStepP95Ms: number;
  readonly stepMeanMs: number;
  readonly stepP95Ms: number;
  readonly vaeMsPerImage: number;
  /** (step time - session.run time) / step time, over all steps. */
  readonly outsideOrtShare: number;
  /** The same per step, median: robust to a noisy host descheduling the JS thread now and then. */
  readonly outsideOrtMedianShare: number;
  readonly outsideOrtMedianMs: number;
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function measure(engine: OnnxEngine, batch: number): Promise<BatchResult> {
  const profiles: RunProfile[] = [];
  const totals: number[] = [];
  for (let r = 0; r < runs; r++) {
    const result = await engine.generate(request(batch));
    profiles.push(engine.lastProfile!);
    totals.push(result.timings.totalMs);
  }
  const unet = profiles.flatMap((p) => p.unetRunMs);
  const stepsMs = profiles.flatMap((p) => p.stepMs);
  const totalMs = mean(totals);
  return {
    batch,
    totalMs,
    imagesPerSecond: (batch * 1000) / totalMs,
    tokenizeMs: mean(profiles.map((p) => p.tokenizeMs)),
    textEncoderMs: mean(profiles.map((p) => p.textEncoderRunMs)),
    unetStepMeanMs: mean(unet),
    unetStepP95Ms: p95(unet),
    stepMeanMs: mean(stepsMs),
    stepP95Ms: p95(stepsMs),
    vaeMsPerImage: mean(profiles.flatMap((p) => p.vaeRunMs)),
    outsideOrtShare: (sum(stepsMs) - sum(unet)) / sum(stepsMs),
    outsideOrtMedianShare: median(stepsMs.map((s, i) => (s - unet[i]!) / s)),
    outsideOrtMedianMs: median(stepsMs.map((s, i) => s - unet[i]!)),
  };
}

interface Img2ImgResult {
  readonly batch: number;
  readonly strength: number;
  readonly stepsRun: number;
  readonly encodeImageMs: number;
  readonly stepMeanMs: number;
  readonly vaeMsPerImage: number;
  readonly totalMs: number;
  readonly imagesPerSecond: number;
}

/** Image-to-image from a picture the model just made, at each batch size; null without vae_encoder/. */
async function measureImg2Img(
  engine: OnnxEngine,
  batch: number,
  initImage: Uint8Array,
): Promise<Img2ImgResult> {
  const totals: number[] = [];
  const encode: number[] = [];
  const profiles: RunProfile[] = [];
  for (let r = 0; r < runs; r++) {
    const result = await engine.generate({ ...request(batch), initImage, strength });
    totals.push(result.timings.totalMs);
    encode.push(result.timings.encodeImageMs ?? 0);
    profiles.push(engine.lastProfile!);
  }
  const totalMs = mean(totals);
  return {
    batch,
    strength,
    stepsRun: profiles[0]!.stepMs.length,
    encodeImageMs: mean(encode),
    stepMeanMs: mean(profiles.flatMap((p) => p.stepMs)),
    vaeMsPerImage: mean(profiles.flatMap((p) => p.vaeRunMs)),
    totalMs,
    imagesPerSecond: (batch * 1000) / totalMs,
  };
}

const loadStart = performance.now();
const engine = await loadEngine(modelDir, {
  executionProvider: ep,
  deviceId: int('device-id', values['device-id'], 0),
  intraOpThreads: int('threads', values.threads, 0),
});
const loadMs = performance.now() - loadStart;
const results: BatchResult[] = [];
const img2img: Img2ImgResult[] = [];
let img2imgSkipped: string | null = null;
try {
  // Warm-up: the first run pays for memory-arena growth and kernel selection.
  const warm = await engine.generate({ ...request(1), steps: Math.min(steps, 2) });
  for (const b of batches) results.push(await measure(engine, b));
  const initImage = new Uint8Array(await encodePng(warm.images[0]!));
  try {
    // Warm-up of the VAE encoder's session (opened on first use).
    await engine.generate({ ...request(1), steps: Math.min(steps, 2), initImage, strength: 1 });
    for (const b of batches) img2img.push(await measureImg2Img(engine, b, initImage));
  } catch (error) {
    img2imgSkipped = (error as Error).message;
  }
} finally {
  await engine.close();
}

const peakRssMiB = process.resourceUsage().maxRSS / 1024;
const f1 = (x: number) => x.toFixed(1);
console.log(
  `model ${engine.info.name} (${engine.info.dtype}${engine.info.demo ? ', demo' : ''}) ${size}x${size}, ${scheduler} ${steps} steps, ` +
    `guidance 7.5, ep ${ep}, ${values.threads === '0' ? availableParallelism() : values.threads} threads on ` +
    `${cpus()[0]?.model ?? 'unknown CPU'}; load ${f1(loadMs)} ms; ${runs} run(s) per batch size`,
);
console.log(
  'batch  tokenize  text-enc  unet/step mean  p95   step mean  p95   vae/img  total ms  img/s   outside-ort: all steps / median step',
);
for (const r of results) {
  console.log(
    `${String(r.batch).padStart(5)}  ${f1(r.tokenizeMs).padStart(8)}  ${f1(r.textEncoderMs).padStart(8)}  ` +
      `${f1(r.unetStepMeanMs).padStart(14)}  ${f1(r.unetStepP95Ms).padStart(5)}  ${f1(r.stepMeanMs).padStart(9)}  ` +
      `${f1(r.stepP95Ms).padStart(5)}  ${f1(r.vaeMsPerImage).padStart(7)}  ${f1(r.totalMs).padStart(8)}  ` +
      `${r.imagesPerSecond.toFixed(3).padStart(6)}  ${(r.outsideOrtShare * 100).toFixed(2).padStart(6)}% / ` +
      `${(r.outsideOrtMedianShare * 100).toFixed(2)}% (${r.outsideOrtMedianMs.toFixed(2)} ms)`,
  );
}
if (img2imgSkipped !== null) console.log(`image-to-image: skipped (${img2imgSkipped})`);
else {
  console.log(
    'img2img  strength  steps run  vae-enc  step mean  vae/img  total ms  img/s   (vs text-to-image total)',
  );
  for (const r of img2img) {
    const t2i = results.find((t) => t.batch === r.batch);
    console.log(
      `${String(r.batch).padStart(7)}  ${String(r.strength).padStart(8)}  ${String(r.stepsRun).padStart(9)}  ` +
        `${f1(r.encodeImageMs).padStart(7)}  ${f1(r.stepMeanMs).padStart(9)}  ${f1(r.vaeMsPerImage).padStart(7)}  ` +
        `${f1(r.totalMs).padStart(8)}  ${r.imagesPerSecond.toFixed(3).padStart(6)}  ` +
        `(${t2i === undefined ? '-' : `${f1(t2i.totalMs)} ms`})`,
    );
  }
}
console.log(`peak RSS ${f1(peakRssMiB)} MiB (ms columns are per call; vae per image)`);
console.log(
  JSON.stringify({
    model: engine.info.name,
    dir: engine.info.dir,
    size,
    steps,
    scheduler,
    ep,
    loadMs,
    peakRssMiB,
    results,
    img2img,
    ...(img2imgSkipped === null ? {} : { img2imgSkipped }),
  }),
);
