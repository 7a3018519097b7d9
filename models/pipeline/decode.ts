import type { Tensor } from 'onnxruntime-node';
import { ErrorCode, InternalError } from '../../core/errors.ts';
import type { RgbImage } from '../engine.ts';
import { clipPixelValues, vaeOutputToRgb } from '../image.ts';
import type { LoadedModel, SafetyCheckerModel } from '../loader.ts';
import { floatTensor } from '../tensors.ts';
import { cancelled } from './errors.ts';
import type { SessionRunner } from './session.ts';

/** From final latents to pictures: the VAE decoder, then the optional safety checker. */

const f = Math.fround;

export interface DecodedImages {
  readonly rgb: Uint8Array[];
  readonly vaeRunMs: readonly number[];
}

/**
 * VAE decode, one image at a time (as diffusers' ONNX pipeline does; bounds memory at large sizes), with
 * the model's configured decoder. The tiny autoencoder (AutoencoderTiny, scaling_factor 1.0) takes the
 * latents as the UNet made them; the full VAE takes them divided by its scaling_factor.
 */
export async function decodeLatents(
  model: LoadedModel,
  runner: SessionRunner,
  latents: Float32Array,
  size: { readonly batch: number; readonly width: number; readonly height: number },
  signal: AbortSignal | undefined,
  which: 'vae' | 'taesd' = model.decoder,
): Promise<DecodedImages> {
  const tiny = which === 'taesd' ? model.tinyDecoder : null;
  if (which === 'taesd' && tiny === null)
    throw new InternalError(ErrorCode.Internal, 'no tiny decoder loaded');
  const vae = tiny ?? model.vaeDecoder;
  const channels = model.latentChannels;
  const lh = size.height / model.vaeScaleFactor;
  const lw = size.width / model.vaeScaleFactor;
  const perImage = channels * lh * lw;
  const vaeRunMs: number[] = [];
  const rgb: Uint8Array[] = [];
  const sf = f(tiny === null ? model.vaeScalingFactor : 1);
  for (let k = 0; k < size.batch; k++) {
    if (signal?.aborted) throw cancelled();
    const scaled = new Float32Array(perImage);
    const off = k * perImage;
    for (let i = 0; i < perImage; i++) scaled[i] = f(latents[off + i]! / sf);
    const r0 = performance.now();
    const feeds = { [vae.latent.name]: floatTensor(vae.latent.type, scaled, [1, channels, lh, lw]) };
    const decoded = await runner.run(
      vae.session,
      feeds,
      vae.output,
      tiny === null ? 'VAE decoder' : 'tiny decoder',
    );
    vaeRunMs.push(performance.now() - r0);
    rgb.push(vaeOutputToRgb(decoded, 0, size.width, size.height));
  }
  return { rgb, vaeRunMs };
}

/** Runs the safety checker on each image; flagged images are blacked out in place, as diffusers does. */
export async function checkImages(sc: SafetyCheckerModel, images: readonly RgbImage[]): Promise<boolean[]> {
  const nsfw: boolean[] = [];
  for (const image of images) {
    const flagged = await runSafetyChecker(sc, image);
    nsfw.push(flagged);
    if (flagged) image.data.fill(0);
  }
  return nsfw;
}

async function runSafetyChecker(sc: SafetyCheckerModel, image: RgbImage): Promise<boolean> {
  const clip = await clipPixelValues(image, sc.preprocess);
  const hwc = new Float32Array(image.data.length);
  for (let i = 0; i < hwc.length; i++) hwc[i] = image.data[i]! / 255;
  const feeds = {
    [sc.clipInput.name]: floatTensor(sc.clipInput.type, clip.pixels, [1, 3, clip.height, clip.width]),
    [sc.images.name]: floatTensor(sc.images.type, hwc, [1, image.height, image.width, 3]),
  };
  let outputs: Record<string, Tensor>;
  try {
    outputs = await sc.session.run(feeds, [sc.nsfwOutput]);
  } catch (error) {
    throw new InternalError(ErrorCode.Inference, `safety checker failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const flag = outputs[sc.nsfwOutput];
  if (flag === undefined) throw new InternalError(ErrorCode.Inference, 'safety checker returned no flag');
  const data = flag.data as ArrayLike<unknown>;
  return Boolean(data[0]);
}
