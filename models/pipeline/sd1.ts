import type { Tensor } from 'onnxruntime-node';
import type { GenerateRequest } from '../engine.ts';
import type { LoadedModel, TextEncoderModel } from '../loader.ts';
import { intTensor, tokenIdTensor } from '../tensors.ts';
import type { ModelFamily, PromptConditioning } from './parts.ts';
import type { SessionRunner } from './session.ts';

/** CLIP's token window: every SD text encoder takes 77 ids. */
export const SEQ_LEN = 77;

/**
 * Stable Diffusion 1.x and 2.x text conditioning: diffusers' `encode_prompt` with one CLIP text encoder
 * (2.x differs only in its tokenizer's `!` padding, which the tokenizer reads from its config). Each
 * distinct text (negative and prompts) is tokenized and encoded once; the rows are laid out
 * [negative x B, prompt k ...] with guidance, [prompt k ...] without.
 */
export function sd1Family(model: LoadedModel, runner: SessionRunner): ModelFamily {
  return {
    async encodePrompt(request: GenerateRequest, cfg: boolean): Promise<PromptConditioning> {
      const batch = request.prompts.length;
      const t0 = performance.now();
      const texts = [...new Set(cfg ? [request.negative, ...request.prompts] : request.prompts)];
      const encodings = texts.map((t) => model.tokenizer.encode(t));
      const tokenizeMs = performance.now() - t0;

      const t1 = performance.now();
      const ids = encodings.map((e) => e.ids);
      const te = model.textEncoder;
      const embeddings = (await encodeTexts(te, runner, ids, [te.output], 'text encoder'))[0]!;
      const textEncodeMs = performance.now() - t1;
      const index = (text: string) => texts.indexOf(text);
      const hidden = embeddings[0]!.length / SEQ_LEN;

      const rows = cfg ? 2 * batch : batch;
      const rowSize = SEQ_LEN * hidden;
      const ehs = new Float32Array(rows * rowSize);
      for (let k = 0; k < batch; k++) {
        if (cfg) ehs.set(embeddings[index(request.negative)]!, k * rowSize);
        ehs.set(embeddings[index(request.prompts[k]!)]!, ((cfg ? batch : 0) + k) * rowSize);
      }
      return {
        unetInputs: [{ spec: model.unet.encoderHiddenStates, data: ehs, rowShape: [SEQ_LEN, hidden] }],
        truncatedTokens: request.prompts.map((p) => encodings[index(p)]!.truncatedTokens),
        negativeTruncatedTokens: cfg ? encodings[index(request.negative)]!.truncatedTokens : 0,
        tokenizeMs,
        textEncodeMs,
      };
    },
  };
}

/**
 * Per output, its rows (one per id row; e.g. [77 * hidden] for a hidden state), running the text
 * encoder in as few batches as it allows.
 */
export async function encodeTexts(
  te: TextEncoderModel,
  runner: SessionRunner,
  idRows: readonly Int32Array[],
  outputs: readonly string[],
  what: string,
): Promise<Float32Array[][]> {
  const limit = te.fixedBatch ?? idRows.length;
  const result: Float32Array[][] = outputs.map(() => []);
  for (let start = 0; start < idRows.length; start += limit) {
    const chunk = idRows.slice(start, start + limit);
    // A fixed-batch export needs exactly `limit` rows: pad with the first and drop the extra outputs.
    const padded = [...chunk];
    while (padded.length < limit) padded.push(chunk[0]!);
    const ids = new Int32Array(padded.length * SEQ_LEN);
    for (const [i, row] of padded.entries()) ids.set(row, i * SEQ_LEN);
    const feeds: Record<string, Tensor> = {
      [te.inputIds.name]: tokenIdTensor(te.inputIds.type, ids, [padded.length, SEQ_LEN]),
    };
    if (te.attentionMask !== null) {
      feeds[te.attentionMask.name] = intTensor(te.attentionMask.type, new Int32Array(ids.length).fill(1), [
        padded.length,
        SEQ_LEN,
      ]);
    }
    const outs = await runner.runOutputs(te.session, feeds, outputs, what);
    for (const [o, out] of outs.entries()) {
      const rowSize = out.length / padded.length;
      for (let i = 0; i < chunk.length; i++) result[o]!.push(out.slice(i * rowSize, (i + 1) * rowSize));
    }
  }
  return result;
}
