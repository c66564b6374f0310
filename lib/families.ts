/**
 * What each Stable Diffusion family does that its weights do not say: the VAE's latent scale,
 * which text encoders run and how, how prompts are padded, what the UNet's vector y holds, and
 * the defaults the reference implementations use. One entry per family, so that code reads a
 * fact by name instead of testing the family.
 *
 * Sources: the LDM / sgm inference configs (v1-inference.yaml, v2-inference-v.yaml,
 * sd_xl_base.yaml, sd_xl_refiner.yaml), stable-diffusion.cpp's conditioner for SD1.x/SD2.x/SDXL,
 * and diffusers' / ComfyUI's SDXL refiner conditioning (the peer has no refiner).
 */
import type { ModelFamily } from './model-detect.js';

type Family = Exclude<ModelFamily, 'unknown'>;

/** Where the engine keeps a text encoder (native/engine/io/name_map.h kInternalText1 / kInternalText2). */
export const TEXT_ENCODER_PLACES = {
  first: 'cond_stage_model.transformer.text_model.',
  second: 'cond_stage_model.1.transformer.text_model.',
} as const;

export interface FamilyEncoder {
  place: keyof typeof TEXT_ENCODER_PLACES;
  /** CLIP ViT-L (OpenAI) uses quick-GELU; OpenCLIP ViT-H and bigG GELU. */
  quickGelu: boolean;
  /** false: the chosen layer's output without the final norm (sgm's "hidden" / "penultimate" for SDXL). */
  finalNorm: boolean;
  /** Its pooled, projected output opens the vector y. */
  pooled: boolean;
  /** The sdnode.attention_heads metadata part that names its heads. */
  heads: 'clip' | 'clip2';
  /** Pad after EOS with 0 (OpenCLIP's pad) rather than EOS. */
  padWithZero: boolean;
}

export interface FamilyProfile {
  /** The LDM config's scale_factor. */
  vaeScale: number;
  /** The latent2rgb preview factors. */
  latentFormat: 'sd' | 'sdxl';
  /** clipSkip's default: 2 where the encoders were trained on the penultimate layer. */
  clipSkip: number;
  /** In the order their hidden states are joined per token. */
  encoders: readonly FamilyEncoder[];
  /**
   * What follows the pooled text in y: none, SDXL's (original size, crop, target size) or the
   * refiner's (original size, crop, aesthetic score).
   */
  vector: 'none' | 'size' | 'size-aesthetic';
  /** An empty negative prompt conditions on zero hidden states (stable-diffusion.cpp's SDXL). */
  zeroEmptyNegative: boolean;
  /** The file's own VAE scales every convolution's input by this where kernels are f16 (SDXL's overflows); 1: none. */
  ownVaeConvInputScale: number;
  /** The UNet's heads when no metadata says: SD1.x 8 at every level, else 64-wide. */
  unetHeads: { numHeads: number } | { headDim: number };
}

const CLIP_L: FamilyEncoder = { place: 'first', quickGelu: true, finalNorm: true, pooled: false, heads: 'clip', padWithZero: false };
const OPENCLIP_H: FamilyEncoder = { place: 'first', quickGelu: false, finalNorm: true, pooled: false, heads: 'clip', padWithZero: true };
const BIG_G = { place: 'second', quickGelu: false, finalNorm: false, pooled: true, padWithZero: true } as const;

/** 1/32: stable-diffusion.cpp's scale for SDXL's VAE convolutions in f16 (set_conv2d_scale). */
const SDXL_VAE_CONV_INPUT_SCALE = 1 / 32;

export const FAMILIES: Readonly<Record<Family, FamilyProfile>> = {
  sd1: {
    vaeScale: 0.18215, latentFormat: 'sd', clipSkip: 1, encoders: [CLIP_L], vector: 'none', zeroEmptyNegative: false,
    ownVaeConvInputScale: 1, unetHeads: { numHeads: 8 },
  },
  // OpenCLIP ViT-H's penultimate layer, then ln_final (LDM's FrozenOpenCLIPEmbedder layer "penultimate").
  sd2: {
    vaeScale: 0.18215, latentFormat: 'sd', clipSkip: 2, encoders: [OPENCLIP_H], vector: 'none', zeroEmptyNegative: false,
    ownVaeConvInputScale: 1, unetHeads: { headDim: 64 },
  },
  // CLIP-L and bigG, both penultimate without their final norms; bigG's ids pad with 0 after EOS
  // while CLIP-L's prompt pads with EOS (the first encoder's padding decides the prompt's).
  sdxl: {
    vaeScale: 0.13025, latentFormat: 'sdxl', clipSkip: 2, encoders: [{ ...CLIP_L, finalNorm: false }, { ...BIG_G, heads: 'clip2' }],
    vector: 'size', zeroEmptyNegative: true, ownVaeConvInputScale: SDXL_VAE_CONV_INPUT_SCALE, unetHeads: { headDim: 64 },
  },
  // bigG alone (sgm's embedders.0 in sd_xl_refiner.yaml); the empty negative prompt encoded as
  // text, as diffusers (force_zeros_for_empty_prompt false for the refiner) and ComfyUI do.
  'sdxl-refiner': {
    vaeScale: 0.13025, latentFormat: 'sdxl', clipSkip: 2, encoders: [{ ...BIG_G, heads: 'clip' }], vector: 'size-aesthetic',
    zeroEmptyNegative: false, ownVaeConvInputScale: SDXL_VAE_CONV_INPUT_SCALE, unetHeads: { headDim: 64 },
  },
};

/** The family's profile; undefined for 'unknown'. */
export function familyProfile(family: ModelFamily): FamilyProfile | undefined {
  return family === 'unknown' ? undefined : FAMILIES[family];
}
