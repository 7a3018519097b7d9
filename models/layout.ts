/**
 * The SD 1.x ONNX folder layout, in one place: what the loader requires, what the downloader fetches
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
