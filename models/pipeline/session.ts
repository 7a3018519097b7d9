import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { ErrorCode, InternalError } from '../../core/errors.ts';
import { tensorToFloat32 } from '../tensors.ts';

/**
 * Runs one output of an onnxruntime session as float32, turning failures into E_INFERENCE errors that
 * say which part failed, and counting the time spent inside `session.run` (the step-overhead profile).
 */
export class SessionRunner {
  /** Milliseconds spent inside session.run since this runner was created. */
  totalMs = 0;

  async run(
    session: InferenceSession,
    feeds: Record<string, Tensor>,
    output: string,
    what: string,
  ): Promise<Float32Array> {
    return (await this.runOutputs(session, feeds, [output], what))[0]!;
  }

  /** Several outputs of one run (SDXL's second text encoder: hidden state and pooled embedding). */
  async runOutputs(
    session: InferenceSession,
    feeds: Record<string, Tensor>,
    names: readonly string[],
    what: string,
  ): Promise<Float32Array[]> {
    let outputs: Record<string, Tensor>;
    const start = performance.now();
    try {
      outputs = await session.run(feeds, [...names]);
    } catch (error) {
      throw new InternalError(ErrorCode.Inference, `${what} failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      this.totalMs += performance.now() - start;
    }
    return names.map((name) => {
      const tensor = outputs[name];
      if (tensor === undefined) throw new InternalError(ErrorCode.Inference, `${what} returned no ${name}`);
      return tensorToFloat32(tensor, what);
    });
  }
}
