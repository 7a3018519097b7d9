/**
 * Reads the graph inputs and outputs (names, element types, shapes) of an ONNX file without loading it:
 * walks the protobuf fields and seeks past everything else, so a 2 GB model with inline weights costs a
 * few thousand small reads. Used to tell fp16 from fp32 models when listing them.
 */

import { open } from 'node:fs/promises';
import { DataType, type Dim, type ElemType, type ValueInfo } from './onnx.ts';

const ELEM_BY_CODE = new Map<number, ElemType>(
  Object.entries(DataType)
    .filter(([name]) => name !== 'string')
    .map(([name, code]) => [code, name as ElemType]),
);

export interface OnnxIo {
  readonly inputs: readonly (ValueInfo & { readonly elemCode: number })[];
  readonly outputs: readonly (ValueInfo & { readonly elemCode: number })[];
  readonly opsetVersion: number | undefined;
  readonly irVersion: number | undefined;
}

class Reader {
  private buf = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;
  constructor(
    private readonly fh: Awaited<ReturnType<typeof open>>,
    readonly size: number,
  ) {}

  private async fill(at: number, min: number): Promise<void> {
    if (at >= this.bufStart && at + min <= this.bufStart + this.buf.length) return;
    const len = Math.max(min, 64 * 1024);
    const out = new Uint8Array(Math.min(len, this.size - at));
    const { bytesRead } = await this.fh.read(out, 0, out.length, at);
    this.buf = out.subarray(0, bytesRead);
    this.bufStart = at;
    if (bytesRead < min) throw new Error('onnx inspect: unexpected end of file');
  }

  async byte(): Promise<number> {
    await this.fill(this.pos, 1);
    const b = this.buf[this.pos - this.bufStart]!;
    this.pos++;
    return b;
  }

  async varint(): Promise<number> {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = await this.byte();
      // Beyond 2^53 precision is lost, which only matters for values we never use (negative int64s).
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return result;
    }
    throw new Error('onnx inspect: bad varint');
  }

  async bytes(n: number): Promise<Uint8Array> {
    await this.fill(this.pos, n);
    const off = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.slice(off, off + n);
  }

  async skip(wire: number): Promise<void> {
    if (wire === 0) await this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) {
      // Not `this.pos += await …`: that would read pos before the length varint advances it.
      const n = await this.varint();
      this.pos += n;
    } else if (wire === 5) this.pos += 4;
    else throw new Error(`onnx inspect: unsupported wire type ${wire}`);
  }
}

/** Decodes fields of a small in-memory message. */
function* fields(bytes: Uint8Array): Generator<{ field: number; wire: number; value: number | Uint8Array }> {
  let p = 0;
  const varint = (): number => {
    let r = 0;
    let m = 1;
    for (;;) {
      const b = bytes[p++];
      if (b === undefined) throw new Error('onnx inspect: truncated message');
      r += (b & 0x7f) * m;
      m *= 128;
      if ((b & 0x80) === 0) return r;
    }
  };
  while (p < bytes.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) yield { field, wire, value: varint() };
    else if (wire === 2) {
      const n = varint();
      yield { field, wire, value: bytes.subarray(p, p + n) };
      p += n;
    } else if (wire === 1) p += 8;
    else if (wire === 5) p += 4;
    else throw new Error(`onnx inspect: unsupported wire type ${wire}`);
  }
}

const decoder = new TextDecoder();

function parseValueInfo(bytes: Uint8Array): ValueInfo & { elemCode: number } {
  let name = '';
  let elemCode = 0;
  let shape: Dim[] | undefined;
  for (const f of fields(bytes)) {
    if (f.field === 1 && f.value instanceof Uint8Array) name = decoder.decode(f.value);
    if (f.field !== 2 || !(f.value instanceof Uint8Array)) continue;
    for (const t of fields(f.value)) {
      if (t.field !== 1 || !(t.value instanceof Uint8Array)) continue; // tensor_type
      for (const tt of fields(t.value)) {
        if (tt.field === 1 && typeof tt.value === 'number') elemCode = tt.value;
        if (tt.field === 2 && tt.value instanceof Uint8Array) {
          shape = [];
          for (const d of fields(tt.value)) {
            if (d.field !== 1 || !(d.value instanceof Uint8Array)) continue;
            let dim: Dim = '?';
            for (const dv of fields(d.value)) {
              if (dv.field === 1 && typeof dv.value === 'number') dim = dv.value;
              if (dv.field === 2 && dv.value instanceof Uint8Array) dim = decoder.decode(dv.value);
            }
            shape.push(dim);
          }
        }
      }
    }
  }
  const elemType = ELEM_BY_CODE.get(elemCode) ?? 'float32';
  return shape === undefined ? { name, elemType, elemCode } : { name, elemType, elemCode, shape };
}

export async function readOnnxIo(path: string): Promise<OnnxIo> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const r = new Reader(fh, size);
    const inputs: (ValueInfo & { elemCode: number })[] = [];
    const outputs: (ValueInfo & { elemCode: number })[] = [];
    let opsetVersion: number | undefined;
    let irVersion: number | undefined;
    while (r.pos < size) {
      const key = await r.varint();
      const field = Math.floor(key / 8);
      const wire = key % 8;
      if (field === 1 && wire === 0) irVersion = await r.varint();
      else if (field === 8 && wire === 2) {
        const op = await r.bytes(await r.varint());
        let domain = '';
        let version: number | undefined;
        for (const f of fields(op)) {
          if (f.field === 1 && f.value instanceof Uint8Array) domain = decoder.decode(f.value);
          if (f.field === 2 && typeof f.value === 'number') version = f.value;
        }
        if (domain === '' || domain === 'ai.onnx') opsetVersion = version;
      } else if (field === 7 && wire === 2) {
        const end = (await r.varint()) + r.pos;
        while (r.pos < end) {
          const gk = await r.varint();
          const gf = Math.floor(gk / 8);
          const gw = gk % 8;
          if ((gf === 11 || gf === 12) && gw === 2) {
            const info = parseValueInfo(await r.bytes(await r.varint()));
            (gf === 11 ? inputs : outputs).push(info);
          } else {
            await r.skip(gw);
          }
        }
      } else {
        await r.skip(wire);
      }
    }
    return { inputs, outputs, opsetVersion, irVersion };
  } finally {
    await fh.close();
  }
}
