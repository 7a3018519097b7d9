export { type FloatType, GraphBuilder } from './graph.ts';
export { type OnnxIo, readOnnxIo } from './inspect.ts';
export {
  type Attribute,
  DataType,
  DEFAULT_IR_VERSION,
  DEFAULT_OPSET,
  type Dim,
  type ElemType,
  type ExternalDataOptions,
  encodeModel,
  type GraphSpec,
  type ModelSpec,
  type NodeSpec,
  type OpsetImport,
  type TensorSpec,
  type TensorValues,
  tensorByteLength,
  tensorBytes,
  type ValueInfo,
  type WriteModelOptions,
  type WrittenModel,
  writeModel,
} from './onnx.ts';
export { ProtoWriter, WireType } from './protobuf.ts';
