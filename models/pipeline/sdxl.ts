import type { GenerateRequest } from '../engine.ts';
import type { LoadedModel } from '../loader.ts';
import type { ClipTokenizer } from '../tokenizer.ts';
import type { ModelFamily, PromptConditioning, UnetConstantInput } from './parts.ts';
import { encodeTexts, SEQ_LEN } from './sd1.ts';
import type { SessionRunner } from './session.ts';

/**
 * SDXL text conditioning: diffusers' `StableDiffusionXLPipeline.encode_prompt` and `_get_add_time_ids`.
 * Both text encoders run on each distinct text; the UNet gets their penultimate hidden states side by
 * side ([77, d1 + d2]), the second encoder's pooled `text_embeds`, and `time_ids` = (original size, crop
 * top-left, target size) = (h, w, 0, 0, h, w). With `force_zeros_for_empty_prompt` and no negative prompt
 * at all, the unconditional rows are zeros, pooled included; an explicit empty negative is encoded.
 */

interface Encoded {
  /** [77 * (d1 + d2)] per text. */
  readonly hidden: Float32Array[];
  /** [pooled dim] per text. */
  readonly pooled: Float32Array[];
}

export function sdxlFamily(model: LoadedModel, runner: SessionRunner): ModelFamily {
  const second = model.second;
  if (second === null) throw new Error('sdxlFamily needs a model with a second text encoder');
  const te1 = model.textEncoder;
  const te2 = second.textEncoder;
  const { unet } = model;
  const textEmbedsSpec = unet.textEmbeds!;
  const timeIdsSpec = unet.timeIds!;

  const encode = async (
    texts: readonly string[],
    tok1: ClipTokenizer,
    tok2: ClipTokenizer,
  ): Promise<Encoded> => {
    const ids1 = texts.map((t) => tok1.encode(t).ids);
    const ids2 = texts.map((t) => tok2.encode(t).ids);
    const [h1] = await encodeTexts(te1, runner, ids1, [te1.penultimate!], 'text encoder');
    const [h2, pooled] = await encodeTexts(
      te2,
      runner,
      ids2,
      [te2.penultimate!, te2.textEmbeds!],
      'second text encoder',
    );
    const hidden = texts.map((_, i) => {
      const a = h1![i]!;
      const b = h2![i]!;
      const d1 = a.length / SEQ_LEN;
      const d2 = b.length / SEQ_LEN;
      const row = new Float32Array(SEQ_LEN * (d1 + d2));
      for (let s = 0; s < SEQ_LEN; s++) {
        row.set(a.subarray(s * d1, (s + 1) * d1), s * (d1 + d2));
        row.set(b.subarray(s * d2, (s + 1) * d2), s * (d1 + d2) + d1);
      }
      return row;
    });
    return { hidden, pooled: pooled! };
  };

  return {
    async encodePrompt(request: GenerateRequest, cfg: boolean): Promise<PromptConditioning> {
      const batch = request.prompts.length;
      const zeroNegative =
        cfg && model.forceZerosForEmptyPrompt && request.negative === '' && request.negativeGiven !== true;
      const encodeNegative = cfg && !zeroNegative;
      const t0 = performance.now();
      const texts = [...new Set(encodeNegative ? [request.negative, ...request.prompts] : request.prompts)];
      // Token counts only, for truncation reports; encode() below tokenizes again (cached words).
      const counts = texts.map((t) =>
        Math.max(model.tokenizer.encode(t).truncatedTokens, second.tokenizer.encode(t).truncatedTokens),
      );
      const tokenizeMs = performance.now() - t0;

      const t1 = performance.now();
      const encoded = await encode(texts, model.tokenizer, second.tokenizer);
      const textEncodeMs = performance.now() - t1;
      const index = (text: string) => texts.indexOf(text);
      const hiddenSize = encoded.hidden[0]!.length;
      const pooledSize = encoded.pooled[0]!.length;

      const rows = cfg ? 2 * batch : batch;
      const ehs = new Float32Array(rows * hiddenSize);
      const pooled = new Float32Array(rows * pooledSize);
      const timeIds = new Float32Array(rows * 6);
      const { height, width } = request;
      for (let r = 0; r < rows; r++) timeIds.set([height, width, 0, 0, height, width], r * 6);
      for (let k = 0; k < batch; k++) {
        // Zero unconditional rows are what the fresh arrays already hold.
        if (encodeNegative) {
          ehs.set(encoded.hidden[index(request.negative)]!, k * hiddenSize);
          pooled.set(encoded.pooled[index(request.negative)]!, k * pooledSize);
        }
        const row = (cfg ? batch : 0) + k;
        const p = index(request.prompts[k]!);
        ehs.set(encoded.hidden[p]!, row * hiddenSize);
        pooled.set(encoded.pooled[p]!, row * pooledSize);
      }
      const unetInputs: UnetConstantInput[] = [
        { spec: unet.encoderHiddenStates, data: ehs, rowShape: [SEQ_LEN, hiddenSize / SEQ_LEN] },
        { spec: textEmbedsSpec, data: pooled, rowShape: [pooledSize] },
        { spec: timeIdsSpec, data: timeIds, rowShape: [6] },
      ];
      return {
        unetInputs,
        truncatedTokens: request.prompts.map((p) => counts[index(p)]!),
        negativeTruncatedTokens: encodeNegative ? counts[index(request.negative)]! : 0,
        tokenizeMs,
        textEncodeMs,
      };
    },
  };
}
