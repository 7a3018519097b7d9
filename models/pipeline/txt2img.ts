import type { LatentsContext, LatentsMode, StartLatents } from './parts.ts';

const f = Math.fround;

/** Text-to-image start latents: diffusers' `prepare_latents`, noise from generator k times init_noise_sigma. */
export const textToImage: LatentsMode = {
  prepareLatents({ request, scheduler, generators, perImage }: LatentsContext): StartLatents {
    const batch = request.prompts.length;
    const latents = new Float32Array(batch * perImage);
    const initSigma = f(scheduler.initNoiseSigma);
    for (let k = 0; k < batch; k++) {
      const noise = generators[k]!.randn(perImage);
      const off = k * perImage;
      for (let i = 0; i < perImage; i++) latents[off + i] = f(noise[i]! * initSigma);
    }
    return { latents, firstStep: 0 };
  },
};
