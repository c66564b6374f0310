/**
 * What a loaded model's weights and metadata tell its jobs beyond ModelDetection: the UNet's
 * size multiple, the text encoder's layers, the VAE's halves and latent scale, the attention
 * heads shapes cannot tell, and (SD2.x files that do not say) the probed prediction. Each is
 * worked out once, when a job first needs it.
 */
import type { AttentionHeads } from './diffusers-config.js';
import { isCount } from './diffusers-config.js';
import { ModelCompatibilityError } from './errors.js';
import type { ModelDetection } from './model-detect.js';
import { FAMILIES, TEXT_ENCODER_PLACES, familyProfile } from './families.js';
import type { NativeArchitecture, NativeModel, NativeTextEncoderParams } from './native.js';
import { probePrediction } from './prediction-probe.js';

/** What a generate job takes that the weights' shapes cannot tell. */
export interface Architecture {
  unetHeads: number;
  unetHeadDim: number;
  /** The text encoders in the order their hidden states are joined, without clipSkip (an option). */
  textEncoders: Array<Omit<NativeTextEncoderParams, 'clipSkip'>>;
  vaeScale: number;
}

/** What the weights tell about the VAE's halves: latent channels, and pixels per latent cell. */
export interface VaeShape {
  decoder?: { latentChannels: number; scale: number };
  encoder?: { scale: number };
}

/**
 * The `sdnode.attention_heads` metadata (what shapes cannot tell; the generator writes it):
 * JSON {"unet": {"numHeads": n} | {"headDim": d}, "clip": {"numHeads": n}, "clip2": {"numHeads": n}}
 * (clip2: SDXL's second text encoder), every part optional.
 * Anything else is a ModelCompatibilityError naming what is wrong, never a TypeError from inside.
 */
