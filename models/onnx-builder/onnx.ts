/**
 * ONNX ModelProto encoding, field numbers from onnx/onnx.proto (IR version 8, opset 17 era):
 * ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto/TypeProto/TensorShapeProto,
 * AttributeProto, OperatorSetIdProto, StringStringEntryProto.
 *
 * Repeated scalars that onnx.proto does not mark `[packed = true]` (dims, attribute ints/floats) are
 * written unpacked, as protobuf's own proto2 serializer does. Tensor payloads always go in `raw_data`
 * (little-endian) or in an external data file.
 */

import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { float32ToFloat16Bits } from '../fp16.ts';
import { HOST_IS_LITTLE_ENDIAN, ProtoWriter } from './protobuf.ts';

/** TensorProto.DataType values. */
export const DataType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
} as const;

export type ElemType = Exclude<keyof typeof DataType, 'string'>;

/** Byte width of one element. */
export const ELEM_BYTES: Readonly<Record<ElemType, number>> = {
  float32: 4,
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  int32: 4,
  int64: 8,
  bool: 1,
  float16: 2,
  float64: 8,
};

/** A dimension: a fixed size, or a symbolic name (`dim_param`) such as `'batch'`. */
export type Dim = number | string;

export interface ValueInfo {
  readonly name: string;
  readonly elemType: ElemType;
  /** Omitted: unknown rank. */
  readonly shape?: readonly Dim[];
  readonly docString?: string;
}

/**
 * Element values of a tensor. float16 accepts float32 values (converted, round-to-nearest-even) or
 * raw float16 bit patterns as a Uint16Array; int64 accepts a BigInt64Array or plain safe integers.
 */
export type TensorValues =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array
  | readonly number[];

export interface TensorSpec {
  readonly name?: string;
  readonly elemType: ElemType;
  readonly dims: readonly number[];
  /** The values, or a function producing them when the file is written (keeps big weights out of memory). */
  readonly data: TensorValues | (() => TensorValues);
  readonly docString?: string;
  /** Never move to external data (constants that ort's shape inference reads at load time). */
  readonly keepInline?: boolean;
}

/** An attribute value; the key says its type (`{ i: 1 }` is an INT, `{ f: 1 }` a FLOAT). */
export type Attribute =
  | { readonly f: number }
  | { readonly i: number | bigint }
  | { readonly s: string }
  | { readonly t: TensorSpec }
  | { readonly floats: readonly number[] }
  | { readonly ints: readonly (number | bigint)[] }
  | { readonly strings: readonly string[] };

export interface NodeSpec {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  readonly attributes?: Readonly<Record<string, Attribute>>;
  readonly docString?: string;
}

export interface GraphSpec {
  readonly name: string;
  readonly nodes: readonly NodeSpec[];
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly initializers: readonly (TensorSpec & { readonly name: string })[];
  readonly valueInfo?: readonly ValueInfo[];
  readonly docString?: string;
}

export interface OpsetImport {
  readonly domain: string;
  readonly version: number;
}

export interface ModelSpec {
  readonly graph: GraphSpec;
  /** @defaultValue 8 (the IR version of opset 17) */
  readonly irVersion?: number;
  /** @defaultValue `[{ domain: '', version: 17 }]` */
  readonly opsetImports?: readonly OpsetImport[];
  /** @defaultValue 'imagine-bot onnx-builder' */
  readonly producerName?: string;
  readonly producerVersion?: string;
  readonly docString?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

export const DEFAULT_OPSET = 17;
const FLOAT_TYPES: ReadonlySet<ElemType> = new Set(['float32', 'float16', 'float64']);
export const DEFAULT_IR_VERSION = 8;

const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`bad tensor dim ${d}`);
    n *= d;
  }
  return n;
}

/** Byte size of a tensor's payload, known from its dims alone. */
export function tensorByteLength(spec: Pick<TensorSpec, 'elemType' | 'dims'>): number {
  return elementCount(spec.dims) * ELEM_BYTES[spec.elemType];
}

function viewBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The little-endian payload of a tensor, checked against its dims. */
export function tensorBytes(spec: TensorSpec): Uint8Array {
  if (!HOST_IS_LITTLE_ENDIAN) throw new Error('onnx-builder needs a little-endian host');
  const values = typeof spec.data === 'function' ? spec.data() : spec.data;
  const count = elementCount(spec.dims);
  if (values.length !== count) {
    throw new RangeError(
      `tensor ${spec.name ?? '(unnamed)'}: ${values.length} values for dims [${spec.dims.join(',')}]`,
    );
  }
  switch (spec.elemType) {
    case 'float32':
      return viewBytes(
        values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>),
      );
    case 'float64':
      return viewBytes(
        values instanceof Float64Array ? values : Float64Array.from(values as ArrayLike<number>),
      );
    case 'float16':
      return viewBytes(
        values instanceof Uint16Array
          ? values
          : float32ToFloat16Bits(
              values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>),
            ),
      );
    case 'int64':
      if (values instanceof BigInt64Array) return viewBytes(values);
      return viewBytes(BigInt64Array.from(values as ArrayLike<number>, (v) => BigInt(v)));
    case 'int32':
      return viewBytes(values instanceof Int32Array ? values : Int32Array.from(values as ArrayLike<number>));
    case 'int16':
      return viewBytes(values instanceof Int16Array ? values : Int16Array.from(values as ArrayLike<number>));
    case 'uint16':
      return viewBytes(
        values instanceof Uint16Array ? values : Uint16Array.from(values as ArrayLike<number>),
      );
    case 'int8':
      return viewBytes(values instanceof Int8Array ? values : Int8Array.from(values as ArrayLike<number>));
    case 'uint8':
    case 'bool':
      return viewBytes(values instanceof Uint8Array ? values : Uint8Array.from(values as ArrayLike<number>));
  }
}

/** Where an initializer's payload lives in an external data file. */
interface ExternalRef {
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

function encodeTensor(spec: TensorSpec, external?: ExternalRef): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of spec.dims) w.varint(1, d);
  w.varint(2, DataType[spec.elemType]);
  if (spec.name !== undefined) w.string(8, spec.name);
  if (spec.docString !== undefined) w.string(12, spec.docString);
  if (external === undefined) {
    w.bytes(9, tensorBytes(spec));
  } else {
    const entry = (key: string, value: string): void => {
      const e = new ProtoWriter();
      e.string(1, key);
      e.string(2, value);
      w.message(13, e);
    };
    entry('location', external.location);
    entry('offset', String(external.offset));
    entry('length', String(external.length));
    w.varint(14, 1); // DataLocation.EXTERNAL
  }
  return w;
}

function encodeAttribute(name: string, attr: Attribute): ProtoWriter {
  const w = new ProtoWriter();
  w.string(1, name);
  if ('f' in attr) {
    w.float(2, attr.f);
    w.varint(20, AttrType.FLOAT);
  } else if ('i' in attr) {
    w.varint(3, attr.i);
    w.varint(20, AttrType.INT);
  } else if ('s' in attr) {
    w.string(4, attr.s);
    w.varint(20, AttrType.STRING);
  } else if ('t' in attr) {
    w.message(5, encodeTensor(attr.t));
    w.varint(20, AttrType.TENSOR);
  } else if ('floats' in attr) {
    for (const f of attr.floats) w.float(7, f);
    w.varint(20, AttrType.FLOATS);
  } else if ('ints' in attr) {
    for (const i of attr.ints) w.varint(8, i);
    w.varint(20, AttrType.INTS);
  } else {
    for (const s of attr.strings) w.string(9, s);
    w.varint(20, AttrType.STRINGS);
  }
  return w;
}

function encodeNode(node: NodeSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of node.inputs) w.string(1, i);
  for (const o of node.outputs) w.string(2, o);
  if (node.name !== undefined) w.string(3, node.name);
  w.string(4, node.opType);
  for (const [name, attr] of Object.entries(node.attributes ?? {})) w.message(5, encodeAttribute(name, attr));
  if (node.docString !== undefined) w.string(6, node.docString);
  if (node.domain !== undefined && node.domain !== '') w.string(7, node.domain);
  return w;
}

function encodeValueInfo(info: ValueInfo): ProtoWriter {
  const tensor = new ProtoWriter();
  tensor.varint(1, DataType[info.elemType]);
  if (info.shape !== undefined) {
    const shape = new ProtoWriter();
    for (const d of info.shape) {
      const dim = new ProtoWriter();
      if (typeof d === 'number') dim.varint(1, d);
      else dim.string(2, d);
      shape.message(1, dim);
    }
    tensor.message(2, shape);
  }
  const type = new ProtoWriter();
  type.message(1, tensor);
  const w = new ProtoWriter();
  w.string(1, info.name);
  w.message(2, type);
  if (info.docString !== undefined) w.string(3, info.docString);
  return w;
}

function encodeGraph(graph: GraphSpec, externals: ReadonlyMap<string, ExternalRef>): ProtoWriter {
  const w = new ProtoWriter();
  for (const n of graph.nodes) w.message(1, encodeNode(n));
  w.string(2, graph.name);
  for (const t of graph.initializers) w.message(5, encodeTensor(t, externals.get(t.name)));
  if (graph.docString !== undefined) w.string(10, graph.docString);
  for (const i of graph.inputs) w.message(11, encodeValueInfo(i));
  for (const o of graph.outputs) w.message(12, encodeValueInfo(o));
  for (const v of graph.valueInfo ?? []) w.message(13, encodeValueInfo(v));
  return w;
}

