import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../models/fp16.ts';
import { GraphBuilder } from '../../models/onnx-builder/graph.ts';
import { readOnnxIo } from '../../models/onnx-builder/inspect.ts';
import { encodeModel, type ModelSpec, writeModel } from '../../models/onnx-builder/onnx.ts';
import { ProtoWriter } from '../../models/onnx-builder/protobuf.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('ProtoWriter (protobuf wire format)', () => {
  // Byte strings from the protobuf encoding guide's worked examples.
  it('encodes varints, strings and embedded messages like the spec examples', () => {
    const a = new ProtoWriter();
    a.varint(1, 150);
    expect(hex(a.finish())).toBe('089601');
    const b = new ProtoWriter();
    b.string(2, 'testing');
    expect(hex(b.finish())).toBe('120774657374696e67');
    const inner = new ProtoWriter();
    inner.varint(1, 150);
    const c = new ProtoWriter();
    c.message(3, inner);
    expect(hex(c.finish())).toBe('1a03089601');
  });

  it('encodes negative int64 as 10-byte two’s complement, and fixed-width fields little-endian', () => {
    const w = new ProtoWriter();
    w.rawVarint(-1);
    expect(hex(w.finish())).toBe('ffffffffffffffffff01');
    const big = new ProtoWriter();
    big.rawVarint(2n ** 63n);
    expect(hex(big.finish())).toBe('80808080808080808001');
    const f = new ProtoWriter();
    f.float(1, 1);
    f.fixed32(2, 0xdeadbeef);
    f.fixed64(3, 1n);
    expect(hex(f.finish())).toBe(`0d0000803f15efbeadde${'19'}0100000000000000`);
  });

  it('keeps large byte strings by reference and counts lengths across chunks', () => {
    const payload = new Uint8Array(1000).fill(7);
    const inner = new ProtoWriter();
    inner.bytes(1, payload);
    const outer = new ProtoWriter();
    outer.message(2, inner);
    const out = outer.finish();
    expect(out.length).toBe(outer.length);
    // outer: tag 0x12, length 1003 (eb 07); inner: tag 0x0a, length 1000 (e8 07), then the payload
    expect(hex(out.subarray(0, 6))).toBe('12eb070ae807');
    expect(out[out.length - 1]).toBe(7);
  });
});