function attentionHeads(raw: string | undefined): AttentionHeads {
  if (!raw) return {};
  const bad = (why: string) => new ModelCompatibilityError(`the model's sdnode.attention_heads metadata ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw bad('is not JSON');
  }
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(parsed)) throw bad('is not a JSON object');
  const count = (part: string, key: string, v: unknown) => {
    if (v === undefined) return undefined;
    if (!isCount(v)) throw bad(`has ${part}.${key} ${JSON.stringify(v)}: not an integer 1 … 4096`);
    return v;
  };
  const out: AttentionHeads = {};
  for (const part of ['unet', 'clip', 'clip2'] as const) {
    const v = parsed[part];
    if (v === undefined) continue;
    if (!isObject(v)) throw bad(`has a ${part} that is not an object`);
    const numHeads = count(part, 'numHeads', v.numHeads);
    const headDim = part === 'unet' ? count(part, 'headDim', v.headDim) : undefined;
    out[part] = { ...(numHeads !== undefined ? { numHeads } : {}), ...(headDim !== undefined ? { headDim } : {}) };
  }
  return out;
}

/** A loaded model's architecture as its weights and metadata show it, each fact read once. */
export class ModelArchitecture {
  readonly #native: NativeModel;
  readonly #detection: ModelDetection & { metadata: Record<string, string> };
  /** Attention heads from a diffusers folder's config.json files. */
  readonly #configHeads?: AttentionHeads;
  #engineFacts?: NativeArchitecture;
  #probe?: Promise<'v' | 'epsilon'>;

  constructor(native: NativeModel, detection: ModelDetection & { metadata: Record<string, string> }, configHeads?: AttentionHeads) {
    this.#native = native;
    this.#detection = detection;
    this.#configHeads = configHeads;
  }

  /** What the engine read of the networks at load (native/engine/pipeline/architecture.h). */
  #facts(): NativeArchitecture {
    this.#engineFacts ??= this.#native.architecture();
    return this.#engineFacts;
  }

  /** Pixels that image sides must be a multiple of: 8 per latent cell × the UNet's latent multiple (64 for SD1.x/SD2.x/SDXL). */
  sizeMultiple(): number {
    const { unet, vae } = this.#facts();
    return (vae.decoderScale || 8) * (unet?.latentMultiple ?? 1);
  }

  /** Layers clipSkip can reach: the fewest of the family's text encoders' (all take the same clipSkip); 0 without one. */
  textEncoderLayers(): number {
    const places: readonly string[] | undefined = familyProfile(this.#detection.family)?.encoders.map((e) => TEXT_ENCODER_PLACES[e.place]);
    const layers = this.#facts().textEncoders.filter((t) => !places || places.includes(t.prefix)).map((t) => t.layers);
    return layers.length ? Math.min(...layers) : 0;
  }

  /** Latent scale factor of the VAE's family (LDM configs' scale_factor); SD1.x's when the family is unknown. */
  vaeScale(): number {
    return (familyProfile(this.#detection.family) ?? FAMILIES.sd1).vaeScale;
  }

  /** The VAE's halves as the engine read them: latent channels, and pixels per latent cell. */
  vaeShape(): VaeShape {
    const { vae } = this.#facts();
    return {
      ...(vae.decoder ? { decoder: { latentChannels: vae.latentChannels, scale: vae.decoderScale } } : {}),
      ...(vae.encoder ? { encoder: { scale: vae.encoderScale } } : {}),
    };
  }

  /** What shapes cannot tell, from the model's metadata or its family; ModelCompatibilityError for a model that cannot generate. */
  forGenerate(): Architecture {
    const { family, components, metadata } = this.#detection;
    // The file's own metadata first, then a diffusers folder's config.json files.
    const heads = metadata['sdnode.attention_heads'] ? attentionHeads(metadata['sdnode.attention_heads']) : (this.#configHeads ?? {});
    const profile = familyProfile(family);
    if (!profile && !heads.unet) throw new ModelCompatibilityError('the model family is unknown, so its attention heads are too');
    // An unknown family with heads in its metadata runs as SD1.x does.
    const { encoders, unetHeads: familyHeads } = profile ?? FAMILIES.sd1;
    const needed = ['unet', 'vae', ...encoders.map((e) => (e.place === 'first' ? 'textEncoder' : 'textEncoder2'))] as const;
    const missing = needed.filter((c) => !components[c]);
    if (missing.length) {
      const second = missing.includes('textEncoder2') ? ` (${family === 'sdxl' ? "SDXL's second text encoder" : "the refiner's text encoder"}, OpenCLIP bigG: load it with textEncoder2)` : '';
      throw new ModelCompatibilityError(`the model lacks its ${missing.join(', ')}${second}: load it with the missing component files`);
    }
    const unetHeads = heads.unet?.numHeads ?? (heads.unet?.headDim === undefined && 'numHeads' in familyHeads ? familyHeads.numHeads : 0);
    const unetHeadDim = heads.unet?.headDim ?? (unetHeads ? 0 : 'headDim' in familyHeads ? familyHeads.headDim : 64);
    const textEncoders: Architecture['textEncoders'] = encoders.map((e) => ({
      ...(e.place === 'second' ? { prefix: TEXT_ENCODER_PLACES.second } : {}),
      heads: heads[e.heads]?.numHeads ?? 0,
      quickGelu: e.quickGelu,
      ...(e.finalNorm ? {} : { finalNorm: false }),
      ...(e.pooled ? { pooled: true } : {}),
    }));
    return { unetHeads, unetHeadDim, textEncoders, vaeScale: this.vaeScale() };
  }

  /** The probe's answer for an SD2.x file that does not say its prediction (lib/prediction-probe.ts), made once. */
  probedPrediction(arch: Architecture): Promise<'v' | 'epsilon'> {
    const unet = this.#facts().unet;
    this.#probe ??= probePrediction(this.#native, {
      inChannels: unet?.inChannels ?? 4,
      contextDim: unet?.contextDim ?? 1024,
      heads: arch.unetHeads ? { heads: arch.unetHeads } : { headDim: arch.unetHeadDim },
    });
    return this.#probe;
  }
}