function encodeModelProto(model: ModelSpec, externals: ReadonlyMap<string, ExternalRef>): ProtoWriter {
  const w = new ProtoWriter();
  w.varint(1, model.irVersion ?? DEFAULT_IR_VERSION);
  w.string(2, model.producerName ?? 'imagine-bot onnx-builder');
  if (model.producerVersion !== undefined) w.string(3, model.producerVersion);
  if (model.docString !== undefined) w.string(6, model.docString);
  w.message(7, encodeGraph(model.graph, externals));
  for (const op of model.opsetImports ?? [{ domain: '', version: DEFAULT_OPSET }]) {
    const o = new ProtoWriter();
    if (op.domain !== '') o.string(1, op.domain);
    o.varint(2, op.version);
    w.message(8, o);
  }
  for (const [key, value] of Object.entries(model.metadata ?? {})) {
    const e = new ProtoWriter();
    e.string(1, key);
    e.string(2, value);
    w.message(14, e);
  }
  return w;
}

/** Serialises a model with every initializer inline (protobuf caps this at 2 GiB). */
export function encodeModel(model: ModelSpec): Uint8Array {
  return encodeModelProto(model, new Map()).finish();
}

export interface ExternalDataOptions {
  /** File name of the data file, next to the model. @defaultValue `<model file name>_data` */
  readonly location?: string;
  /** Float initializers smaller than this many bytes (and all integer ones) stay inline. @defaultValue 1024 */
  readonly threshold?: number;
  /** Each payload starts at a multiple of this (4096 allows mmap). @defaultValue 4096 */
  readonly alignment?: number;
}

export interface WriteModelOptions {
  /** Store large initializers in a side file (TensorProto data_location EXTERNAL). */
  readonly externalData?: ExternalDataOptions | boolean;
}

export interface WrittenModel {
  readonly path: string;
  readonly bytes: number;
  /** Set when weights went to an external data file. */
  readonly externalDataPath?: string;
  readonly externalDataBytes?: number;
}

async function writeChunks(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const c of chunks) await fh.write(c);
  } finally {
    await fh.close();
  }
}

/**
 * Writes `model` to `path` (through a temporary file, renamed into place). With external data,
 * big initializers are produced one at a time and streamed to the data file, so a multi-gigabyte
 * model never sits in memory whole.
 */
export async function writeModel(
  path: string,
  model: ModelSpec,
  options: WriteModelOptions = {},
): Promise<WrittenModel> {
  await mkdir(dirname(path), { recursive: true });
  const ext = options.externalData;
  const externals = new Map<string, ExternalRef>();
  let dataPath: string | undefined;
  let dataBytes = 0;
  const tmpSuffix = `.tmp-${process.pid}`;
  if (ext !== undefined && ext !== false) {
    const o: ExternalDataOptions = ext === true ? {} : ext;
    const location = o.location ?? `${basename(path)}_data`;
    const threshold = o.threshold ?? 1024;
    const alignment = o.alignment ?? 4096;
    dataPath = join(dirname(path), location);
    const fh = await open(dataPath + tmpSuffix, 'w');
    try {
      for (const t of model.graph.initializers) {
        // Integer tensors (shapes, axes) stay inline: ort's shape inference must read them at load.
        if (t.keepInline === true || !FLOAT_TYPES.has(t.elemType) || tensorByteLength(t) < threshold)
          continue;
        const offset = Math.ceil(dataBytes / alignment) * alignment;
        const bytes = tensorBytes(t);
        await fh.write(bytes, 0, bytes.length, offset);
        externals.set(t.name, { location, offset, length: bytes.length });
        dataBytes = offset + bytes.length;
      }
    } finally {
      await fh.close();
    }
  }
  const proto = encodeModelProto(model, externals);
  try {
    await writeChunks(path + tmpSuffix, proto.toChunks());
    if (dataPath !== undefined) await rename(dataPath + tmpSuffix, dataPath);
    await rename(path + tmpSuffix, path);
  } catch (error) {
    await rm(path + tmpSuffix, { force: true });
    if (dataPath !== undefined) await rm(dataPath + tmpSuffix, { force: true });
    throw error;
  }
  return dataPath === undefined
    ? { path, bytes: proto.length }
    : { path, bytes: proto.length, externalDataPath: dataPath, externalDataBytes: dataBytes };
}
