/**
 * CLIP-shaped text encoder: input_ids [B,77] → last_hidden_state [B,77,D] (+ pooler_output [B,D] at the
 * EOS position, as CLIPTextModel exports). Causal pre-LN transformer layers with quick-GELU MLPs.
 * The token embedding is factored (id mod 512, id div 512) to stay small at any vocabulary size.
 */

import { GraphBuilder } from '../onnx-builder/graph.ts';
import type { ModelSpec } from '../onnx-builder/onnx.ts';
import { attention, gelu, layerNorm, linear, type Net, quickGelu, randomParam } from './layers.ts';
import type { DemoModelOptions } from './options.ts';

export const SEQUENCE_LENGTH = 77;
const VOCAB_SIZE = 49408;
const EMBED_LOW = 512;
const EMBED_HIGH = Math.ceil(VOCAB_SIZE / EMBED_LOW);

export interface BuiltGraph {
  readonly model: ModelSpec;
  readonly parameters: number;
  /** Multiply–accumulates for one image at the reference resolution. */
  readonly macs: number;
}

/** Overrides for a second (SDXL) encoder, and the optimum-style outputs SDXL reads. */
export interface TextEncoderSpec {
  readonly name?: string;
  readonly hiddenSize?: number;
  readonly layers?: number;
  readonly heads?: number;
  readonly seedSalt?: number;
  /** Emit hidden_states.0..N (embeddings, then every layer), as optimum exports for SDXL. */
  readonly hiddenStates?: boolean;
  /** Emit text_embeds: pooled output through a bias-free projection (CLIPTextModelWithProjection). */
  readonly projection?: number;
}

export function buildTextEncoder(o: DemoModelOptions, spec: TextEncoderSpec = {}): BuiltGraph {
  const ft = o.fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder(spec.name ?? 'text_encoder', ft);
  const net: Net = { b, seed: o.seed ^ (spec.seedSalt ?? 0x7e47), macs: 0 };
  const D = spec.hiddenSize ?? o.hiddenSize;
  const layers = spec.layers ?? o.textLayers;
  const textHeads = spec.heads ?? o.textHeads;
  const act = o.textActivation === 'gelu' ? gelu : quickGelu;
  const hidden: string[] = [];
  const T = SEQUENCE_LENGTH;
  const ids = b.input('input_ids', o.inputIds, ['batch', T]);
  const ids32 = o.inputIds === 'int32' ? ids : b.cast(ids, 'int32');

  let h = b.scoped('embeddings', () => {
    const low = randomParam(net, 'token_low', [EMBED_LOW, D], Math.sqrt(3) * 0.8);
    const high = randomParam(net, 'token_high', [EMBED_HIGH, D], Math.sqrt(3) * 0.6);
    const pos = randomParam(net, 'position', [T, D], Math.sqrt(3) * 0.3);
    const lowIdx = b.op('Mod', [ids32, b.tensor('const_i32', 'int32', [], [EMBED_LOW], true)]);
    const highIdx = b.op('Div', [ids32, b.tensor('const_i32', 'int32', [], [EMBED_LOW], true)]);
    const tok = b.add(b.op('Gather', [low, lowIdx], { axis: { i: 0 } }), b.op('Gather', [high, highIdx]));
    return b.add(tok, pos);
  });

  // Causal mask: token i attends to tokens ≤ i (CLIP's text transformer is causal).
  const maskValues = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) maskValues[i * T + j] = -1e4;
  const mask = b.constFloat(maskValues, [T, T]);

  for (let l = 0; l < layers; l++) {
    hidden.push(h);
    h = b.scoped(`layers.${l}`, () => {
      const n1 = b.scoped('layer_norm1', () => layerNorm(net, h, D));
      const a = b.scoped('self_attn', () =>
        attention(net, n1, n1, {
          dim: D,
          contextDim: D,
          heads: textHeads,
          queryTokens: T,
          keyTokens: T,
          batch: 1,
          qkvBias: true,
          mask,
        }),
      );
      const r = b.add(h, a);
      const n2 = b.scoped('layer_norm2', () => layerNorm(net, r, D));
      const m = b.scoped('mlp', () => {
        const up = b.scoped('fc1', () => linear(net, n2, D, 4 * D, { rows: T }));
        return b.scoped('fc2', () => linear(net, act(net, up), 4 * D, D, { rows: T }));
      });
      return b.add(r, m);
    });
  }
  hidden.push(h);
  const last = b.scoped('final_layer_norm', () => layerNorm(net, h, D));
  b.output(last, 'last_hidden_state', ft, ['batch', T, D]);

  // pooler_output: the hidden state at the EOS token, which has the highest id (CLIP's argmax trick).
  const eos = b.op('ArgMax', [ids32], { axis: { i: 1 }, keepdims: { i: 1 } }); // [B,1]
  const positions = b.tensor(
    'positions',
    'int64',
    [1, T],
    Array.from({ length: T }, (_, i) => i),
    true,
  );
  const onehot = b.castFloat(b.op('Equal', [positions, eos])); // [B,T]
  const pooled = b.matmul(b.reshape(onehot, [0, 1, T]), last); // [B,1,D]
  const pooled2 = b.reshape(pooled, [0, D]);
  if (spec.projection === undefined) b.output(pooled2, 'pooler_output', ft, ['batch', D]);
  else {
    const p = spec.projection;
    const te = b.scoped('text_projection', () => linear(net, pooled2, D, p, { rows: 1, bias: false }));
    b.output(te, 'text_embeds', ft, ['batch', p]);
  }
  if (spec.hiddenStates === true) {
    hidden.forEach((hs, i) => {
      b.output(hs, `hidden_states.${i}`, ft, ['batch', T, D]);
    });
  }

  return {
    model: { graph: b.build(), docString: 'imagine-bot demo text encoder (procedural weights)' },
    parameters: b.parameters,
    macs: net.macs,
  };
}
