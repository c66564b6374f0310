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
import type { NativeModel, NativeTextEncoderParams } from './native.js';
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

const VAE_PREFIX = 'first_stage_model.';
/** Internal name prefix of SDXL's second text encoder (native/engine/io/name_map_internal.h). */
const TEXT_ENCODER_2_PREFIX = 'cond_stage_model.1.transformer.text_model.';
/** Latent scale factors of the VAE families (LDM configs' scale_factor). */
const VAE_SCALE = { sd: 0.18215, sdxl: 0.13025 } as const;

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
  #vae?: VaeShape;
  #sizeMultiple?: number;
  #clipLayers?: number;
  #probe?: Promise<'v' | 'epsilon'>;

  constructor(native: NativeModel, detection: ModelDetection & { metadata: Record<string, string> }, configHeads?: AttentionHeads) {
    this.#native = native;
    this.#detection = detection;
    this.#configHeads = configHeads;
  }

  /**
   * Pixels that image sides must be a multiple of: 8 per latent cell × 2 per UNet downsampling
   * level (64 for SD1.x/SD2.x), the levels counted from the weights (input_blocks.N.0.op).
   */
  sizeMultiple(): number {
    this.#sizeMultiple ??= 8 * 2 ** this.#native.weights().filter((w) => /^model\.diffusion_model\.input_blocks\.\d+\.0\.op\.weight$/.test(w.name)).length;
    return this.#sizeMultiple;
  }

  /** Layers of the text encoder, counted from the weights (…encoder.layers.N.layer_norm1.weight); 0 without one. */
  textEncoderLayers(): number {
    if (this.#clipLayers === undefined) {
      const names = new Set(this.#native.weights().map((w) => w.name));
      const prefix = [...names].find((n) => /^cond_stage_model\..*encoder\.layers\.0\.layer_norm1\.weight$/.test(n))?.replace(/0\.layer_norm1\.weight$/, '');
      let n = 0;
      while (prefix !== undefined && names.has(`${prefix}${n}.layer_norm1.weight`)) n++;
      this.#clipLayers = n;
    }
    return this.#clipLayers;
  }

  /** Latent scale factor of the VAE's family (LDM configs' scale_factor). */
  vaeScale(): number {
    return this.#detection.family === 'sdxl' ? VAE_SCALE.sdxl : VAE_SCALE.sd;
  }

  /** The VAE's halves as the weights show them: LDM's Encoder/Decoder level counts and channels. */
  vaeShape(): VaeShape {
    if (this.#vae) return this.#vae;
    const shapes = new Map(this.#native.weights().map((w) => [w.name, w.shape]));
    const levels = (part: string) => {
      let n = 0;
      while (shapes.has(`${VAE_PREFIX}${part}.${n}.block.0.norm1.weight`)) n++;
      return n;
    };
    const vae: VaeShape = {};
    const conv = shapes.get(`${VAE_PREFIX}post_quant_conv.weight`) ?? shapes.get(`${VAE_PREFIX}decoder.conv_in.weight`);
    const up = levels('decoder.up');
    if (conv && conv.length === 4 && up > 0) vae.decoder = { latentChannels: conv[1]!, scale: 2 ** (up - 1) };
    const down = levels('encoder.down');
    if (shapes.has(`${VAE_PREFIX}encoder.conv_in.weight`) && down > 0) vae.encoder = { scale: 2 ** (down - 1) };
    this.#vae = vae;
    return vae;
  }

  /** What shapes cannot tell, from the model's metadata or its family; ModelCompatibilityError for a model that cannot generate. */
  forGenerate(): Architecture {
    const { family, components, metadata } = this.#detection;
    const missing = (['unet', 'vae', 'textEncoder'] as const).filter((c) => !components[c]);
    if (missing.length) throw new ModelCompatibilityError(`the model lacks its ${missing.join(', ')}: load it with the missing component files`);
    if (family === 'sdxl' && !components.textEncoder2)
      throw new ModelCompatibilityError('the SDXL model lacks its second text encoder (OpenCLIP bigG): load it with textEncoder2');
    // The file's own metadata first, then a diffusers folder's config.json files.
    const heads = metadata['sdnode.attention_heads'] ? attentionHeads(metadata['sdnode.attention_heads']) : (this.#configHeads ?? {});
    // SD1.x: 8 heads at every level (LDM num_heads: 8); SD2.x: 64-wide heads (num_head_channels: 64).
    const unetHeads = heads.unet?.numHeads ?? (heads.unet?.headDim === undefined && family === 'sd1' ? 8 : 0);
    const unetHeadDim = heads.unet?.headDim ?? (unetHeads ? 0 : 64);
    if (family === 'unknown' && !heads.unet) throw new ModelCompatibilityError('the model family is unknown, so its attention heads are too');
    const clipHeads = heads.clip?.numHeads ?? 0;
    // CLIP ViT-L (SD1.x, SDXL's first) uses quick-GELU; OpenCLIP ViT-H (SD2.x) and bigG (SDXL's second) GELU.
    // SDXL takes both encoders' hidden states without their final norm (sgm's "hidden" / "penultimate" layers).
    const textEncoders: Architecture['textEncoders'] =
      family === 'sdxl'
        ? [
            { heads: clipHeads, quickGelu: true, finalNorm: false },
            { prefix: TEXT_ENCODER_2_PREFIX, heads: heads.clip2?.numHeads ?? 0, quickGelu: false, finalNorm: false, pooled: true },
          ]
        : [{ heads: clipHeads, quickGelu: family !== 'sd2' }];
    return { unetHeads, unetHeadDim, textEncoders, vaeScale: this.vaeScale() };
  }

  /** The probe's answer for an SD2.x file that does not say its prediction (lib/prediction-probe.ts), made once. */
  probedPrediction(arch: Architecture): Promise<'v' | 'epsilon'> {
    this.#probe ??= probePrediction(this.#native, {
      inChannels: this.#detection.unetInChannels ?? 4,
      contextDim: this.#detection.contextDim ?? 1024,
      heads: arch.unetHeads ? { heads: arch.unetHeads } : { headDim: arch.unetHeadDim },
    });
    return this.#probe;
  }
}
