import type { Engine, GenerateOptions, GenerateRequest, GenerateResult } from '../../models/engine.ts';

/**
 * A real engine whose safety checker flags the images a prompt names: `nsfw2` in the prompt flags
 * image 2 (1-based), `nsfw1 nsfw3` images 1 and 3. The pixels are the real engine's; only the flags
 * are chosen, as a real checker would set them (see models/pipeline.ts), so the worker stores them
 * in the record's `result.nsfw` as it does in production.
 */
export class FlaggingEngine implements Engine {
  readonly inner: Engine;

  constructor(inner: Engine) {
    this.inner = inner;
  }
  get info() {
    return this.inner.info;
  }
  async generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    const result = await this.inner.generate(request, options);
    const named = new Set(
      [...(request.prompts[0] ?? '').matchAll(/\bnsfw(\d)\b/gu)].map((m) => Number(m[1]) - 1),
    );
    return { ...result, images: result.images.map((image, k) => ({ ...image, nsfw: named.has(k) })) };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