describe('ONNX models written by onnx-builder run in onnxruntime', () => {
  let dir = '';
  const sessions: ort.InferenceSession[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'onnx-builder-'));
  });
  afterAll(async () => {
    for (const s of sessions) await s.release();
    await rm(dir, { recursive: true, force: true });
  });

  /** y = LeakyRelu(x, 0.1) + c; t = Transpose(y)·w16; g = Gather(table, idx); r = Resize(x4, nearest). */
  function attributeModel(): ModelSpec {
    const g = new GraphBuilder('attrs');
    const x = g.input('x', 'float32', ['n', 3]);
    const c = g.op('Constant', [], {
      value: { t: { elemType: 'float32', dims: [3], data: Float32Array.from([1, 2, 3]) } },
    });
    const cf = g.op('Constant', [], { value_floats: { floats: [0.5, -0.5, 0.25] } });
    const ci = g.op('Constant', [], { value_ints: { ints: [2, 0] } });
    const leaky = g.op('LeakyRelu', [x], { alpha: { f: 0.1 } });
    const y = g.add(g.add(leaky, c), cf);
    const w16 = g.tensor('w16', 'float16', [3, 1], Float32Array.from([1, 0.5, -2]));
    const t = g.matmul(y, g.cast(w16, 'float32'));
    const table = g.tensor('table', 'float32', [4], Float32Array.from([10, 20, 30, 40]));
    const idx32 = g.tensor('idx32', 'int32', [2], Int32Array.from([3, 1]));
    const gathered = g.add(g.op('Gather', [table, idx32], { axis: { i: 0 } }), g.op('Gather', [table, ci]));
    const x4 = g.reshape(x, [1, 1, -1, 3]);
    const r = g.op('Resize', [x4, '', g.constFloat([1, 1, 2, 1], [4], 'float32')], {
      mode: { s: 'nearest' },
    });
    const cat = g.op('Concat', [y, y], { axis: { i: 1 } });
    g.output(y, 'y', 'float32', ['n', 3]);
    g.output(t, 't', 'float32', ['n', 1]);
    g.output(gathered, 'gathered', 'float32', [2]);
    g.output(r, 'r', 'float32', [1, 1, 'two_n', 3]);
    g.output(cat, 'cat', 'float32', ['n', 6]);
    return { graph: g.build() };
  }

  const X = Float32Array.from([1, -2, 3, -4, 5, -6]);
  const expectedY = (): number[] =>
    Array.from(X, (v, i) => (v < 0 ? 0.1 * v : v) + [1, 2, 3][i % 3]! + [0.5, -0.5, 0.25][i % 3]!);

  async function check(session: ort.InferenceSession): Promise<void> {
    const out = await session.run({ x: new ort.Tensor('float32', X, [2, 3]) });
    const y = expectedY();
    expect(Array.from(out.y!.data as Float32Array)).toEqual(y.map((v) => Math.fround(v)));
    const t = [0, 1].map((row) => y[row * 3]! * 1 + y[row * 3 + 1]! * 0.5 + y[row * 3 + 2]! * -2);
    expect(out.t!.dims).toEqual([2, 1]);
    (out.t!.data as Float32Array).forEach((v, i) => {
      expect(v).toBeCloseTo(t[i]!, 5);
    });
    expect(Array.from(out.gathered!.data as Float32Array)).toEqual([40 + 30, 20 + 10]);
    expect(out.r!.dims).toEqual([1, 1, 4, 3]);
    expect(Array.from(out.r!.data as Float32Array)).toEqual([1, -2, 3, 1, -2, 3, -4, 5, -6, -4, 5, -6]);
    expect(out.cat!.dims).toEqual([2, 6]);
  }

  it('int/float/ints/floats/string/tensor attributes, float16/int32/int64 initializers, symbolic dims', async () => {
    const s = await ort.InferenceSession.create(encodeModel(attributeModel()));
    sessions.push(s);
    const x = s.inputMetadata[0]!;
    expect(x.isTensor && x.shape).toEqual(['n', 3]);
    const r = s.outputMetadata.find((o) => o.name === 'r')!;
    expect(r.isTensor && r.shape).toEqual([1, 1, 'two_n', 3]);
    await check(s);
  });

  it('writeModel writes the same bytes as encodeModel, and readOnnxIo reads the I/O back', async () => {
    const path = join(dir, 'inline', 'model.onnx');
    const written = await writeModel(path, attributeModel());
    const bytes = await readFile(path);
    expect(Buffer.compare(bytes, Buffer.from(encodeModel(attributeModel())))).toBe(0);
    expect(written.bytes).toBe(bytes.length);
    const io = await readOnnxIo(path);
    expect(io.opsetVersion).toBe(17);
    expect(io.irVersion).toBe(8);
    expect(io.inputs.map((i) => [i.name, i.elemType, i.shape])).toEqual([['x', 'float32', ['n', 3]]]);
    expect(io.outputs.map((o) => o.name)).toEqual(['y', 't', 'gathered', 'r', 'cat']);
  });

  it('readOnnxIo agrees with onnxruntime on torch.onnx-exported models', async () => {
    for (const m of ['text_encoder', 'unet', 'vae_decoder']) {
      const path = join(import.meta.dirname, '../fixtures/tiny-sd', m, 'model.onnx');
      const io = await readOnnxIo(path);
      const s = await ort.InferenceSession.create(path);
      sessions.push(s);
      const meta = (list: readonly ort.InferenceSession.ValueMetadata[]): unknown[] =>
        list.map((v) => (v.isTensor ? [v.name, v.type, v.shape] : [v.name]));
      expect(io.inputs.map((i) => [i.name, i.elemType, i.shape])).toEqual(meta(s.inputMetadata));
      expect(io.outputs.map((o) => [o.name, o.elemType, o.shape])).toEqual(meta(s.outputMetadata));
    }
  });

  it('external data: weights in model.onnx_data at aligned offsets, loaded by ort from a file path', async () => {
    const g = new GraphBuilder('ext');
    const x = g.input('x', 'float32', ['batch', 64]);
    const w1 = g.param(
      'w1',
      [64, 60],
      Float32Array.from({ length: 3840 }, (_, i) => ((i % 17) - 8) / 64),
    );
    const w2 = g.param(
      'w2',
      [60, 8],
      Float32Array.from({ length: 480 }, (_, i) => ((i % 5) - 2) / 8),
    );
    const small = g.param('bias', [8], Float32Array.from([0.5, -1, 2, 0, 1, 1, 1, 1]));
    g.output(g.add(g.matmul(g.tanh(g.matmul(x, w1)), w2), small), 'y', 'float32', ['batch', 8]);
    const model: ModelSpec = { graph: g.build() };
    const path = join(dir, 'ext', 'model.onnx');
    const written = await writeModel(path, model, { externalData: true });
    expect(written.externalDataPath).toBe(join(dir, 'ext', 'model.onnx_data'));
    // w1 (15360 bytes) at 0, w2 (1920 bytes) at the next 4096 boundary; the 32-byte bias stays inline.
    expect(written.externalDataBytes).toBe(16384 + 1920);
    expect((await stat(written.externalDataPath!)).size).toBe(16384 + 1920);
    expect(written.bytes).toBeLessThan(1024);

    const input = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 128 }, (_, i) => Math.sin(i)),
      [2, 64],
    );
    const ext = await ort.InferenceSession.create(path);
    const inline = await ort.InferenceSession.create(encodeModel(model));
    sessions.push(ext, inline);
    const a = (await ext.run({ x: input })).y!.data as Float32Array;
    const b = (await inline.run({ x: input })).y!.data as Float32Array;
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('float16 graphs: float16 inputs, weights and outputs', async () => {
    const g = new GraphBuilder('half', 'float16');
    const x = g.input('x', 'float16', ['n', 2]);
    const w = g.param('w', [2, 2], Float32Array.from([1, 2, 3, 4]));
    g.output(g.add(g.matmul(x, w), g.scalar(0.5)), 'y', 'float16', ['n', 2]);
    const s = await ort.InferenceSession.create(encodeModel({ graph: g.build() }));
    sessions.push(s);
    const out = await s.run({
      x: new ort.Tensor('float16', float32ToFloat16Bits(Float32Array.from([1, 1, 0.5, -1])), [2, 2]),
    });
    expect(out.y!.type).toBe('float16');
    expect(Array.from(float16BitsToFloat32(out.y!.data as Uint16Array))).toEqual([4.5, 6.5, -2, -2.5]);
  });
});
