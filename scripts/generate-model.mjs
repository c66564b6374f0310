#!/usr/bin/env node
// Writes random-weight Stable Diffusion 1.x, 2.x and XL checkpoints as LDM single-file
// safetensors: the tensor names and shapes of a real checkpoint (`model.diffusion_model.*` UNet,
// `first_stage_model.*` AutoencoderKL, and the text encoders where each family keeps them:
// SD1.x `cond_stage_model.transformer.text_model.*` (transformers CLIPTextModel names), SD2.x
// `cond_stage_model.model.*` (OpenCLIP names), SDXL `conditioner.embedders.0.transformer.
// text_model.*` and `conditioner.embedders.1.model.*`), sized by a config. Tests use the tiny
// presets; benchmarks use `sd15`, `sd21` and `sdxl`, the exact shapes of the released files.
// Weights are deterministic in the seed and the tensor's name, so a tensor holds the same values
// whatever else the file contains.
//
//   node scripts/generate-model.mjs --preset tiny --dtype f16 --seed 1 --out model.safetensors
//
// The file is streamed: the header is computed from the shapes alone and written first, then
// each tensor's bytes in chunks, so a 2 GB model needs a few MB of memory.
//
// What shapes cannot tell goes into `__metadata__` (all values are strings, as safetensors
// requires):
//   sdnode.generator        "sdnode generate-model <format version>"
//   sdnode.config           the config below, as JSON
//   sdnode.attention_heads  JSON {"unet": {"numHeads": n} | {"headDim": d}, "clip": {"numHeads": n}}
//                           — the UNet form mirrors LDM's num_heads / num_head_channels; SDXL
//                           adds "clip2": {"numHeads": n} for the second text encoder
//   sdnode.seed, sdnode.dtype, and sdnode.preset when one was used
//   format                  "pt", as files written by safetensors' torch API carry
//
// Values: linear and conv weights are triangular-distributed (a sum of two uniforms, close
// enough to normal) with standard deviation 1/sqrt(fan_in), so activations keep their scale
// through the network; biases have std 0.05; norm weights are 1 + std 0.1 and norm biases std
// 0.05 (not exactly 1 and 0, so that a loader that drops them is caught); embeddings std 0.1.
// A transformers-named CLIP's `embeddings.position_ids` is an I64 [1, positions] buffer holding
// 0..positions-1, as in the SD1.x and SDXL checkpoints users download (config
// `clip.positionIds: false` leaves it out); OpenCLIP encoders have none (their attn_mask buffer
// is not persistent) but carry `logit_scale`, a 0-d tensor holding ln 100, as the released
// files do. The DDPM schedule buffers that training checkpoints also carry (betas,
// alphas_cumprod, ...) are not written.
//
// Only node: builtins; plain ESM with JSDoc types so tests can import it.
import { rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { writeAtomically } from './generator/files.mjs';

/** Bumped when the same options would give different bytes. */
export const GENERATOR_VERSION = 1;

/**
 * @typedef {object} UnetConfig
 * @property {number} modelChannels      base channel count (320 for SD1.x)
 * @property {number[]} channelMult      channel multiplier per level
 * @property {number} numResBlocks       res blocks per level on the way down (one more on the way up)
 * @property {number[]} attentionLevels  levels (0-based) whose blocks have a spatial transformer;
 *                                       the middle block always has one
 * @property {number} [numHeads]         fixed head count (SD1.x: 8) — or
 * @property {number} [headDim]          fixed head width (SD2.x: 64); exactly one of the two
 * @property {number | number[]} transformerDepth  transformer blocks per spatial transformer, or
 *                                       per level (SDXL [0, 2, 10]: 0 exactly at the levels
 *                                       without attention)
 * @property {number} [transformerDepthMiddle]  the middle block's (default: the last level's)
 * @property {boolean} [linearProj]      proj_in/proj_out as linears (use_linear_in_transformer:
 *                                       SD2.x, SDXL) instead of 1×1 convs (SD1.x)
 * @property {number} [admInChannels]    width of the `label_emb` (ADM) input: SDXL's pooled text
 *                                       embedding + 6 size/crop Fourier embeddings of 256
 * @property {number} contextDim         cross-attention context width (= clip.width, + clip2.width)
 * @property {number} inChannels         4, or 9 for inpainting (latent + mask + masked latent)
 * @property {number} outChannels        4
 *
 * @typedef {object} VaeConfig
 * @property {number} ch            base channel count (128)
 * @property {number[]} chMult      channel multiplier per level; len-1 downsamplings
 * @property {number} numResBlocks  res blocks per encoder level (decoder: one more)
 * @property {number} zChannels     latent channels (4); the encoder outputs 2×zChannels (mean, logvar)
 * @property {number} embedDim      quant_conv / post_quant_conv width (4)
 * @property {number} inChannels    image channels in (3)
 * @property {number} outChannels   image channels out (3)
 *
 * @typedef {object} ClipConfig
 * @property {'hf' | 'openclip'} [naming] tensor names: transformers CLIPTextModel (default; SD1.x,
 *                                  SDXL's first encoder) or OpenCLIP's text tower (SD2.x, SDXL's
 *                                  second encoder)
 * @property {number} width         hidden size (768)
 * @property {number} layers        encoder layers (12)
 * @property {number} heads         attention heads (12)
 * @property {number} vocab         token embedding rows (49408, the CLIP BPE vocabulary)
 * @property {number} positions     position embedding rows (77)
 * @property {number} intermediate  MLP width (3072)
 * @property {boolean} [positionIds] hf: write the I64 position_ids buffer (default true)
 * @property {number} [projectionDim] openclip: text_projection's output width (default width)
 *
 * @typedef {object} ModelConfig
 * @property {UnetConfig} unet
 * @property {VaeConfig} vae
 * @property {ClipConfig} clip      the text encoder (SDXL: the first, CLIP ViT-L)
 * @property {ClipConfig} [clip2]   SDXL's second text encoder (OpenCLIP ViT-bigG); its presence
 *                                  selects SDXL's `conditioner.embedders.*` layout
 *
 * @typedef {'weight' | 'bias' | 'norm_weight' | 'norm_bias' | 'embedding' | 'position_ids' | 'logit_scale'} InitKind
 *
 * @typedef {object} TensorSpec
 * @property {string} name
 * @property {number[]} shape       PyTorch order: [out, in, kh, kw] for convs, [out, in] for linears
 * @property {InitKind} init
 * @property {number} fanIn         inputs per output (weights); 1 otherwise
 *
 * @typedef {'f32' | 'f16'} WeightDtype
 */

/** SDXL's ADM input beyond the pooled text embedding: original size, crop offset and target
 *  size, two numbers each, each number a 256-wide Fourier embedding (sgm's
 *  ConcatTimestepEmbedderND, outdim 256): 3 · 2 · 256. */
export const SDXL_SIZE_EMBEDDINGS = 3 * 2 * 256;
/** The SDXL refiner's: original size and crop offset (two numbers each) and the aesthetic score
 *  (sd_xl_refiner.yaml: three ConcatTimestepEmbedderND of outdim 256): 5 · 256. */
export const REFINER_SIZE_EMBEDDINGS = 5 * 256;

/** @type {Readonly<Record<string, ModelConfig>>} */
const BASE_PRESETS = {
  // 7.3 MB in f16 (14.5 MB in f32), 3.6 M parameters, 44% of them the token embedding. CLIP
  // keeps the real vocabulary (49408 rows, so every BPE token id is valid) and the 77
  // positions, at width 32; the UNet has two levels (32, 64 channels) with attention on the
  // last one and in the middle, heads of 32; the VAE keeps the real 8× downsampling (four
  // levels) at 32/64 channels. Channel counts stay multiples of 32 (GroupNorm's 32 groups).
  tiny: {
    unet: {
      modelChannels: 32,
      channelMult: [1, 2],
      numResBlocks: 1,
      attentionLevels: [1],
      headDim: 32,
      transformerDepth: 1,
      contextDim: 32,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 32, chMult: [1, 1, 2, 2], numResBlocks: 1, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { width: 32, layers: 2, heads: 2, vocab: 49408, positions: 77, intermediate: 64, positionIds: true },
  },
  // Stable Diffusion 1.5 (CompVis v1-inference.yaml): UNet 859.5 M, VAE 83.7 M, CLIP ViT-L/14
  // text encoder 123.1 M parameters.
  sd15: {
    unet: {
      modelChannels: 320,
      channelMult: [1, 2, 4, 4],
      numResBlocks: 2,
      attentionLevels: [0, 1, 2],
      numHeads: 8,
      transformerDepth: 1,
      contextDim: 768,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { width: 768, layers: 12, heads: 12, vocab: 49408, positions: 77, intermediate: 3072, positionIds: true },
  },
  // Stable Diffusion 2.x (Stability's v2-inference-v.yaml; v2-1_768 and v2-1_512 share every
  // name and shape): heads of 64 channels, linear proj_in/proj_out, context 1024 from OpenCLIP
  // ViT-H/14's text tower (open_clip model config ViT-H-14: width 1024, 24 layers, 16 heads,
  // MLP 4096, embed_dim 1024). UNet 865.9 M parameters.
  sd21: {
    unet: {
      modelChannels: 320,
      channelMult: [1, 2, 4, 4],
      numResBlocks: 2,
      attentionLevels: [0, 1, 2],
      headDim: 64,
      transformerDepth: 1,
      linearProj: true,
      contextDim: 1024,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { naming: 'openclip', width: 1024, layers: 24, heads: 16, vocab: 49408, positions: 77, intermediate: 4096, projectionDim: 1024 },
  },
  // The tiny preset's sizes in SD2.x's structure: OpenCLIP names, linear projections, heads of
  // a fixed width.
  'tiny-sd2': {
    unet: {
      modelChannels: 32,
      channelMult: [1, 2],
      numResBlocks: 1,
      attentionLevels: [0, 1],
      headDim: 32,
      transformerDepth: 1,
      linearProj: true,
      contextDim: 32,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 32, chMult: [1, 1, 2, 2], numResBlocks: 1, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { naming: 'openclip', width: 32, layers: 2, heads: 2, vocab: 49408, positions: 77, intermediate: 128, projectionDim: 32 },
  },
  // Stable Diffusion XL base 1.0 (Stability's generative-models configs/inference/
  // sd_xl_base.yaml: model_channels 320, channel_mult [1, 2, 4], attention_resolutions [4, 2]
  // — none at the first level —, transformer_depth [1, 2, 10] of which the first is unused,
  // num_head_channels 64, use_linear_in_transformer, context_dim 2048, adm_in_channels 2816;
  // conditioner: FrozenCLIPEmbedder (CLIP ViT-L/14) and FrozenOpenCLIPEmbedder2 (ViT-bigG-14:
  // width 1280, 32 layers, 20 heads, MLP 5120, embed_dim 1280)). UNet 2.567 G parameters.
  // sgm saves its modules' whole state dicts, so the file holds the transformers CLIP's
  // persistent `embeddings.position_ids` buffer and OpenCLIP's `logit_scale` (both in
  // stable-diffusion.cpp's list of tensors it skips, under these SDXL names): 2515 tensors.
  sdxl: {
    unet: {
      modelChannels: 320,
      channelMult: [1, 2, 4],
      numResBlocks: 2,
      attentionLevels: [1, 2],
      headDim: 64,
      transformerDepth: [0, 2, 10],
      transformerDepthMiddle: 10,
      linearProj: true,
      admInChannels: 1280 + SDXL_SIZE_EMBEDDINGS,
      contextDim: 768 + 1280,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { width: 768, layers: 12, heads: 12, vocab: 49408, positions: 77, intermediate: 3072, positionIds: true },
    clip2: { naming: 'openclip', width: 1280, layers: 32, heads: 20, vocab: 49408, positions: 77, intermediate: 5120, projectionDim: 1280 },
  },
  // The SDXL refiner 1.0 (generative-models configs/inference/sd_xl_refiner.yaml:
  // model_channels 384, channel_mult [1, 2, 4, 4], attention_resolutions [4, 2] — levels 1 and
  // 2 —, transformer_depth 4 (the middle block's too), num_head_channels 64,
  // use_linear_in_transformer, context_dim 1280, adm_in_channels 2560; conditioner: OpenCLIP
  // ViT-bigG-14 alone, as sgm's embedders.0, then original size, crop and aesthetic score).
  'sdxl-refiner': {
    unet: {
      modelChannels: 384,
      channelMult: [1, 2, 4, 4],
      numResBlocks: 2,
      attentionLevels: [1, 2],
      headDim: 64,
      transformerDepth: [0, 4, 4, 0],
      transformerDepthMiddle: 4,
      linearProj: true,
      admInChannels: 1280 + REFINER_SIZE_EMBEDDINGS,
      contextDim: 1280,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { naming: 'openclip', width: 1280, layers: 32, heads: 20, vocab: 49408, positions: 77, intermediate: 5120, projectionDim: 1280 },
  },
  // The refiner's structure at tiny widths: one OpenCLIP encoder that pools, an ADM input of
  // pooled 32 + 5 × 256.
  'tiny-sdxl-refiner': {
    unet: {
      modelChannels: 32,
      channelMult: [1, 2, 2],
      numResBlocks: 2,
      attentionLevels: [1, 2],
      headDim: 32,
      transformerDepth: [0, 1, 2],
      transformerDepthMiddle: 2,
      linearProj: true,
      admInChannels: 32 + REFINER_SIZE_EMBEDDINGS,
      contextDim: 32,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 32, chMult: [1, 1, 2, 2], numResBlocks: 1, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { naming: 'openclip', width: 32, layers: 2, heads: 2, vocab: 49408, positions: 77, intermediate: 128, projectionDim: 32 },
  },
  // SDXL's structure at tiny widths: a level without attention, transformer depth above 1 and
  // in the middle, linear projections, two text encoders of 32 whose outputs concatenate to
  // the 64-wide context, and the real ADM formula (pooled 32 + 1536).
  'tiny-sdxl': {
    unet: {
      modelChannels: 32,
      channelMult: [1, 2, 2],
      numResBlocks: 2,
      attentionLevels: [1, 2],
      headDim: 32,
      transformerDepth: [0, 1, 2],
      transformerDepthMiddle: 2,
      linearProj: true,
      admInChannels: 32 + SDXL_SIZE_EMBEDDINGS,
      contextDim: 32 + 32,
      inChannels: 4,
      outChannels: 4,
    },
    vae: { ch: 32, chMult: [1, 1, 2, 2], numResBlocks: 1, zChannels: 4, embedDim: 4, inChannels: 3, outChannels: 3 },
    clip: { width: 32, layers: 2, heads: 2, vocab: 49408, positions: 77, intermediate: 64, positionIds: true },
    clip2: { naming: 'openclip', width: 32, layers: 2, heads: 2, vocab: 49408, positions: 77, intermediate: 128, projectionDim: 32 },
  },
};

/** The same model with the 9-channel UNet input of inpainting models (latent, mask and
 *  masked-image latent; v1-inpainting-inference.yaml in_channels 9). */
function inpaintVariant(config) {
  return { ...config, unet: { ...config.unet, inChannels: 9 } };
}

export const PRESETS = deepFreeze({
  tiny: BASE_PRESETS.tiny,
  'tiny-inpaint': inpaintVariant(BASE_PRESETS.tiny),
  sd15: BASE_PRESETS.sd15,
  'sd15-inpaint': inpaintVariant(BASE_PRESETS.sd15),
  'tiny-sd2': BASE_PRESETS['tiny-sd2'],
  sd21: BASE_PRESETS.sd21,
  'tiny-sdxl': BASE_PRESETS['tiny-sdxl'],
  'tiny-sdxl-inpaint': inpaintVariant(BASE_PRESETS['tiny-sdxl']),
  sdxl: BASE_PRESETS.sdxl,
  'tiny-sdxl-refiner': BASE_PRESETS['tiny-sdxl-refiner'],
  'sdxl-refiner': BASE_PRESETS['sdxl-refiner'],
});

/** Name prefix of each component in an SD1.x LDM single-file checkpoint. */
export const COMPONENT_PREFIXES = Object.freeze({
  unet: 'model.diffusion_model.',
  vae: 'first_stage_model.',
  clip: 'cond_stage_model.transformer.text_model.',
});

/** Where SD2.x and SDXL keep their text encoders (sgm's conditioner holds SDXL's two). */
const TEXT_PREFIXES = Object.freeze({
  sd2: 'cond_stage_model.model.',
  sdxlClip: 'conditioner.embedders.0.transformer.text_model.',
  sdxlClip2: 'conditioner.embedders.1.model.',
  refinerClip: 'conditioner.embedders.0.model.',
});

/**
 * The name prefix of each component of a config's checkpoint: SD1.x's, SD2.x's (an OpenCLIP
 * text encoder) or SDXL's (a second text encoder).
 * @param {ModelConfig} config
 * @returns {{ unet: string, vae: string, clip: string, clip2?: string }}
 */
export function componentPrefixes(config) {
  if (config.clip2) return { unet: COMPONENT_PREFIXES.unet, vae: COMPONENT_PREFIXES.vae, clip: TEXT_PREFIXES.sdxlClip, clip2: TEXT_PREFIXES.sdxlClip2 };
  if (config.unet.admInChannels !== undefined) return { ...COMPONENT_PREFIXES, clip: TEXT_PREFIXES.refinerClip };
  if (config.clip.naming === 'openclip') return { ...COMPONENT_PREFIXES, clip: TEXT_PREFIXES.sd2 };
  return { ...COMPONENT_PREFIXES };
}


const GROUPNORM_GROUPS = 32;

/**
 * @template T
 * @param {T} value
 * @returns {T}
 */
function deepFreeze(value) {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Config validation

/**
 * @param {unknown} v
 * @param {string} what
 * @param {number} [min]
 */
function checkInt(v, what, min = 1) {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new RangeError(`${what} must be an integer >= ${min}, not ${JSON.stringify(v)}`);
}

/**
 * @param {unknown} v
 * @param {string} what
 * @param {number} [min]
 */
function checkIntList(v, what, min = 1) {
  if (!Array.isArray(v) || v.length === 0) throw new RangeError(`${what} must be a non-empty array of integers`);
  v.forEach((x, i) => checkInt(x, `${what}[${i}]`, min));
}

/**
 * @param {number} channels
 * @param {string} what
 */
function checkGroupNorm(channels, what) {
  if (channels % GROUPNORM_GROUPS !== 0)
    throw new RangeError(`${what}: ${channels} channels, not a multiple of GroupNorm's ${GROUPNORM_GROUPS} groups`);
}

/**
 * Throws a TypeError or RangeError naming the first bad field; returns a plain copy holding
 * only the known fields (the copy is what goes into the file's metadata).
 * @param {ModelConfig} config
 * @returns {ModelConfig}
 */
export function validateConfig(config) {
  if (!config || typeof config !== 'object') throw new TypeError('config must be an object');
  const { unet, vae, clip } = config;
  if (!unet || typeof unet !== 'object') throw new TypeError('config.unet must be an object');
  if (!vae || typeof vae !== 'object') throw new TypeError('config.vae must be an object');
  if (!clip || typeof clip !== 'object') throw new TypeError('config.clip must be an object');

  checkInt(unet.modelChannels, 'unet.modelChannels');
  checkIntList(unet.channelMult, 'unet.channelMult');
  checkInt(unet.numResBlocks, 'unet.numResBlocks');
  if (!Array.isArray(unet.attentionLevels)) throw new RangeError('unet.attentionLevels must be an array of level indices');
  unet.attentionLevels.forEach((x, i) => checkInt(x, `unet.attentionLevels[${i}]`, 0));
  for (const level of unet.attentionLevels)
    if (level >= unet.channelMult.length)
      throw new RangeError(`unet.attentionLevels: level ${level}, but there are ${unet.channelMult.length} levels`);
  if (new Set(unet.attentionLevels).size !== unet.attentionLevels.length)
    throw new RangeError('unet.attentionLevels has a level twice');
  if ((unet.numHeads === undefined) === (unet.headDim === undefined))
    throw new RangeError('unet needs exactly one of numHeads and headDim');
  if (unet.numHeads !== undefined) checkInt(unet.numHeads, 'unet.numHeads');
  if (unet.headDim !== undefined) checkInt(unet.headDim, 'unet.headDim');
  const levels = unet.channelMult.length;
  if (Array.isArray(unet.transformerDepth)) {
    checkIntList(unet.transformerDepth, 'unet.transformerDepth', 0);
    if (unet.transformerDepth.length !== levels)
      throw new RangeError(`unet.transformerDepth has ${unet.transformerDepth.length} entries for ${levels} levels`);
    unet.transformerDepth.forEach((d, level) => {
      if ((d > 0) !== unet.attentionLevels.includes(level))
        throw new RangeError(`unet.transformerDepth[${level}] is ${d}, but level ${level} ${d > 0 ? 'is not' : 'is'} in unet.attentionLevels`);
    });
  } else {
    checkInt(unet.transformerDepth, 'unet.transformerDepth');
  }
  if (unet.transformerDepthMiddle !== undefined) checkInt(unet.transformerDepthMiddle, 'unet.transformerDepthMiddle');
  if (unet.linearProj !== undefined && typeof unet.linearProj !== 'boolean') throw new TypeError('unet.linearProj must be a boolean');
  if (unet.admInChannels !== undefined) checkInt(unet.admInChannels, 'unet.admInChannels');
  checkInt(unet.contextDim, 'unet.contextDim');
  checkInt(unet.inChannels, 'unet.inChannels');
  checkInt(unet.outChannels, 'unet.outChannels');
  unet.channelMult.forEach((m, level) => checkGroupNorm(unet.modelChannels * m, `unet level ${level}`));
  checkGroupNorm(unet.modelChannels, 'unet.modelChannels');
  const last = unet.channelMult.length - 1;
  const attnChannels = new Set([...unet.attentionLevels, last].map((level) => unet.modelChannels * /** @type {number} */ (unet.channelMult[level])));
  for (const c of attnChannels) {
    const divisor = unet.numHeads ?? /** @type {number} */ (unet.headDim);
    if (c % divisor !== 0)
      throw new RangeError(`unet: a spatial transformer of ${c} channels cannot be split by ${unet.numHeads !== undefined ? 'numHeads' : 'headDim'} ${divisor}`);
  }

  checkInt(vae.ch, 'vae.ch');
  checkIntList(vae.chMult, 'vae.chMult');
  checkInt(vae.numResBlocks, 'vae.numResBlocks');
  checkInt(vae.zChannels, 'vae.zChannels');
  checkInt(vae.embedDim, 'vae.embedDim');
  checkInt(vae.inChannels, 'vae.inChannels');
  checkInt(vae.outChannels, 'vae.outChannels');
  checkGroupNorm(vae.ch, 'vae.ch');
  vae.chMult.forEach((m, level) => checkGroupNorm(vae.ch * m, `vae level ${level}`));

  const text = validateText(clip, 'clip');
  const { clip2 } = config;
  if (clip2 !== undefined && (!clip2 || typeof clip2 !== 'object')) throw new TypeError('config.clip2 must be an object');
  const text2 = clip2 === undefined ? undefined : validateText(clip2, 'clip2');
  if (text2) {
    // SDXL's layout: CLIP ViT-L (transformers names) then OpenCLIP bigG, whose penultimate
    // hidden states are concatenated into the context and whose projected pooled output opens
    // the ADM vector.
    if (text.naming === 'openclip') throw new RangeError("clip.naming must be 'hf' beside a clip2 (SDXL's first encoder is CLIP ViT-L)");
    if (text2.naming !== 'openclip') throw new RangeError("clip2.naming must be 'openclip' (SDXL's second encoder is OpenCLIP bigG)");
    const adm = /** @type {number} */ (text2.projectionDim) + SDXL_SIZE_EMBEDDINGS;
    if (unet.admInChannels !== adm)
      throw new RangeError(`unet.admInChannels must be clip2.projectionDim + ${SDXL_SIZE_EMBEDDINGS} = ${adm} (pooled text + size embeddings), not ${unet.admInChannels}`);
  }
  if (!text2 && unet.admInChannels !== undefined) {
    // The SDXL refiner's layout: OpenCLIP bigG alone, pooling into the ADM vector.
    if (text.naming !== 'openclip') throw new RangeError("clip.naming must be 'openclip' for a UNet with admInChannels and no clip2 (the SDXL refiner's bigG)");
    const adm = /** @type {number} */ (text.projectionDim) + REFINER_SIZE_EMBEDDINGS;
    if (unet.admInChannels !== adm)
      throw new RangeError(`unet.admInChannels must be clip.projectionDim + ${REFINER_SIZE_EMBEDDINGS} = ${adm} (pooled text + size and aesthetic embeddings), not ${unet.admInChannels}`);
  }
  const context = text.width + (text2?.width ?? 0);
  if (unet.contextDim !== context)
    throw new RangeError(`unet.contextDim ${unet.contextDim} must equal ${text2 ? 'clip.width + clip2.width' : 'clip.width'} ${context}: the UNet attends to the text encoder's output`);

  return {
    unet: {
      modelChannels: unet.modelChannels,
      channelMult: [...unet.channelMult],
      numResBlocks: unet.numResBlocks,
      attentionLevels: [...unet.attentionLevels],
      ...(unet.numHeads !== undefined ? { numHeads: unet.numHeads } : { headDim: unet.headDim }),
      transformerDepth: Array.isArray(unet.transformerDepth) ? [...unet.transformerDepth] : unet.transformerDepth,
      // Optional fields only when given, so SD1.x configs (and files) stay as they were.
      ...(unet.transformerDepthMiddle !== undefined ? { transformerDepthMiddle: unet.transformerDepthMiddle } : {}),
      ...(unet.linearProj !== undefined ? { linearProj: unet.linearProj } : {}),
      ...(unet.admInChannels !== undefined ? { admInChannels: unet.admInChannels } : {}),
      contextDim: unet.contextDim,
      inChannels: unet.inChannels,
      outChannels: unet.outChannels,
    },
    vae: {
      ch: vae.ch,
      chMult: [...vae.chMult],
      numResBlocks: vae.numResBlocks,
      zChannels: vae.zChannels,
      embedDim: vae.embedDim,
      inChannels: vae.inChannels,
      outChannels: vae.outChannels,
    },
    clip: text,
    ...(text2 ? { clip2: text2 } : {}),
  };
}

/**
 * Checks one text encoder's config; returns the plain copy (the transformers-named one as SD1.x
 * configs always had it, without `naming`).
 * @param {ClipConfig} clip
 * @param {string} what
 * @returns {ClipConfig}
 */
function validateText(clip, what) {
  const naming = clip.naming ?? 'hf';
  if (naming !== 'hf' && naming !== 'openclip') throw new RangeError(`${what}.naming must be 'hf' or 'openclip', not ${JSON.stringify(clip.naming)}`);
  checkInt(clip.width, `${what}.width`);
  checkInt(clip.layers, `${what}.layers`);
  checkInt(clip.heads, `${what}.heads`);
  checkInt(clip.vocab, `${what}.vocab`);
  checkInt(clip.positions, `${what}.positions`);
  checkInt(clip.intermediate, `${what}.intermediate`);
  if (clip.width % clip.heads !== 0) throw new RangeError(`${what}.width ${clip.width} is not a multiple of ${what}.heads ${clip.heads}`);
  const common = { width: clip.width, layers: clip.layers, heads: clip.heads, vocab: clip.vocab, positions: clip.positions, intermediate: clip.intermediate };
  if (naming === 'openclip') {
    if (clip.positionIds !== undefined) throw new RangeError(`${what}.positionIds: OpenCLIP encoders have no position_ids buffer`);
    if (clip.projectionDim !== undefined) checkInt(clip.projectionDim, `${what}.projectionDim`);
    return { naming, ...common, projectionDim: clip.projectionDim ?? clip.width };
  }
  if (clip.positionIds !== undefined && typeof clip.positionIds !== 'boolean')
    throw new TypeError(`${what}.positionIds must be a boolean`);
  if (clip.projectionDim !== undefined) throw new RangeError(`${what}.projectionDim: only OpenCLIP encoders carry a text_projection here`);
  return { ...common, positionIds: clip.positionIds ?? true };
}

// ---------------------------------------------------------------------------------------------
// Tensor lists, in the module order of the LDM / transformers code that defines each network

/** Appends tensor specs under one name prefix. */
class SpecList {
  /** @param {TensorSpec[]} out */
  constructor(out) {
    this.out = out;
  }

  /**
   * @param {string} name
   * @param {number[]} shape
   * @param {InitKind} init
   * @param {number} [fanIn]
   */
  add(name, shape, init, fanIn = 1) {
    this.out.push({ name, shape, init, fanIn });
  }

  /** nn.Linear: weight [out, in], bias [out]. */
  linear(/** @type {string} */ name, /** @type {number} */ inF, /** @type {number} */ outF, bias = true) {
    this.add(`${name}.weight`, [outF, inF], 'weight', inF);
    if (bias) this.add(`${name}.bias`, [outF], 'bias');
  }

  /** nn.Conv2d: weight [out, in, k, k], bias [out]. */
  conv(/** @type {string} */ name, /** @type {number} */ inC, /** @type {number} */ outC, /** @type {number} */ k) {
    this.add(`${name}.weight`, [outC, inC, k, k], 'weight', inC * k * k);
    this.add(`${name}.bias`, [outC], 'bias');
  }

  /** GroupNorm or LayerNorm: weight and bias [channels]. */
  norm(/** @type {string} */ name, /** @type {number} */ channels) {
    this.add(`${name}.weight`, [channels], 'norm_weight');
    this.add(`${name}.bias`, [channels], 'norm_bias');
  }
}

/**
 * UNetModel of ldm/modules/diffusionmodules/openaimodel.py with use_spatial_transformer (SD1.x:
 * conv proj_in/proj_out, GEGLU feed-forward, no bias on q/k/v), and what sgm's copy of it adds
 * for SD2.x/SDXL: linear proj_in/proj_out (use_linear_in_transformer), a transformer depth per
 * level, and the `label_emb` ADM MLP (num_classes "sequential": Linear, SiLU, Linear).
 * @param {UnetConfig} u
 * @param {TensorSpec[]} out
 */
function unetSpecs(u, out) {
  const s = new SpecList(out);
  const p = COMPONENT_PREFIXES.unet;
  const levels = u.channelMult.length;
  const depths = Array.isArray(u.transformerDepth) ? u.transformerDepth : u.channelMult.map(() => /** @type {number} */ (u.transformerDepth));
  const middleDepth = u.transformerDepthMiddle ?? /** @type {number} */ (depths[levels - 1]);
  const mc = u.modelChannels;
  const timeDim = mc * 4;

  /** @param {string} name @param {number} cin @param {number} cout */
  const resblock = (name, cin, cout) => {
    s.norm(`${name}.in_layers.0`, cin);
    s.conv(`${name}.in_layers.2`, cin, cout, 3);
    s.linear(`${name}.emb_layers.1`, timeDim, cout);
    s.norm(`${name}.out_layers.0`, cout);
    s.conv(`${name}.out_layers.3`, cout, cout, 3);
    if (cin !== cout) s.conv(`${name}.skip_connection`, cin, cout, 1);
  };
  /** @param {string} name @param {number} c @param {number} depth */
  const spatialTransformer = (name, c, depth) => {
    const ctx = u.contextDim;
    const ff = c * 4;
    const proj = (/** @type {string} */ n) => (u.linearProj ? s.linear(n, c, c) : s.conv(n, c, c, 1));
    s.norm(`${name}.norm`, c);
    proj(`${name}.proj_in`);
    for (let d = 0; d < depth; d++) {
      const b = `${name}.transformer_blocks.${d}`;
      s.linear(`${b}.attn1.to_q`, c, c, false);
      s.linear(`${b}.attn1.to_k`, c, c, false);
      s.linear(`${b}.attn1.to_v`, c, c, false);
      s.linear(`${b}.attn1.to_out.0`, c, c);
      s.linear(`${b}.ff.net.0.proj`, c, ff * 2); // GEGLU: value and gate halves
      s.linear(`${b}.ff.net.2`, ff, c);
      s.linear(`${b}.attn2.to_q`, c, c, false);
      s.linear(`${b}.attn2.to_k`, ctx, c, false);
      s.linear(`${b}.attn2.to_v`, ctx, c, false);
      s.linear(`${b}.attn2.to_out.0`, c, c);
      s.norm(`${b}.norm1`, c);
      s.norm(`${b}.norm2`, c);
      s.norm(`${b}.norm3`, c);
    }
    proj(`${name}.proj_out`);
  };

  s.linear(`${p}time_embed.0`, mc, timeDim);
  s.linear(`${p}time_embed.2`, timeDim, timeDim);
  if (u.admInChannels !== undefined) {
    s.linear(`${p}label_emb.0.0`, u.admInChannels, timeDim);
    s.linear(`${p}label_emb.0.2`, timeDim, timeDim);
  }

  const attn = new Set(u.attentionLevels);
  /** @type {number[]} */
  const skipChannels = [mc];
  let ch = mc;
  let block = 0;
  s.conv(`${p}input_blocks.${block++}.0`, u.inChannels, mc, 3);
  for (let level = 0; level < levels; level++) {
    const cout = mc * /** @type {number} */ (u.channelMult[level]);
    for (let r = 0; r < u.numResBlocks; r++) {
      const name = `${p}input_blocks.${block++}`;
      resblock(`${name}.0`, ch, cout);
      ch = cout;
      if (attn.has(level)) spatialTransformer(`${name}.1`, ch, /** @type {number} */ (depths[level]));
      skipChannels.push(ch);
    }
    if (level !== levels - 1) {
      s.conv(`${p}input_blocks.${block++}.0.op`, ch, ch, 3);
      skipChannels.push(ch);
    }
  }

  resblock(`${p}middle_block.0`, ch, ch);
  spatialTransformer(`${p}middle_block.1`, ch, middleDepth);
  resblock(`${p}middle_block.2`, ch, ch);

  block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const cout = mc * /** @type {number} */ (u.channelMult[level]);
    for (let r = 0; r <= u.numResBlocks; r++) {
      const name = `${p}output_blocks.${block++}`;
      const skip = /** @type {number} */ (skipChannels.pop());
      resblock(`${name}.0`, ch + skip, cout);
      ch = cout;
      let sub = 1;
      if (attn.has(level)) spatialTransformer(`${name}.${sub++}`, ch, /** @type {number} */ (depths[level]));
      if (level !== 0 && r === u.numResBlocks) s.conv(`${name}.${sub}.conv`, ch, ch, 3);
    }
  }

  s.norm(`${p}out.0`, ch);
  s.conv(`${p}out.2`, ch, u.outChannels, 3);
}

/**
 * AutoencoderKL of ldm/models/autoencoder.py with the Encoder/Decoder of
 * ldm/modules/diffusionmodules/model.py (attention only in the middle blocks, as SD's VAE).
 * @param {VaeConfig} v
 * @param {TensorSpec[]} out
 */
function vaeSpecs(v, out) {
  const s = new SpecList(out);
  const p = COMPONENT_PREFIXES.vae;
  const levels = v.chMult.length;

  /** @param {string} name @param {number} cin @param {number} cout */
  const resnet = (name, cin, cout) => {
    s.norm(`${name}.norm1`, cin);
    s.conv(`${name}.conv1`, cin, cout, 3);
    s.norm(`${name}.norm2`, cout);
    s.conv(`${name}.conv2`, cout, cout, 3);
    if (cin !== cout) s.conv(`${name}.nin_shortcut`, cin, cout, 1);
  };
  /** @param {string} name @param {number} c */
  const mid = (name, c) => {
    resnet(`${name}.block_1`, c, c);
    s.norm(`${name}.attn_1.norm`, c);
    for (const x of ['q', 'k', 'v', 'proj_out']) s.conv(`${name}.attn_1.${x}`, c, c, 1);
    resnet(`${name}.block_2`, c, c);
  };

  // Encoder
  const e = `${p}encoder`;
  s.conv(`${e}.conv_in`, v.inChannels, v.ch, 3);
  let ch = v.ch;
  for (let level = 0; level < levels; level++) {
    const cout = v.ch * /** @type {number} */ (v.chMult[level]);
    for (let r = 0; r < v.numResBlocks; r++) {
      resnet(`${e}.down.${level}.block.${r}`, ch, cout);
      ch = cout;
    }
    if (level !== levels - 1) s.conv(`${e}.down.${level}.downsample.conv`, ch, ch, 3);
  }
  mid(`${e}.mid`, ch);
  s.norm(`${e}.norm_out`, ch);
  s.conv(`${e}.conv_out`, ch, 2 * v.zChannels, 3);

  // Decoder: `up` is built from the deepest level back, and stored under each level's index.
  const d = `${p}decoder`;
  ch = v.ch * /** @type {number} */ (v.chMult[levels - 1]);
  s.conv(`${d}.conv_in`, v.zChannels, ch, 3);
  mid(`${d}.mid`, ch);
  for (let level = levels - 1; level >= 0; level--) {
    const cout = v.ch * /** @type {number} */ (v.chMult[level]);
    for (let r = 0; r <= v.numResBlocks; r++) {
      resnet(`${d}.up.${level}.block.${r}`, ch, cout);
      ch = cout;
    }
    if (level !== 0) s.conv(`${d}.up.${level}.upsample.conv`, ch, ch, 3);
  }
  s.norm(`${d}.norm_out`, ch);
  s.conv(`${d}.conv_out`, ch, v.outChannels, 3);

  s.conv(`${p}quant_conv`, 2 * v.zChannels, 2 * v.embedDim, 1);
  s.conv(`${p}post_quant_conv`, v.embedDim, v.zChannels, 1);
}

/**
 * CLIPTextModel of transformers (FrozenCLIPEmbedder's `transformer`).
 * @param {ClipConfig} c
 * @param {string} p  name prefix, ending in `text_model.`
 * @param {TensorSpec[]} out
 */
function clipSpecs(c, p, out) {
  const s = new SpecList(out);
  const w = c.width;
  s.add(`${p}embeddings.token_embedding.weight`, [c.vocab, w], 'embedding');
  s.add(`${p}embeddings.position_embedding.weight`, [c.positions, w], 'embedding');
  if (c.positionIds !== false) s.add(`${p}embeddings.position_ids`, [1, c.positions], 'position_ids');
  for (let l = 0; l < c.layers; l++) {
    const b = `${p}encoder.layers.${l}`;
    for (const x of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) s.linear(`${b}.self_attn.${x}`, w, w);
    s.norm(`${b}.layer_norm1`, w);
    s.linear(`${b}.mlp.fc1`, w, c.intermediate);
    s.linear(`${b}.mlp.fc2`, c.intermediate, w);
    s.norm(`${b}.layer_norm2`, w);
  }
  s.norm(`${p}final_layer_norm`, w);
}

/**
 * OpenCLIP's text tower as sgm's FrozenOpenCLIPEmbedder(2) keeps it under `model.` (the visual
 * tower deleted): open_clip CLIP's transformer.resblocks (ResidualAttentionBlock: ln_1,
 * nn.MultiheadAttention with one packed in_proj [3·width, width] for q, k, v, ln_2, mlp c_fc /
 * c_proj), token_embedding, positional_embedding (a bare [positions, width] parameter), ln_final,
 * text_projection (a bare [width, embed_dim] parameter, applied as x @ P) and logit_scale.
 * @param {ClipConfig} c
 * @param {string} p  name prefix, ending in `model.`
 * @param {TensorSpec[]} out
 */
function openClipSpecs(c, p, out) {
  const s = new SpecList(out);
  const w = c.width;
  for (let l = 0; l < c.layers; l++) {
    const b = `${p}transformer.resblocks.${l}`;
    s.norm(`${b}.ln_1`, w);
    s.add(`${b}.attn.in_proj_weight`, [3 * w, w], 'weight', w);
    s.add(`${b}.attn.in_proj_bias`, [3 * w], 'bias');
    s.linear(`${b}.attn.out_proj`, w, w);
    s.norm(`${b}.ln_2`, w);
    s.linear(`${b}.mlp.c_fc`, w, c.intermediate);
    s.linear(`${b}.mlp.c_proj`, c.intermediate, w);
  }
  s.add(`${p}token_embedding.weight`, [c.vocab, w], 'embedding');
  s.add(`${p}positional_embedding`, [c.positions, w], 'embedding');
  s.norm(`${p}ln_final`, w);
  s.add(`${p}text_projection`, [w, /** @type {number} */ (c.projectionDim)], 'weight', w);
  s.add(`${p}logit_scale`, [], 'logit_scale');
}

/** @param {ClipConfig} c @param {string} prefix @param {TensorSpec[]} out */
function textSpecs(c, prefix, out) {
  if (c.naming === 'openclip') openClipSpecs(c, prefix, out);
  else clipSpecs(c, prefix, out);
}

/**
 * Every tensor of the checkpoint, in file order: UNet, VAE, text encoder(s).
 * @param {ModelConfig} config
 * @returns {TensorSpec[]}
 */
export function tensorSpecs(config) {
  const c = validateConfig(config);
  const prefixes = componentPrefixes(c);
  /** @type {TensorSpec[]} */
  const out = [];
  unetSpecs(c.unet, out);
  vaeSpecs(c.vae, out);
  textSpecs(c.clip, prefixes.clip, out);
  if (c.clip2) textSpecs(c.clip2, /** @type {string} */ (prefixes.clip2), out);
  return out;
}

/** @typedef {'unet' | 'vae' | 'clip' | 'clip2'} Component */

/**
 * The component a tensor of any preset's checkpoint belongs to (SD1.x, SD2.x or SDXL names).
 * @param {string} name
 * @returns {Component}
 */
export function componentOf(name) {
  if (name.startsWith(COMPONENT_PREFIXES.unet)) return 'unet';
  if (name.startsWith(COMPONENT_PREFIXES.vae)) return 'vae';
  if (name.startsWith(COMPONENT_PREFIXES.clip) || name.startsWith(TEXT_PREFIXES.sd2) || name.startsWith(TEXT_PREFIXES.sdxlClip) ||
      name.startsWith(TEXT_PREFIXES.refinerClip)) return 'clip';
  if (name.startsWith(TEXT_PREFIXES.sdxlClip2)) return 'clip2';
  throw new Error(`tensor '${name}' belongs to no component`);
}

/** @param {number[]} shape */
function numel(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------------------------------------
// Values

/** 32-bit FNV-1a of a string's UTF-16 code units, mixed with the seed (murmur3's finalizer). */
export function tensorSeed(/** @type {number} */ seed, /** @type {string} */ name) {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** @param {TensorSpec} spec @returns {{ mean: number, std: number }} */
function distribution(spec) {
  switch (spec.init) {
    case 'weight':
      return { mean: 0, std: 1 / Math.sqrt(spec.fanIn) };
    case 'bias':
      return { mean: 0, std: 0.05 };
    case 'norm_weight':
      return { mean: 1, std: 0.1 };
    case 'norm_bias':
      return { mean: 0, std: 0.05 };
    case 'embedding':
      return { mean: 0, std: 0.1 };
    case 'logit_scale':
      // CLIP's temperature, ln 100: the value training clamps it to, and released models hold.
      return { mean: Math.log(100), std: 0 };
    default:
      throw new Error(`no distribution for ${spec.init}`);
  }
}

/**
 * A stream of one tensor's values: mulberry32 (a 32-bit counter through a mixing function),
 * each output's two 16-bit halves summed into a triangular variate on [-1, 1] (variance 1/6),
 * scaled to the tensor's mean and std.
 */
class ValueStream {
  /** @param {TensorSpec} spec @param {number} seed */
  constructor(spec, seed) {
    const { mean, std } = distribution(spec);
    this.state = tensorSeed(seed, spec.name);
    this.scale = (std * Math.sqrt(6)) / 65535;
    this.offset = mean - 65535 * this.scale;
  }

  /** Fills `out` with the next out.length values. @param {Float32Array} out */
  fill(out) {
    let a = this.state;
    const scale = this.scale;
    const offset = this.offset;
    for (let i = 0; i < out.length; i++) {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t = (t + Math.imul(t ^ (t >>> 7), t | 61)) ^ t;
      t = (t ^ (t >>> 14)) >>> 0;
      out[i] = ((t & 0xffff) + (t >>> 16)) * scale + offset;
    }
    this.state = a;
  }
}

/** IEEE binary16 bits -> the number they hold (the inverse of f32BitsToF16). @param {number} h */
export function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * IEEE binary16 bits of float32 bits, round to nearest even; overflow goes to infinity.
 * @param {number} x float32 bits as an unsigned 32-bit integer
 */
export function f32BitsToF16(x) {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is right
  return sign | h;
}

const DTYPE_INFO = Object.freeze({
  f32: { safetensors: 'F32', bytes: 4 },
  f16: { safetensors: 'F16', bytes: 2 },
});

/** @param {TensorSpec} spec @param {WeightDtype} dtype */
function storedType(spec, dtype) {
  return spec.init === 'position_ids' ? { safetensors: 'I64', bytes: 8 } : DTYPE_INFO[dtype];
}

const CHUNK = 1 << 20; // values per generated chunk

/**
 * @typedef {{ f32: Float32Array, u32: Uint32Array, f16: Uint16Array }} Scratch
 * @typedef {{ sets: Scratch[], next: number }} ScratchRing
 */

/** @returns {Scratch} */
function newScratch() {
  const f32 = new Float32Array(CHUNK);
  return { f32, u32: new Uint32Array(f32.buffer), f16: new Uint16Array(CHUNK) };
}

/**
 * Yields one tensor's bytes chunk by chunk. Chunks are views into the ring's scratch sets,
 * taken in turn: with two sets, a chunk stays valid while the next one is produced.
 * @param {TensorSpec} spec
 * @param {number} seed
 * @param {WeightDtype} dtype
 * @param {ScratchRing} ring
 * @returns {Generator<Uint8Array>}
 */
function* tensorChunks(spec, seed, dtype, ring) {
  const n = numel(spec.shape);
  if (spec.init === 'position_ids') {
    const ids = new BigInt64Array(n);
    for (let i = 0; i < n; i++) ids[i] = BigInt(i);
    yield new Uint8Array(ids.buffer);
    return;
  }
  const stream = new ValueStream(spec, seed);
  for (let done = 0; done < n; done += CHUNK) {
    const len = Math.min(CHUNK, n - done);
    const scratch = /** @type {Scratch} */ (ring.sets[ring.next]);
    ring.next = (ring.next + 1) % ring.sets.length;
    const f32 = scratch.f32.subarray(0, len);
    stream.fill(f32);
    if (dtype === 'f32') {
      yield new Uint8Array(f32.buffer, 0, len * 4);
    } else {
      const { u32, f16 } = scratch;
      for (let i = 0; i < len; i++) f16[i] = f32BitsToF16(/** @type {number} */ (u32[i]));
      yield new Uint8Array(f16.buffer, 0, len * 2);
    }
  }
}

/**
 * One tensor's stored bytes, whole (for tests and small models; the file writer streams).
 * @param {TensorSpec} spec
 * @param {number} seed
 * @param {WeightDtype} dtype
 * @returns {Uint8Array}
 */
export function tensorBytes(spec, seed, dtype) {
  checkSeedAndDtype(seed, dtype);
  const { bytes } = storedType(spec, dtype);
  const out = new Uint8Array(numel(spec.shape) * bytes);
  let at = 0;
  for (const chunk of tensorChunks(spec, seed, dtype, { sets: [newScratch()], next: 0 })) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/** @param {unknown} seed @param {unknown} dtype */
function checkSeedAndDtype(seed, dtype) {
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be an integer from 0 to 2^32-1, not ${JSON.stringify(seed)}`);
  if (dtype !== 'f32' && dtype !== 'f16') throw new RangeError(`dtype must be 'f32' or 'f16', not ${JSON.stringify(dtype)}`);
}

// ---------------------------------------------------------------------------------------------
// The file

/**
 * @typedef {object} GenerateOptions
 * @property {string} out                  path of the .safetensors file to write
 * @property {string} [preset]             a key of PRESETS (default 'tiny' when no config)
 * @property {ModelConfig} [config]        a full config instead of a preset
 * @property {WeightDtype} [dtype]         default 'f16'
 * @property {number} [seed]               0 .. 2^32-1, default 0
 * @property {(p: { bytesWritten: number, totalBytes: number, tensor: string }) => void} [onProgress]
 *                                         called after each tensor
 *
 * @typedef {object} ComponentSummary
 * @property {number} tensors
 * @property {number} parameters   elements of floating-point tensors (position_ids excluded)
 * @property {number} bytes
 *
 * @typedef {object} GenerateResult
 * @property {string} path
 * @property {string | undefined} preset
 * @property {ModelConfig} config
 * @property {WeightDtype} dtype
 * @property {number} seed
 * @property {number} tensorCount
 * @property {number} parameterCount
 * @property {number} headerBytes   the 8-byte length plus the JSON header
 * @property {number} fileBytes
 * @property {Partial<Record<Component, ComponentSummary>>} components  clip2 for SDXL only
 * @property {Record<string, string>} metadata
 */

/**
 * Writes all of `bytes` at `position`, however many calls that takes.
 * @param {import('node:fs/promises').FileHandle} fh
 * @param {Uint8Array} bytes
 * @param {number} position
 */
async function writeAll(fh, bytes, position) {
  for (let done = 0; done < bytes.byteLength; ) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten} at byte ${position + done}`);
    done += bytesWritten;
  }
}

/**
 * The `sdnode.attention_heads` metadata value: what the shapes cannot tell. Written into every
 * format that holds metadata (safetensors header, GGUF, the .ckpt's top-level dict).
 * @param {ModelConfig} config
 */
export function attentionHeadsMetadata(config) {
  return JSON.stringify({
    unet: config.unet.numHeads !== undefined ? { numHeads: config.unet.numHeads } : { headDim: config.unet.headDim },
    clip: { numHeads: config.clip.heads },
    ...(config.clip2 ? { clip2: { numHeads: config.clip2.heads } } : {}),
  });
}

/**
 * Writes a random-weight LDM single-file safetensors checkpoint. The data goes to a temporary
 * file beside `out` that is renamed into place when complete, so a failed or interrupted run
 * leaves no partial model behind.
 * @param {GenerateOptions} options
 * @returns {Promise<GenerateResult>}
 */
export async function generateModel(options) {
  if (!options || typeof options !== 'object') throw new TypeError('options must be an object');
  const { out, config: given, dtype = 'f16', seed = 0, onProgress } = options;
  if (typeof out !== 'string' || out === '') throw new TypeError('options.out must be a file path');
  if (given !== undefined && options.preset !== undefined) throw new TypeError('give a preset or a config, not both');
  const preset = given === undefined ? (options.preset ?? 'tiny') : undefined;
  if (preset !== undefined && !Object.hasOwn(PRESETS, preset))
    throw new RangeError(`unknown preset '${preset}' (presets: ${Object.keys(PRESETS).join(', ')})`);
  checkSeedAndDtype(seed, dtype);
  if (endianness() !== 'LE') throw new Error('safetensors is little-endian; this writer needs a little-endian machine');

  const config = validateConfig(preset !== undefined ? /** @type {ModelConfig} */ (PRESETS[preset]) : /** @type {ModelConfig} */ (given));
  const specs = tensorSpecs(config);

  /** @type {Record<string, string>} */
  const metadata = {
    format: 'pt',
    'sdnode.generator': `sdnode generate-model ${GENERATOR_VERSION}`,
    'sdnode.config': JSON.stringify(config),
    'sdnode.attention_heads': attentionHeadsMetadata(config),
    'sdnode.seed': String(seed),
    'sdnode.dtype': dtype,
  };
  if (preset !== undefined) metadata['sdnode.preset'] = preset;

  // Eight-byte types first, so every tensor's data starts aligned to its element size (the
  // reference writer orders by alignment for the same reason); otherwise module order.
  const ordered = [...specs.filter((s) => s.init === 'position_ids'), ...specs.filter((s) => s.init !== 'position_ids')];

  /** @type {Record<string, unknown>} */
  const header = { __metadata__: metadata };
  /** @type {Partial<Record<Component, ComponentSummary>>} */
  const components = {
    unet: { tensors: 0, parameters: 0, bytes: 0 },
    vae: { tensors: 0, parameters: 0, bytes: 0 },
    clip: { tensors: 0, parameters: 0, bytes: 0 },
    ...(config.clip2 ? { clip2: { tensors: 0, parameters: 0, bytes: 0 } } : {}),
  };
  let dataBytes = 0;
  for (const spec of ordered) {
    if (Object.hasOwn(header, spec.name)) throw new Error(`tensor '${spec.name}' twice`);
    const type = storedType(spec, dtype);
    const size = numel(spec.shape) * type.bytes;
    header[spec.name] = { dtype: type.safetensors, shape: spec.shape, data_offsets: [dataBytes, dataBytes + size] };
    dataBytes += size;
    const c = /** @type {ComponentSummary} */ (components[componentOf(spec.name)]);
    c.tensors++;
    c.bytes += size;
    if (spec.init !== 'position_ids') c.parameters += numel(spec.shape);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerJson = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8 + headerJson.length);
  prefix.writeBigUInt64LE(BigInt(headerJson.length), 0);
  headerJson.copy(prefix, 8);
  const fileBytes = prefix.length + dataBytes;

  const path = resolve(out);
  await writeAtomically(path, async (fh) => {
    let position = 0;
    await writeAll(fh, prefix, position);
    position += prefix.length;
    // Two scratch sets: each chunk is written while the next one is generated.
    /** @type {ScratchRing} */
    const ring = { sets: [newScratch(), newScratch()], next: 0 };
    /** @type {Promise<unknown> | null} */
    let pending = null;
    for (const spec of ordered) {
      for (const chunk of tensorChunks(spec, seed, dtype, ring)) {
        if (pending) await pending;
        pending = writeAll(fh, chunk, position);
        position += chunk.byteLength;
      }
      onProgress?.({ bytesWritten: position, totalBytes: fileBytes, tensor: spec.name });
    }
    if (pending) await pending;
    if (position !== fileBytes) throw new Error(`wrote ${position} bytes, expected ${fileBytes}`);
  });

  const count = (/** @type {'tensors' | 'parameters'} */ k) => Object.values(components).reduce((n, c) => n + c[k], 0);
  return {
    path,
    preset,
    config,
    dtype,
    seed,
    tensorCount: count('tensors'),
    parameterCount: count('parameters'),
    headerBytes: prefix.length,
    fileBytes,
    components,
    metadata,
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

const USAGE = `usage: node scripts/generate-model.mjs --out FILE [--preset NAME | --config FILE.json]
                                        [--dtype f16|f32] [--seed N] [--layout ldm|diffusers]
                                        [--format safetensors|ckpt|gguf] [--ema] [--weight-type T]
Writes a random-weight Stable Diffusion 1.x, 2.x or XL checkpoint (LDM single-file safetensors).
  --preset   ${Object.keys(PRESETS).join(', ')} (default tiny)
  --config   a JSON file {unet, vae, clip, clip2?} (see the typedefs at the top of this script)
  --dtype    weight type, default f16
  --seed     0 .. 2^32-1, default 0
  --layout   ldm (default): one .safetensors file; diffusers: a diffusers folder at --out
             with the same values (scripts/generator/diffusers-layout.mjs; SDXL with
             text_encoder_2)
  --format   for the ldm layout: safetensors (default); ckpt: a PyTorch training checkpoint
             (state_dict nesting; --ema adds a model_ema.* UNet copy; see
             scripts/generator/torch-checkpoint.mjs); gguf: converted by sdnode's convertModel
             (needs the built package) to --weight-type (default: --dtype), LDM names`;

/** @param {number} n */
function human(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

/** @param {string[]} argv */
async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', short: 'o' },
      preset: { type: 'string', short: 'p' },
      config: { type: 'string', short: 'c' },
      dtype: { type: 'string', short: 't' },
      seed: { type: 'string', short: 's' },
      layout: { type: 'string' },
      format: { type: 'string' },
      ema: { type: 'boolean' },
      'weight-type': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.out) throw new TypeError(`--out is required\n${USAGE}`);
  if (values.seed !== undefined && !/^[0-9]+$/.test(values.seed)) throw new RangeError(`--seed must be a non-negative integer, not '${values.seed}'`);
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  /** @type {GenerateOptions} */
  const options = { out: values.out, dtype: /** @type {WeightDtype} */ (values.dtype ?? 'f16'), seed };
  if (values.config !== undefined) options.config = JSON.parse(readFileSync(values.config, 'utf8'));
  if (values.preset !== undefined) options.preset = values.preset;
  if (process.stderr.isTTY) {
    let shown = -1;
    options.onProgress = ({ bytesWritten, totalBytes }) => {
      const pct = Math.floor((100 * bytesWritten) / totalBytes);
      if (pct !== shown) process.stderr.write(`\r${pct}%`);
      shown = pct;
    };
  }
  if (values.layout !== undefined && values.layout !== 'ldm' && values.layout !== 'diffusers')
    throw new RangeError(`--layout must be ldm or diffusers, not '${values.layout}'`);
  if (values.layout === 'diffusers') {
    const { writeDiffusersFolder } = await import('./generator/diffusers-layout.mjs');
    const { onProgress: _, ...folder } = options;
    const r = await writeDiffusersFolder(folder);
    console.log(`wrote ${r.path} (diffusers layout, ${r.dtype}, seed ${r.seed}, ${r.tensorCount} tensors)`);
    return;
  }
  const format = values.format ?? 'safetensors';
  if (!['safetensors', 'ckpt', 'gguf'].includes(format)) throw new RangeError(`--format must be safetensors, ckpt or gguf, not '${format}'`);
  if (format === 'ckpt') {
    const { writeTorchCheckpoint } = await import('./generator/torch-checkpoint.mjs');
    const { onProgress: _, ...rest } = options;
    const r = await writeTorchCheckpoint({ ...rest, ema: values.ema ?? false });
    console.log(`wrote ${r.path} (PyTorch checkpoint, ${r.tensorCount} tensors)`);
    return;
  }
  if (format === 'gguf') {
    const { convertModel } = await import('../dist/index.js');
    const tmp = `${resolve(values.out)}.src-${process.pid}.safetensors`;
    try {
      await generateModel({ ...options, out: tmp });
      const r = await convertModel(tmp, values.out, { weightType: values['weight-type'] ?? options.dtype });
      console.log(`wrote ${r.path} (GGUF, ${r.tensors.length} tensors)`);
    } finally {
      await rm(tmp, { force: true });
    }
    return;
  }
  const started = process.hrtime.bigint();
  const r = await generateModel(options);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (process.stderr.isTTY) process.stderr.write('\r');
  console.log(`wrote ${r.path}`);
  console.log(`  ${r.preset ? `preset ${r.preset}, ` : ''}${r.dtype}, seed ${r.seed}, ${seconds.toFixed(1)} s`);
  for (const [name, c] of Object.entries(r.components))
    console.log(`  ${name.padEnd(5)} ${String(c.tensors).padStart(5)} tensors  ${human(c.parameters).padStart(9)} parameters  ${human(c.bytes).padStart(9)}B`);
  console.log(`  total ${String(r.tensorCount).padStart(5)} tensors  ${human(r.parameterCount).padStart(9)} parameters  ${human(r.fileBytes).padStart(9)}B (${r.fileBytes} bytes, header ${r.headerBytes})`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(`generate-model: ${err instanceof Error ? err.message : err}`);
    process.exitCode = 1;
  });
}
