import { Tensor } from 'onnxruntime-node';
import { ErrorCode, InternalError } from '../core/errors.ts';
import { float16BitsToFloat32, float32ToFloat16Bits } from './fp16.ts';

/**
 * Conversions between the pipeline's float32 arrays and whatever element type a model declares.
 * Pipeline math stays float32; only tensors crossing into onnxruntime take the model's type.
 */

export type FloatElement = 'float32' | 'float16';
export type IntElement = 'int32' | 'int64';

export function isFloatElement(type: string): type is FloatElement {
  return type === 'float32' || type === 'float16';
}

export function isIntElement(type: string): type is IntElement {
  return type === 'int32' || type === 'int64';
}

/** A float tensor of `type` holding `data` (converted to float16 bits when the model wants float16). */
export function floatTensor(type: FloatElement, data: Float32Array, dims: readonly number[]): Tensor {
  if (type === 'float32') return new Tensor('float32', data, dims);
  return new Tensor('float16', float32ToFloat16Bits(data), dims);
}

/** An integer tensor of `type`; values must be integers (truncated toward zero, as numpy's astype does). */
export function intTensor(type: IntElement, data: ArrayLike<number>, dims: readonly number[]): Tensor {
  if (type === 'int32') {
    const out = new Int32Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = Math.trunc(data[i]!);
    return new Tensor('int32', out, dims);
  }
  const out = new BigInt64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = BigInt(Math.trunc(data[i]!));
  return new Tensor('int64', out, dims);
}

/** Element types a text encoder's `input_ids` may take: integers, or float32 (some Olive exports). */
export const TOKEN_ID_ELEMENTS = ['int64', 'int32', 'float32'] as const;
export type TokenIdElement = (typeof TOKEN_ID_ELEMENTS)[number];

export function isTokenIdElement(type: string): type is TokenIdElement {
  return (TOKEN_ID_ELEMENTS as readonly string[]).includes(type);
}

/**
 * Token ids as the model declares them. float32 holds every CLIP id exactly (all are below 2^24);
 * float16 could not (above 2048 it skips integers), so it is not among the types.
 */
export function tokenIdTensor(type: TokenIdElement, ids: Int32Array, dims: readonly number[]): Tensor {
  if (type === 'float32') return new Tensor('float32', Float32Array.from(ids), dims);
  return intTensor(type, ids, dims);
}

/** A numeric tensor of any supported element type, holding `values` (used for timesteps). */
export function numericTensor(type: string, values: ArrayLike<number>, dims: readonly number[]): Tensor {
  if (isFloatElement(type)) return floatTensor(type, Float32Array.from(values), dims);
  if (isIntElement(type)) return intTensor(type, values, dims);
  if (type === 'float64') return new Tensor('float64', Float64Array.from(values), dims);
  throw new InternalError(ErrorCode.ModelLoad, `unsupported tensor element type ${type}`);
}

/** The values of a float output as float32 (float16 outputs are widened exactly). */
export function tensorToFloat32(tensor: Tensor, what: string): Float32Array {
  const data = tensor.data as unknown;
  if (tensor.type === 'float32' && data instanceof Float32Array) return data;
  if (tensor.type === 'float16') {
    if (data instanceof Uint16Array) return float16BitsToFloat32(data);
    // Runtimes with a native Float16Array hand out numbers already.
    if (ArrayBuffer.isView(data)) return Float32Array.from(data as unknown as ArrayLike<number>);
  }
  if (tensor.type === 'float64' && data instanceof Float64Array) return Float32Array.from(data);
  throw new InternalError(
    ErrorCode.Inference,
    `${what} returned a ${tensor.type} tensor; expected float32 or float16`,
  );
}
