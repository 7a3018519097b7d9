/**
 * Graph-building helpers on top of the ONNX encoder: unique value names, initializers in the graph's
 * float type (float32 or float16), and shorthands for the handful of ops the demo models use.
 */

import {
  type Attribute,
  DataType,
  type Dim,
  type ElemType,
  type GraphSpec,
  type NodeSpec,
  type TensorSpec,
  type TensorValues,
  type ValueInfo,
} from './onnx.ts';

export type FloatType = 'float32' | 'float16';

type Attrs = Readonly<Record<string, Attribute>>;

export class GraphBuilder {
  readonly name: string;
  /** Element type of weights, constants and activations. */
  readonly floatType: FloatType;
  private readonly nodes: NodeSpec[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly initializers: (TensorSpec & { readonly name: string })[] = [];
  private readonly used = new Set<string>();
  private readonly counters = new Map<string, number>();
  private readonly scopes: string[] = [];
  private readonly constCache = new Map<string, string>();
  private paramCount = 0;

  constructor(name: string, floatType: FloatType = 'float32') {
    this.name = name;
    this.floatType = floatType;
  }

  /** Number of weight values added with `param` (what a framework would call parameters). */
  get parameters(): number {
    return this.paramCount;
  }

  /** Runs `fn` with `scope` prefixed to every generated name (e.g. `down.0/conv1/Conv_3`). */
  scoped<T>(scope: string, fn: () => T): T {
    this.scopes.push(scope);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** A fresh value name under the current scope. */
  fresh(base: string): string {
    const prefix = this.scopes.length > 0 ? `${this.scopes.join('/')}/` : '';
    const full = `${prefix}${base}`;
    if (!this.used.has(full)) {
      this.used.add(full);
      return full;
    }
    let n = this.counters.get(full) ?? 1;
    while (this.used.has(`${full}_${n}`)) n++;
    this.counters.set(full, n + 1);
    this.used.add(`${full}_${n}`);
    return `${full}_${n}`;
  }

  input(name: string, elemType: ElemType, shape: readonly Dim[]): string {
    if (this.used.has(name)) throw new Error(`duplicate graph input ${name}`);
    this.used.add(name);
    this.inputs.push({ name, elemType, shape });
    return name;
  }

  /** Declares `value` as the graph output `name` (adding an Identity when the names differ). */
  output(value: string, name: string, elemType: ElemType, shape: readonly Dim[]): void {
    let v = value;
    if (value !== name) {
      if (this.used.has(name)) throw new Error(`output name ${name} already used`);
      this.used.add(name);
      this.nodes.push({ opType: 'Identity', inputs: [value], outputs: [name], name: `${name}/Identity` });
      v = name;
    }
    this.outputs.push({ name: v, elemType, shape });
  }

  /** Any initializer, stored exactly as given. */
  tensor(
    base: string,
    elemType: ElemType,
    dims: readonly number[],
    data: TensorValues | (() => TensorValues),
    keepInline = false,
  ): string {
    const name = this.fresh(base);
    this.initializers.push(
      keepInline ? { name, elemType, dims, data, keepInline } : { name, elemType, dims, data },
    );
    return name;
  }

  /** A weight in the graph's float type; counted in `parameters`. */
  param(base: string, dims: readonly number[], data: Float32Array | (() => Float32Array)): string {
    this.paramCount += dims.reduce((a, b) => a * b, 1);
    return this.tensor(base, this.floatType, dims, data);
  }

  /** A float constant, by default in the graph's float type (shared when identical). */
  constFloat(
    values: readonly number[] | Float32Array,
    dims: readonly number[] = [values.length],
    elemType: FloatType = this.floatType,
  ): string {
    const key = `${elemType}:${dims.join(',')}:${Array.from(values).join(',')}`;
    const cached = this.constCache.get(key);
    if (cached !== undefined) return cached;
    const name = this.tensor('const', elemType, dims, Float32Array.from(values), true);
    this.constCache.set(key, name);
    return name;
  }

  /** A float scalar constant (rank 0). */
  scalar(value: number): string {
    return this.constFloat([value], []);
  }

  /** An int64 constant (shared when identical), e.g. shapes and axes. */
  constInt64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join(',')}:${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached !== undefined) return cached;
    const name = this.tensor('const_i64', 'int64', dims, values, true);
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node with `outputs` fresh outputs; returns their names. */
  opN(opType: string, inputs: readonly string[], outputs: number, attributes?: Attrs): string[] {
    const nodeName = this.fresh(opType);
    const outs = Array.from({ length: outputs }, (_, i) =>
      i === 0 ? `${nodeName}:out` : `${nodeName}:out${i}`,
    );
    for (const o of outs) this.used.add(o);
    const node: NodeSpec =
      attributes === undefined
        ? { opType, inputs, outputs: outs, name: nodeName }
        : { opType, inputs, outputs: outs, name: nodeName, attributes };
    this.nodes.push(node);
    return outs;
  }

  /** Adds a single-output node; returns its output name. */
  op(opType: string, inputs: readonly string[], attributes?: Attrs): string {
    return this.opN(opType, inputs, 1, attributes)[0]!;
  }

  // Shorthands for common ops.
  add(a: string, b: string): string {
    return this.op('Add', [a, b]);
  }
  sub(a: string, b: string): string {
    return this.op('Sub', [a, b]);
  }
  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }
  div(a: string, b: string): string {
    return this.op('Div', [a, b]);
  }
  matmul(a: string, b: string): string {
    return this.op('MatMul', [a, b]);
  }
  sigmoid(x: string): string {
    return this.op('Sigmoid', [x]);
  }
  tanh(x: string): string {
    return this.op('Tanh', [x]);
  }
  /** x * sigmoid(x), as torch.onnx exports SiLU at opset 17. */
  silu(x: string): string {
    return this.mul(x, this.sigmoid(x));
  }
  reshape(x: string, shape: readonly number[]): string {
    return this.op('Reshape', [x, this.constInt64(shape)]);
  }
  transpose(x: string, perm: readonly number[]): string {
    return this.op('Transpose', [x], { perm: { ints: perm } });
  }
  cast(x: string, to: ElemType): string {
    return this.op('Cast', [x], { to: { i: DataType[to] } });
  }
  /** Cast to the graph's float type. */
  castFloat(x: string): string {
    return this.cast(x, this.floatType);
  }
  reduceMean(x: string, axes: readonly number[], keepdims = true): string {
    // opset 17 ReduceMean takes axes as an attribute (the input form arrived in opset 18).
    return this.op('ReduceMean', [x], { axes: { ints: axes }, keepdims: { i: keepdims ? 1 : 0 } });
  }
  softmax(x: string, axis = -1): string {
    return this.op('Softmax', [x], { axis: { i: axis } });
  }
  shape(x: string): string {
    return this.op('Shape', [x]);
  }

  build(): GraphSpec {
    return {
      name: this.name,
      nodes: this.nodes,
      inputs: this.inputs,
      outputs: this.outputs,
      initializers: this.initializers,
    };
  }
}
