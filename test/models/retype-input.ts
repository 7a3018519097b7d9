import { readFile, writeFile } from 'node:fs/promises';
import { DataType } from '../../models/onnx-builder/index.ts';
import { ProtoWriter } from '../../models/onnx-builder/protobuf.ts';

/**
 * Rewrites an ONNX file so that one graph input takes another element type, the way some exports
 * declare it (Olive's int32 or float32 `input_ids`): the input is retyped and a Cast back to its old
 * type is put in front of the nodes that read it. Everything else is copied byte for byte, so the
 * model computes exactly what it did. For tests: a small proto2 field scanner, no dependency.
 */

interface Field {
  readonly no: number;
  readonly wire: number;
  /** The whole field: tag, length and payload. */
  readonly raw: Uint8Array;
  /** Length-delimited payload; for a varint, empty. */
  readonly payload: Uint8Array;
  readonly varint: bigint;
}

function readVarint(buf: Uint8Array, at: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (let i = at; ; i++) {
    const byte = buf[i];
    if (byte === undefined) throw new Error('truncated varint');
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, i + 1];
    shift += 7n;
  }
}

function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < buf.length) {
    const start = at;
    const [tag, afterTag] = readVarint(buf, at);
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    let payload: Uint8Array = new Uint8Array(0);
    let varint = 0n;
    if (wire === 0) [varint, at] = readVarint(buf, afterTag);
    else if (wire === 1) at = afterTag + 8;
    else if (wire === 5) at = afterTag + 4;
    else if (wire === 2) {
      const [length, afterLength] = readVarint(buf, afterTag);
      at = afterLength + Number(length);
      payload = buf.subarray(afterLength, at);
    } else throw new Error(`unsupported wire type ${wire}`);
    out.push({ no, wire, raw: buf.subarray(start, at), payload, varint });
  }
  return out;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function lengthDelimited(no: number, payload: Uint8Array): Uint8Array {
  const w = new ProtoWriter();
  w.bytes(no, payload);
  return w.finish();
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

/** ModelProto.graph = 7; GraphProto.node = 1, input = 11; NodeProto.input = 1; ValueInfoProto.name = 1, type = 2;
 * TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INPUT = 11;

function retypeValueInfo(info: Uint8Array, elemType: number): { bytes: Uint8Array; old: number } {
  let old = -1;
  const parts = fields(info).map((f) => {
    if (f.no !== 2) return f.raw;
    const type = fields(f.payload).map((t) => {
      if (t.no !== 1) return t.raw;
      const tensor = fields(t.payload).map((e) => {
        if (e.no !== 1) return e.raw;
        old = Number(e.varint);
        const w = new ProtoWriter();
        w.varint(1, elemType);
        return w.finish();
      });
      return lengthDelimited(1, concat(tensor));
    });
    return lengthDelimited(2, concat(type));
  });
  return { bytes: concat(parts), old };
}

/** Renames every node input called `from` to `to` (no subgraphs: CLIP text encoders have none). */
function renameNodeInput(node: Uint8Array, from: string, to: string): Uint8Array {
  const parts = fields(node).map((f) => {
    if (f.no !== 1 || text(f.payload) !== from) return f.raw;
    const w = new ProtoWriter();
    w.string(1, to);
    return w.finish();
  });
  return concat(parts);
}

function castNode(input: string, output: string, to: number): Uint8Array {
  const attribute = new ProtoWriter();
  attribute.string(1, 'to');
  attribute.varint(3, to); // i
  attribute.varint(20, 2); // type: INT
  const node = new ProtoWriter();
  node.string(1, input);
  node.string(2, output);
  node.string(3, `${input}_retyped_cast`);
  node.string(4, 'Cast');
  node.message(5, attribute);
  return lengthDelimited(GRAPH_NODE, node.finish());
}

/** Retypes graph input `name` of `file` to `type`, in place. Throws when the file has no such input. */
export async function retypeInput(
  file: string,
  name: string,
  type: 'int32' | 'int64' | 'float32' | 'float16',
): Promise<void> {
  const model = new Uint8Array(await readFile(file));
  const inner = `${name}__as_exported`;
  let found = false;
  const parts = fields(model).map((f) => {
    if (f.no !== MODEL_GRAPH) return f.raw;
    let cast: Uint8Array = new Uint8Array(0);
    const graph = fields(f.payload).map((g) => {
      const inputName = g.no === GRAPH_INPUT ? fields(g.payload).find((v) => v.no === 1) : undefined;
      if (inputName !== undefined && text(inputName.payload) === name) {
        const { bytes, old } = retypeValueInfo(g.payload, DataType[type]);
        found = true;
        cast = castNode(name, inner, old);
        return lengthDelimited(GRAPH_INPUT, bytes);
      }
      if (g.no !== GRAPH_NODE) return g.raw;
      return lengthDelimited(GRAPH_NODE, renameNodeInput(g.payload, name, inner));
    });
    if (!found) throw new Error(`${file} has no graph input ${name}`);
    // First of all fields, so it precedes every node that reads it (inputs follow nodes in the file).
    return lengthDelimited(MODEL_GRAPH, concat([cast, ...graph]));
  });
  await writeFile(file, concat(parts));
}
