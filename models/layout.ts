/**
 * The ONNX Stable Diffusion folder layout, in one place: what the loader requires, what the downloader fetches
 * and checks, what the demo builder writes. No onnxruntime import, so listing models stays cheap.
 */

/** Files the pipeline cannot run without, relative to the model folder. */
export const REQUIRED_MODEL_FILES = [
  'text_encoder/model.onnx',
  'unet/model.onnx',
  'vae_decoder/model.onnx',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
  'scheduler/scheduler_config.json',
] as const;

/** Folders a downloader takes (all their files, external weights included); SDXL adds the `_2` ones. */
export const PIPELINE_FOLDERS = [
  'scheduler/',
  'tokenizer/',
  'text_encoder/',
  'unet/',
  'vae_decoder/',
  // Image-to-image (Vary, Upscale, image prompts) needs the encoder; text-to-image never opens it.
  'vae_encoder/',
  'text_encoder_2/',
  'tokenizer_2/',
] as const;
export const SAFETY_FOLDERS = ['safety_checker/', 'feature_extractor/'] as const;
/** Weights of other frameworks that may sit beside the ONNX files (.xml: OpenVINO IR); never needed. */
export const SKIPPED_EXTENSIONS = [
  '.safetensors',
  '.bin',
  '.ckpt',
  '.msgpack',
  '.h5',
  '.pt',
  '.pth',
  '.xml',
] as const;
