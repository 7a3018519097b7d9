/**
 * A minimal protobuf (proto2 wire format) encoder: just what writing ONNX files needs.
 *
 * Messages are built as lists of byte chunks, so nesting a message (tag + length + body) never copies
 * its body: large tensor payloads are referenced, not duplicated, until the final write.
 */

/** Protobuf wire types. */
export const WireType = {
  Varint: 0,
  Fixed64: 1,
  LengthDelimited: 2,
  Fixed32: 5,
} as const;

const textEncoder = new TextEncoder();

export class ProtoWriter {
  /** Finished chunks, in order. */
  private readonly chunks: Uint8Array[] = [];
  /** Bytes not yet flushed into `chunks` (small scalars accumulate here). */
  private pending: number[] = [];
  private flushedLength = 0;

  /** Total encoded length in bytes. */
  get length(): number {
    return this.flushedLength + this.pending.length;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.chunks.push(Uint8Array.from(this.pending));
    this.flushedLength += this.pending.length;
    this.pending = [];
  }

  private appendBytes(bytes: Uint8Array): void {
    // Small byte strings are copied into the pending buffer; large ones are kept by reference.
    if (bytes.length <= 64) {
      for (const b of bytes) this.pending.push(b);
      return;
    }
    this.flush();
    this.chunks.push(bytes);
    this.flushedLength += bytes.length;
  }

  /** Unsigned varint of a non-negative safe integer, or any int64 as a bigint (two's complement). */
  rawVarint(value: number | bigint): void {
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new RangeError(`varint: ${value} is not a safe integer`);
      if (value < 0) {
        this.rawVarint(BigInt.asUintN(64, BigInt(value)));
        return;
      }
      let v = value;
      while (v >= 0x80) {
        this.pending.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      this.pending.push(v);
      return;
    }
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.pending.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.pending.push(Number(v));
  }

  tag(field: number, wireType: number): void {
    this.rawVarint(field * 8 + wireType);
  }

  /** int32/int64/uint64/enum/bool field (negative numbers take 10 bytes, as protobuf specifies). */
  varint(field: number, value: number | bigint): void {
    this.tag(field, WireType.Varint);
    this.rawVarint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, WireType.Fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    for (const x of b) this.pending.push(x);
  }

  double(field: number, value: number): void {
    this.tag(field, WireType.Fixed64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    for (const x of b) this.pending.push(x);
  }

  fixed32(field: number, value: number): void {
    this.tag(field, WireType.Fixed32);
    const v = value >>> 0;
    this.pending.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
  }

  fixed64(field: number, value: number | bigint): void {
    this.tag(field, WireType.Fixed64);
    const v = BigInt.asUintN(64, BigInt(value));
    const lo = Number(v & 0xffff_ffffn);
    const hi = Number(v >> 32n);
    this.pending.push(lo & 0xff, (lo >>> 8) & 0xff, (lo >>> 16) & 0xff, lo >>> 24);
    this.pending.push(hi & 0xff, (hi >>> 8) & 0xff, (hi >>> 16) & 0xff, hi >>> 24);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, WireType.LengthDelimited);
    this.rawVarint(value.length);
    this.appendBytes(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, textEncoder.encode(value));
  }

  /** Embedded message: its chunks are appended by reference. */
  message(field: number, sub: ProtoWriter): void {
    this.tag(field, WireType.LengthDelimited);
    this.rawVarint(sub.length);
    sub.flush();
    this.flush();
    for (const c of sub.chunks) this.chunks.push(c);
    this.flushedLength += sub.flushedLength;
  }

  /** Packed repeated varints (int32/int64 fields declared `[packed = true]`). */
  packedVarints(field: number, values: ArrayLike<number | bigint>): void {
    const body = new ProtoWriter();
    for (let i = 0; i < values.length; i++) body.rawVarint(values[i]!);
    this.message(field, body);
  }

  /** Packed repeated floats (fixed32 each). */
  packedFloats(field: number, values: ArrayLike<number>): void {
    const f = Float32Array.from(values);
    this.bytes(field, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }

  /** Packed repeated doubles (fixed64 each). */
  packedDoubles(field: number, values: ArrayLike<number>): void {
    const f = Float64Array.from(values);
    this.bytes(field, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }

  /** The encoded chunks, in order (for streaming to a file without concatenating). */
  toChunks(): readonly Uint8Array[] {
    this.flush();
    return this.chunks;
  }

  /** The whole encoding as one buffer. */
  finish(): Uint8Array {
    const chunks = this.toChunks();
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

/** Host is little-endian on every platform Node supports, so typed-array bytes are wire order; checked once. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
