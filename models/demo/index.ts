export {
  type BuiltDemoModel,
  buildDemoModel,
  DEMO_MARKER_FILE,
  DEMO_MODEL_VERSION,
  type DemoCost,
  type DemoMarker,
  describeDemoModel,
} from './build.ts';
export { ensureDemoModel, isDemoModelCurrent, readDemoMarker } from './ensure.ts';
export {
  type BuildDemoOptions,
  DEMO_DEFAULTS,
  type DemoModelOptions,
  type DemoScale,
  resolveDemoOptions,
  SD15_PRESET,
  type TimestepInput,
} from './options.ts';
export { buildTinyDecoder, TINY_DECODER_CONFIG, writeTinyDecoder } from './taesd.ts';
export { alphasCumprod } from './unet.ts';
export { SCALING_FACTOR } from './vae.ts';
