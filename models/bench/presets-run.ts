/**
 * `npm run bench:engine -- --preset sd-turbo|sdxl|sdxl-turbo [--steps N --size N --runs N --threads N
 * --ep cpu|cuda|webgpu --device-id N --decoders vae,taesd]`: builds (once, into data/bench-models/) a full-size
 * random-weight model of the family and times a 4-image grid the way the worker makes one: text encode,
 * each UNet step (and the share outside session.run), decode with the full VAE and with the TAESD-shaped
 * tiny decoder (DECODER=taesd), PNG encoding. Ends with one JSON line holding every number.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensureDemoModel, readDemoMarker } from '../demo/index.ts';
import type { GenerateRequest } from '../engine.ts';
import { loadEngine } from '../pipeline.ts';
import { encodePng } from '../png.ts';
import { isExecutionProviderName } from '../providers.ts';
import { APPROXIMATIONS, FAMILY_PRESETS } from './presets.ts';

const f1 = (x: number): string => x.toFixed(1);
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

export async function runFamilyPreset(name: string, argv: readonly string[]): Promise<void> {
  const preset = FAMILY_PRESETS[name]!;
  // Parsed again without engine.ts' SD 1.5 defaults: an unset --steps means the family's own.
  const { values } = parseArgs({
    args: [...argv],
    options: {
      preset: { type: 'string' },
      model: { type: 'string' },
      size: { type: 'string' },
      steps: { type: 'string' },
      scheduler: { type: 'string' },
      batches: { type: 'string' },
      runs: { type: 'string', default: '1' },
      threads: { type: 'string', default: '0' },
      ep: { type: 'string', default: 'cpu' },
      'device-id': { type: 'string', default: '0' },
      decoders: { type: 'string', default: 'vae,taesd' },
    },
    strict: true,
  });
  const int = (flag: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) fail(`--${flag} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const size = int('size', values.size ?? String(preset.size), 64);
  const steps = int('steps', values.steps ?? String(preset.steps), 1);
  const runs = int('runs', values.runs, 1);
  const batch = int('batches', values.batches ?? '4', 1);
  const ep = values.ep;
  if (!isExecutionProviderName(ep)) fail(`--ep must be cpu, cuda or webgpu, got "${ep}"`);
  const decoders = values.decoders.split(',').map((d) => d.trim());
  for (const d of decoders)
    if (d !== 'vae' && d !== 'taesd') fail(`--decoders: vae and/or taesd, got "${d}"`);

  const shape = name === 'sd-turbo' ? 'sd-turbo' : 'sdxl';
  const root = process.env.BENCH_MODELS_DIR ?? './data/bench-models';
  const b0 = performance.now();
  const dir = values.model ?? (await ensureDemoModel(path.join(root, shape), preset.build));
  const buildMs = performance.now() - b0;
  const marker = await readDemoMarker(dir);
  console.log(
    `preset ${name}: ${dir} (ready in ${f1(buildMs / 1000)} s; a rebuild happens only when missing)`,
  );
  if (marker !== undefined && preset.published !== undefined) {
    const built = marker.parameters as unknown as Record<string, number>;
    for (const [part, published] of Object.entries(preset.published)) {
      const n = built[part] ?? 0;
      console.log(
        `  ${part.padEnd(13)} ${(n / 1e6).toFixed(1).padStart(8)} M params (published ${(published / 1e6).toFixed(1)} M, ${((100 * n) / published).toFixed(1)} %)`,
      );
    }
    if (built.vaeDecoderTiny !== undefined)
      console.log(
        `  vaeDecoderTiny ${(built.vaeDecoderTiny / 1e6).toFixed(2)} M params (TAESD decoder: 1.22 M)`,
      );
    for (const a of APPROXIMATIONS) console.log(`  approximation: ${a}`);
  }

  const request: GenerateRequest = {
    prompts: Array.from({ length: batch }, (_, k) => `a lighthouse on a cliff at dusk, variation ${k}`),
    negative: '',
    seeds: Array.from({ length: batch }, (_, k) => 1000 + k),
    scheduler: preset.scheduler,
    steps,
    guidance: preset.guidance,
    width: size,
    height: size,
  };
  const threads = int('threads', values.threads, 0);
  const results: Record<string, unknown>[] = [];
  for (const decoder of decoders as ('vae' | 'taesd')[]) {
    const l0 = performance.now();
    const engine = await loadEngine(dir, {
      executionProvider: ep,
      deviceId: int('device-id', values['device-id'], 0),
      intraOpThreads: threads,
      decoder,
    });
    const loadMs = performance.now() - l0;
    try {
      // Warm-up at 1 image: the first run pays for arena growth and kernel selection.
      await engine.generate({ ...request, prompts: request.prompts.slice(0, 1), seeds: [1], steps: 1 });
      for (let r = 0; r < runs; r++) {
        const loadBefore = load();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const result = await engine.generate(request);
        const p0 = performance.now();
        for (const image of result.images) await encodePng(image);
        const pngMs = performance.now() - p0;
        const totalMs = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        // CPU time of this process (onnxruntime's threads included): on a shared host, cpu / threads is
        // what the grid would take with the cores to itself (the wall time measures the neighbours too).
        const cpuMs = (cpu.user + cpu.system) / 1000;
        const p = engine.lastProfile!;
        const outside = (sum(p.stepMs) - sum(p.unetRunMs)) / sum(p.stepMs);
        const row = {
          preset: name,
          decoder,
          batch,
          size,
          steps,
          ep,
          threads: threads === 0 ? availableParallelism() : threads,
          loadMs,
          textEncodeMs: p.textEncoderRunMs,
          tokenizeMs: p.tokenizeMs,
          stepMs: p.stepMs,
          unetRunMs: p.unetRunMs,
          decodeMsPerImage: sum(p.vaeRunMs) / p.vaeRunMs.length,
          decodeMs: result.timings.decodeMs,
          pngMs,
          totalMs,
          cpuMs,
          outsideOrtShare: outside,
          loadAverage: `${loadBefore} → ${load()}`,
        };
        results.push(row);
        console.log(
          `${name} ${size}² ×${batch} ${steps} step(s) decoder=${decoder}: text ${f1(p.textEncoderRunMs)} ms, steps [${p.stepMs.map(f1).join(', ')}] ms ` +
            `(outside session.run ${(outside * 100).toFixed(2)} %), decode ${f1(result.timings.decodeMs)} ms ` +
            `(${f1(row.decodeMsPerImage)}/image), PNG ${f1(pngMs)} ms, grid total ${f1(totalMs / 1000)} s ` +
            `(CPU ${f1(cpuMs / 1000)} s = ${f1(cpuMs / 1000 / row.threads)} s on ${row.threads} idle cores); ` +
            `load average ${row.loadAverage}`,
        );
      }
    } finally {
      await engine.close();
    }
  }
  console.log(
    `ep ${ep}, ${threads === 0 ? availableParallelism() : threads} threads on ${cpus()[0]?.model ?? 'unknown CPU'}; ` +
      `peak RSS ${f1(process.resourceUsage().maxRSS / 1024)} MiB`,
  );
  console.log(JSON.stringify({ preset: name, dir, results }));
}
