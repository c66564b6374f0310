// Writes the generator's random-weight model as a diffusers folder: the same config, and in
// every tensor the same values that the LDM single-file writer puts in the corresponding LDM
// tensor (values are drawn from the seed and the *LDM* name), so a loader of either layout can
// be checked bit-exactly against the other.
//
//   out/model_index.json
//   out/scheduler/scheduler_config.json
//   out/unet/config.json          out/unet/diffusion_pytorch_model.safetensors
//   out/vae/config.json           out/vae/diffusion_pytorch_model.safetensors
//   out/text_encoder/config.json  out/text_encoder/model.safetensors
//   out/text_encoder_2/...        SDXL: the OpenCLIP bigG encoder as CLIPTextModelWithProjection
//   out/tokenizer/{vocab,merges,...}  only with `tokenizerFrom` (CLIP's bpe_simple_vocab_16e6.txt.gz);
//   out/tokenizer_2/...           SDXL, the same vocabulary with "!" as the padding token
//
// OpenCLIP text towers (SD2.x, SDXL's second encoder) are renamed as diffusers'
// convert_open_clip_checkpoint and its SDXL counterpart do: token_embedding /
// positional_embedding / ln_final -> text_model.embeddings.token_embedding.weight /
// embeddings.position_embedding.weight / final_layer_norm; resblocks.N.{ln_1, ln_2, attn.out_proj,
// mlp.c_fc, mlp.c_proj} -> encoder.layers.N.{layer_norm1, layer_norm2, self_attn.out_proj,
// mlp.fc1, mlp.fc2}; the packed attn.in_proj_weight/bias cut into q_proj, k_proj, v_proj (rows
// 0..W, W..2W, 2W..3W); SDXL's text_projection [W, E] (applied as x @ P) stored transposed as the
// Linear text_projection.weight [E, W]; logit_scale dropped. SD2.x's text_encoder drops the last
// layer (diffusers keeps 23 of ViT-H's 24: the UNet reads the penultimate one) and the
// projection, as the released stabilityai/stable-diffusion-2-1 folder does.
//
// The tensor names follow diffusers' UNet2DConditionModel / AutoencoderKL and transformers'
// CLIPTextModel, walked from the config: per level `down_blocks.i.resnets.j`,
// `down_blocks.i.attentions.j` (levels with attention), `down_blocks.i.downsamplers.0.conv`
// (all but the last level), `mid_block`, and `up_blocks` from the deepest level up, each with
// one resnet more than on the way down and `upsamplers.0.conv` on all but the last. The pairing
// with the LDM names is the one of diffusers' convert_diffusers_to_original_stable_diffusion.py
// (resnet norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut = in_layers.0/in_layers.2/
// emb_layers.1/out_layers.0/out_layers.3/skip_connection; VAE conv_shortcut = nin_shortcut,
// conv_norm_out = norm_out, up_blocks reversed against decoder.up, mid-block attention
// group_norm/to_q/to_k/to_v/to_out.0 — or, with `legacyVaeAttention`, the older
// query/key/value/proj_attn — as [C, C] linears where LDM has [C, C, 1, 1] convs).
//
// Only node: builtins.
import { mkdirSync, readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { COMPONENT_PREFIXES, GENERATOR_VERSION, PRESETS, componentPrefixes, tensorBytes, tensorSpecs, validateConfig } from '../generate-model.mjs';
import { writeAtomically } from './files.mjs';

/**
 * @typedef {import('../generate-model.mjs').ModelConfig} ModelConfig
 * @typedef {import('../generate-model.mjs').TensorSpec} TensorSpec
 * @typedef {import('../generate-model.mjs').WeightDtype} WeightDtype
 *
 * @typedef {object} DiffusersTensor
 * @property {string} name      the name in the diffusers file
 * @property {number[]} shape   its shape there
 * @property {TensorSpec} spec  the LDM tensor it holds the values of
 * @property {[number, number]} [rows]  only these rows (first dimension) of it
 * @property {boolean} [transpose]      it transposed (2-d)
 *
 * @typedef {{ unet: DiffusersTensor[], vae: DiffusersTensor[], textEncoder: DiffusersTensor[], textEncoder2?: DiffusersTensor[] }} DiffusersTensors
 */

const DIFFUSERS_VERSION = '0.27.2';
const TRANSFORMERS_VERSION = '4.38.2';

// LDM ResBlock (openaimodel.py) -> diffusers ResnetBlock2D.
const UNET_RESNET = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['skip_connection.', 'conv_shortcut.'],
];
// LDM ResnetBlock (model.py) -> diffusers ResnetBlock2D.
const VAE_RESNET = [['nin_shortcut.', 'conv_shortcut.']];
// LDM AttnBlock -> diffusers Attention (current names, and the pre-0.14 ones).
const VAE_ATTENTION = [
  ['norm.', 'group_norm.'],
  ['q.', 'to_q.'],
  ['k.', 'to_k.'],
  ['v.', 'to_v.'],
  ['proj_out.', 'to_out.0.'],
];
const VAE_ATTENTION_LEGACY = [
  ['norm.', 'group_norm.'],
  ['q.', 'query.'],
  ['k.', 'key.'],
  ['v.', 'value.'],
  ['proj_out.', 'proj_attn.'],
];

/**
 * Pairs of (diffusers module, LDM module, renames of what follows) for one component.
 * @typedef {[string, string, string[][] | null, boolean?]} ModulePair  the 4th: squeeze 1×1 convs
 */

/** @param {ModelConfig['unet']} u @returns {ModulePair[]} */
function unetModules(u) {
  /** @type {ModulePair[]} */
  const m = [
    ['conv_in', 'input_blocks.0.0', null],
    ['time_embedding.linear_1', 'time_embed.0', null],
    ['time_embedding.linear_2', 'time_embed.2', null],
  ];
  // SDXL's ADM MLP (diffusers' addition_embed_type "text_time").
  if (u.admInChannels !== undefined) m.push(['add_embedding.linear_1', 'label_emb.0.0', null], ['add_embedding.linear_2', 'label_emb.0.2', null]);
  const levels = u.channelMult.length;
  const attn = new Set(u.attentionLevels);
  let n = 1;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < u.numResBlocks; j++, n++) {
      m.push([`down_blocks.${i}.resnets.${j}`, `input_blocks.${n}.0`, UNET_RESNET]);
      if (attn.has(i)) m.push([`down_blocks.${i}.attentions.${j}`, `input_blocks.${n}.1`, null]);
    }
    if (i !== levels - 1) m.push([`down_blocks.${i}.downsamplers.0.conv`, `input_blocks.${n++}.0.op`, null]);
  }
  m.push(['mid_block.resnets.0', 'middle_block.0', UNET_RESNET]);
  m.push(['mid_block.attentions.0', 'middle_block.1', null]);
  m.push(['mid_block.resnets.1', 'middle_block.2', UNET_RESNET]);
  n = 0;
  for (let up = 0; up < levels; up++) {
    const level = levels - 1 - up;
    for (let j = 0; j <= u.numResBlocks; j++, n++) {
      m.push([`up_blocks.${up}.resnets.${j}`, `output_blocks.${n}.0`, UNET_RESNET]);
      if (attn.has(level)) m.push([`up_blocks.${up}.attentions.${j}`, `output_blocks.${n}.1`, null]);
      if (level !== 0 && j === u.numResBlocks)
        m.push([`up_blocks.${up}.upsamplers.0.conv`, `output_blocks.${n}.${attn.has(level) ? 2 : 1}.conv`, null]);
    }
  }
  m.push(['conv_norm_out', 'out.0', null]);
  m.push(['conv_out', 'out.2', null]);
  return m;
}

/** @param {ModelConfig['vae']} v @param {boolean} legacy @returns {ModulePair[]} */
function vaeModules(v, legacy) {
  const levels = v.chMult.length;
  const attention = legacy ? VAE_ATTENTION_LEGACY : VAE_ATTENTION;
  /** @param {string} half @returns {ModulePair[]} */
  const mid = (half) => [
    [`${half}.mid_block.resnets.0`, `${half}.mid.block_1`, VAE_RESNET],
    [`${half}.mid_block.attentions.0`, `${half}.mid.attn_1`, attention, true],
    [`${half}.mid_block.resnets.1`, `${half}.mid.block_2`, VAE_RESNET],
  ];
  /** @type {ModulePair[]} */
  const m = [['encoder.conv_in', 'encoder.conv_in', null]];
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < v.numResBlocks; j++) m.push([`encoder.down_blocks.${i}.resnets.${j}`, `encoder.down.${i}.block.${j}`, VAE_RESNET]);
    if (i !== levels - 1) m.push([`encoder.down_blocks.${i}.downsamplers.0.conv`, `encoder.down.${i}.downsample.conv`, null]);
  }
  m.push(...mid('encoder'));
  m.push(['encoder.conv_norm_out', 'encoder.norm_out', null], ['encoder.conv_out', 'encoder.conv_out', null]);
  m.push(['decoder.conv_in', 'decoder.conv_in', null]);
  m.push(...mid('decoder'));
  for (let up = 0; up < levels; up++) {
    const level = levels - 1 - up;
    for (let j = 0; j <= v.numResBlocks; j++) m.push([`decoder.up_blocks.${up}.resnets.${j}`, `decoder.up.${level}.block.${j}`, VAE_RESNET]);
    if (level !== 0) m.push([`decoder.up_blocks.${up}.upsamplers.0.conv`, `decoder.up.${level}.upsample.conv`, null]);
  }
  m.push(['decoder.conv_norm_out', 'decoder.norm_out', null], ['decoder.conv_out', 'decoder.conv_out', null]);
  m.push(['quant_conv', 'quant_conv', null], ['post_quant_conv', 'post_quant_conv', null]);
  return m;
}

/**
 * Names every LDM tensor of one component by walking the diffusers modules in order.
 * @param {ModulePair[]} modules
 * @param {string} ldmPrefix
 * @param {TensorSpec[]} specs  the component's LDM specs
 * @returns {DiffusersTensor[]}
 */
function walk(modules, ldmPrefix, specs) {
  /** @type {DiffusersTensor[]} */
  const out = [];
  const claimed = new Set();
  for (const [diff, ldm, renames, squeeze] of modules) {
    const from = `${ldmPrefix}${ldm}.`;
    const under = specs.filter((s) => s.name.startsWith(from));
    if (under.length === 0) throw new Error(`diffusers layout: no LDM tensors under ${from}`);
    for (const spec of under) {
      if (claimed.has(spec.name)) throw new Error(`diffusers layout: ${spec.name} claimed twice`);
      claimed.add(spec.name);
      let rest = spec.name.slice(from.length);
      const r = renames?.find(([l]) => rest.startsWith(l));
      if (r) rest = r[1] + rest.slice(r[0].length);
      let shape = spec.shape;
      if (squeeze && rest.endsWith('.weight') && shape.length === 4) shape = shape.slice(0, 2);
      out.push({ name: `${diff}.${rest}`, shape, spec });
    }
  }
  const missed = specs.filter((s) => !claimed.has(s.name));
  if (missed.length > 0) throw new Error(`diffusers layout: LDM tensors without a diffusers name: ${missed.map((s) => s.name).join(', ')}`);
  return out;
}

/**
 * The diffusers names and shapes of every tensor of a config, each with the LDM spec whose
 * values it holds. No data is generated.
 * @param {ModelConfig} config
 * @param {{ legacyVaeAttention?: boolean }} [options]
 * @returns {DiffusersTensors}
 */
export function diffusersTensors(config, options = {}) {
  const c = validateConfig(config);
  if (!c.clip2 && c.unet.admInChannels !== undefined) throw new RangeError("the SDXL refiner's diffusers layout is not written (its single file is)");
  const specs = tensorSpecs(c);
  const prefixes = componentPrefixes(c);
  const of = (/** @type {string} */ p) => specs.filter((s) => s.name.startsWith(p));
  const textEncoder = c.clip.naming === 'openclip'
    ? openClipTensors(c.clip, of(prefixes.clip), prefixes.clip, { dropLastLayer: true, projection: false })
    : of(prefixes.clip).map((spec) => ({ name: `text_model.${spec.name.slice(prefixes.clip.length)}`, shape: spec.shape, spec }));
  return {
    unet: walk(unetModules(c.unet), COMPONENT_PREFIXES.unet, of(COMPONENT_PREFIXES.unet)),
    vae: walk(vaeModules(c.vae, options.legacyVaeAttention === true), COMPONENT_PREFIXES.vae, of(COMPONENT_PREFIXES.vae)),
    textEncoder,
    ...(c.clip2 && prefixes.clip2
      ? { textEncoder2: openClipTensors(c.clip2, of(prefixes.clip2), prefixes.clip2, { dropLastLayer: false, projection: true }) }
      : {}),
  };
}

// OpenCLIP resblock -> transformers CLIPEncoderLayer (the packed in_proj is cut apart below).
const OPENCLIP_LAYER = [
  ['ln_1.', 'layer_norm1.'],
  ['ln_2.', 'layer_norm2.'],
  ['attn.out_proj.', 'self_attn.out_proj.'],
  ['mlp.c_fc.', 'mlp.fc1.'],
  ['mlp.c_proj.', 'mlp.fc2.'],
];

/**
 * An OpenCLIP text tower in transformers CLIPTextModel(WithProjection) names.
 * @param {ModelConfig['clip']} c
 * @param {TensorSpec[]} specs   the tower's LDM specs
 * @param {string} prefix        their name prefix (ending in `model.`)
 * @param {{ dropLastLayer: boolean, projection: boolean }} how
 * @returns {DiffusersTensor[]}
 */
function openClipTensors(c, specs, prefix, how) {
  const w = c.width;
  const layers = how.dropLastLayer ? c.layers - 1 : c.layers;
  /** @type {DiffusersTensor[]} */
  const out = [];
  for (const spec of specs) {
    const rest = spec.name.slice(prefix.length);
    const layer = /^transformer\.resblocks\.(\d+)\.(.*)$/.exec(rest);
    if (layer) {
      const n = Number(layer[1]);
      const inner = /** @type {string} */ (layer[2]);
      if (n >= layers) continue;
      const to = `text_model.encoder.layers.${n}.`;
      const packed = /^attn\.in_proj_(weight|bias)$/.exec(inner);
      if (packed) {
        ['q_proj', 'k_proj', 'v_proj'].forEach((proj, i) => {
          out.push({ name: `${to}self_attn.${proj}.${packed[1]}`, shape: [w, ...spec.shape.slice(1)], spec, rows: [i * w, (i + 1) * w] });
        });
        continue;
      }
      const r = OPENCLIP_LAYER.find(([from]) => inner.startsWith(from));
      if (!r) throw new Error(`diffusers layout: no transformers name for ${spec.name}`);
      out.push({ name: `${to}${r[1]}${inner.slice(r[0].length)}`, shape: spec.shape, spec });
    } else if (rest === 'token_embedding.weight') {
      out.push({ name: 'text_model.embeddings.token_embedding.weight', shape: spec.shape, spec });
    } else if (rest === 'positional_embedding') {
      out.push({ name: 'text_model.embeddings.position_embedding.weight', shape: spec.shape, spec });
    } else if (rest.startsWith('ln_final.')) {
      out.push({ name: `text_model.final_layer_norm.${rest.slice('ln_final.'.length)}`, shape: spec.shape, spec });
    } else if (rest === 'text_projection') {
      if (how.projection) out.push({ name: 'text_projection.weight', shape: [spec.shape[1] ?? 0, spec.shape[0] ?? 0], spec, transpose: true });
    } else if (rest !== 'logit_scale') {
      throw new Error(`diffusers layout: no transformers name for ${spec.name}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// config.json files

/** UNet2DConditionModel config. @param {ModelConfig['unet']} u */
function unetConfig(u) {
  const attn = new Set(u.attentionLevels);
  const channels = u.channelMult.map((m) => u.modelChannels * m);
  const levels = channels.length;
  // diffusers' `attention_head_dim` is, for SD1.x/2.x configs, the number of heads (SD1.5: 8;
  // SD2.x: [5, 10, 20, 20] for heads of 64 channels), a naming kept for compatibility.
  const heads = u.numHeads !== undefined ? u.numHeads : channels.map((c) => c / /** @type {number} */ (u.headDim));
  // diffusers takes one depth per level and uses the last for the middle block; a level
  // without attention ignores its entry, which the released SDXL config gives as 1.
  const depth = Array.isArray(u.transformerDepth) ? u.transformerDepth.map((d) => Math.max(d, 1)) : u.transformerDepth;
  const middle = u.transformerDepthMiddle ?? (Array.isArray(u.transformerDepth) ? u.transformerDepth[levels - 1] : u.transformerDepth);
  if (middle !== (Array.isArray(depth) ? depth[levels - 1] : depth))
    throw new RangeError(`unet.transformerDepthMiddle ${middle}: a diffusers UNet's middle block has the last level's depth`);
  /** SDXL's size-and-crop conditioning (UNet2DConditionModel addition_embed_type "text_time"). */
  const adm = u.admInChannels === undefined ? {} : {
    addition_embed_type: 'text_time',
    addition_time_embed_dim: 256,
    projection_class_embeddings_input_dim: u.admInChannels,
  };
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    attention_head_dim: heads,
    block_out_channels: channels,
    center_input_sample: false,
    cross_attention_dim: u.contextDim,
    down_block_types: channels.map((_, i) => (attn.has(i) ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: u.inChannels,
    layers_per_block: u.numResBlocks,
    mid_block_scale_factor: 1,
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    norm_eps: 1e-5,
    norm_num_groups: 32,
    out_channels: u.outChannels,
    sample_size: u.admInChannels === undefined ? 64 : 128,
    transformer_layers_per_block: depth,
    up_block_types: channels.map((_, i) => (attn.has(levels - 1 - i) ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    upcast_attention: false,
    use_linear_projection: u.linearProj === true,
    ...adm,
  };
}

/** AutoencoderKL config (SDXL's: latent scale 0.13025, and kept in f32 by the pipeline).
 * @param {ModelConfig['vae']} v @param {boolean} sdxl */
function vaeConfig(v, sdxl) {
  const channels = v.chMult.map((m) => v.ch * m);
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    block_out_channels: channels,
    down_block_types: channels.map(() => 'DownEncoderBlock2D'),
    in_channels: v.inChannels,
    latent_channels: v.zChannels,
    layers_per_block: v.numResBlocks,
    norm_num_groups: 32,
    out_channels: v.outChannels,
    sample_size: sdxl ? 1024 : 512,
    scaling_factor: sdxl ? 0.13025 : 0.18215,
    ...(sdxl ? { force_upcast: true } : {}),
    up_block_types: channels.map(() => 'UpDecoderBlock2D'),
  };
}

/**
 * transformers CLIPTextModel config (openai/clip-vit-large-patch14's text part), or for an
 * OpenCLIP tower the GELU model diffusers converts it to: CLIPTextModel without the last layer
 * (SD2.x) or CLIPTextModelWithProjection (SDXL's second encoder).
 * @param {ModelConfig['clip']} c @param {number} layers  as written @param {boolean} projection
 */
function textConfig(c, layers = c.layers, projection = false) {
  return {
    architectures: [projection ? 'CLIPTextModelWithProjection' : 'CLIPTextModel'],
    attention_dropout: 0.0,
    bos_token_id: 0,
    dropout: 0.0,
    eos_token_id: 2,
    hidden_act: c.naming === 'openclip' ? 'gelu' : 'quick_gelu',
    hidden_size: c.width,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: c.intermediate,
    layer_norm_eps: 1e-5,
    max_position_embeddings: c.positions,
    model_type: 'clip_text_model',
    num_attention_heads: c.heads,
    num_hidden_layers: layers,
    pad_token_id: 1,
    projection_dim: c.projectionDim ?? c.width,
    torch_dtype: 'float32',
    transformers_version: TRANSFORMERS_VERSION,
    vocab_size: c.vocab,
  };
}

// SD1.x's PNDM scheduler config as the released folders carry it.
const SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: DIFFUSERS_VERSION,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
};

// SDXL's Euler scheduler config as stabilityai/stable-diffusion-xl-base-1.0 carries it.
const SDXL_SCHEDULER_CONFIG = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: DIFFUSERS_VERSION,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
  use_karras_sigmas: false,
};

// ---------------------------------------------------------------------------------------------
// Tokenizer: CLIP's BPE file -> transformers' CLIPTokenizer vocab.json + merges.txt

/** GPT-2/CLIP byte -> printable character table, in its construction order. */
function byteCharacters() {
  /** @type {number[]} */
  const bytes = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return chars.map((c) => String.fromCodePoint(c));
}

/**
 * The vocabulary as CLIP's SimpleTokenizer builds it (and transformers' CLIPTokenizer files hold
 * it): the 256 byte characters, the same with `</w>`, one token per merge (the file's lines
 * 1 .. 48894), then <|startoftext|> and <|endoftext|> — 49408 tokens.
 * @param {string} path  bpe_simple_vocab_16e6.txt.gz
 * @param {string} [padToken]  '<|endoftext|>' (CLIP's), or '!' (SDXL's tokenizer_2, OpenCLIP's
 *                             padding with id 0)
 */
export function clipTokenizerFiles(path, padToken = '<|endoftext|>') {
  const lines = gunzipSync(readFileSync(path)).toString('utf8').split('\n');
  const merges = lines.slice(1, 49152 - 256 - 2 + 1);
  if (merges.length !== 48894 || merges.some((m) => m.split(' ').length !== 2))
    throw new Error(`${path}: not CLIP's BPE merge list (expected 48894 merges of two parts)`);
  const base = byteCharacters();
  const vocab = [...base, ...base.map((c) => `${c}</w>`), ...merges.map((m) => m.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
  /** @type {Record<string, number>} */
  const ids = {};
  vocab.forEach((t, i) => {
    ids[t] = i;
  });
  return {
    'vocab.json': JSON.stringify(ids),
    'merges.txt': `#version: 0.2\n${merges.join('\n')}\n`,
    'special_tokens_map.json': JSON.stringify({
      bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: padToken, unk_token: '<|endoftext|>',
    }, null, 2),
    'tokenizer_config.json': JSON.stringify({
      add_prefix_space: false,
      bos_token: '<|startoftext|>',
      do_lower_case: true,
      eos_token: '<|endoftext|>',
      errors: 'replace',
      model_max_length: 77,
      pad_token: padToken,
      tokenizer_class: 'CLIPTokenizer',
      unk_token: '<|endoftext|>',
    }, null, 2),
  };
}

// ---------------------------------------------------------------------------------------------
// Files

/** @param {TensorSpec} spec @param {WeightDtype} dtype */
function stored(spec, dtype) {
  if (spec.init === 'position_ids') return { type: 'I64', bytes: 8 };
  return dtype === 'f32' ? { type: 'F32', bytes: 4 } : { type: 'F16', bytes: 2 };
}

/**
 * Writes one safetensors file (header, then each tensor's bytes), through a temporary file
 * renamed into place.
 * @param {string} path
 * @param {DiffusersTensor[]} tensors
 * @param {number} seed
 * @param {WeightDtype} dtype
 */
async function writeSafetensors(path, tensors, seed, dtype) {
  // Eight-byte types first, so every tensor starts aligned to its element size.
  const ordered = [...tensors.filter((t) => t.spec.init === 'position_ids'), ...tensors.filter((t) => t.spec.init !== 'position_ids')];
  /** @type {Record<string, unknown>} */
  const header = { __metadata__: { format: 'pt', 'sdnode.generator': `sdnode generate-model ${GENERATOR_VERSION} (diffusers layout)` } };
  let offset = 0;
  for (const t of ordered) {
    const { type, bytes } = stored(t.spec, dtype);
    const size = t.shape.reduce((a, b) => a * b, 1) * bytes;
    if (Object.hasOwn(header, t.name)) throw new Error(`tensor '${t.name}' twice`);
    header[t.name] = { dtype: type, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);

  await writeAtomically(path, async (fh, tmp) => {
    await fh.write(prefix);
    await fh.write(headerBytes);
    for (const t of ordered) {
      const data = valuesOf(t, seed, dtype);
      for (let done = 0; done < data.byteLength;) {
        const { bytesWritten } = await fh.write(data, done, data.byteLength - done);
        if (bytesWritten <= 0) throw new Error(`write to ${tmp} failed`);
        done += bytesWritten;
      }
    }
  });
  return 8 + headerBytes.length + offset;
}

/**
 * A diffusers tensor's bytes: its LDM tensor's, or the rows or the transpose of them.
 * @param {DiffusersTensor} t @param {number} seed @param {WeightDtype} dtype
 */
function valuesOf(t, seed, dtype) {
  const data = tensorBytes(t.spec, seed, dtype);
  const size = stored(t.spec, dtype).bytes;
  const [rows, cols] = [t.spec.shape[0] ?? 1, t.spec.shape.slice(1).reduce((a, b) => a * b, 1)];
  if (t.rows) return data.subarray(t.rows[0] * cols * size, t.rows[1] * cols * size);
  if (!t.transpose) return data;
  const out = new Uint8Array(data.byteLength);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out.set(data.subarray((r * cols + c) * size, (r * cols + c + 1) * size), (c * rows + r) * size);
  return out;
}

/** @param {string} path @param {unknown} value */
async function writeJson(path, value) {
  await writeAtomically(path, (fh) => fh.writeFile(typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`));
}

/**
 * @typedef {object} DiffusersOptions
 * @property {string} out                 the folder to write (created; files in it are replaced)
 * @property {string} [preset]            a key of PRESETS (default 'tiny' when no config)
 * @property {ModelConfig} [config]       a full config instead of a preset
 * @property {WeightDtype} [dtype]        default 'f16'
 * @property {number} [seed]              0 .. 2^32-1, default 0
 * @property {string} [tokenizerFrom]     CLIP's bpe_simple_vocab_16e6.txt.gz: also write tokenizer/
 * @property {boolean} [legacyVaeAttention]  VAE attention as query/key/value/proj_attn (diffusers < 0.14)
 */

/**
 * Writes the generated model as a diffusers folder.
 * @param {DiffusersOptions} options
 */
export async function writeDiffusersFolder(options) {
  if (!options || typeof options !== 'object') throw new TypeError('options must be an object');
  const { out, config: given, dtype = 'f16', seed = 0, tokenizerFrom } = options;
  if (typeof out !== 'string' || out === '') throw new TypeError('options.out must be a folder path');
  if (given !== undefined && options.preset !== undefined) throw new TypeError('give a preset or a config, not both');
  const preset = given === undefined ? (options.preset ?? 'tiny') : undefined;
  if (preset !== undefined && !Object.hasOwn(PRESETS, preset))
    throw new RangeError(`unknown preset '${preset}' (presets: ${Object.keys(PRESETS).join(', ')})`);
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be an integer from 0 to 2^32-1, not ${JSON.stringify(seed)}`);
  if (dtype !== 'f32' && dtype !== 'f16') throw new RangeError(`dtype must be 'f32' or 'f16', not ${JSON.stringify(dtype)}`);
  if (tokenizerFrom !== undefined && typeof tokenizerFrom !== 'string') throw new TypeError('options.tokenizerFrom must be a path');
  if (endianness() !== 'LE') throw new Error('safetensors is little-endian; this writer needs a little-endian machine');
  const config = validateConfig(preset !== undefined ? /** @type {ModelConfig} */ (PRESETS[preset]) : /** @type {ModelConfig} */ (given));
  // diffusers' AutoencoderKL has one latent width for quant_conv and the latent itself.
  if (config.vae.embedDim !== config.vae.zChannels)
    throw new RangeError(`vae.embedDim ${config.vae.embedDim} must equal vae.zChannels ${config.vae.zChannels} in a diffusers AutoencoderKL`);

  const tensors = diffusersTensors(config, { legacyVaeAttention: options.legacyVaeAttention === true });
  const sdxl = tensors.textEncoder2 !== undefined;
  const root = resolve(out);
  const dirs = ['unet', 'vae', 'text_encoder', ...(sdxl ? ['text_encoder_2'] : []), 'scheduler', ...(tokenizerFrom ? ['tokenizer', ...(sdxl ? ['tokenizer_2'] : [])] : [])];
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });

  const tokenizer = tokenizerFrom ? clipTokenizerFiles(tokenizerFrom) : undefined;
  const tokenizer2 = tokenizerFrom && sdxl ? clipTokenizerFiles(tokenizerFrom, '!') : undefined;
  const inpaint = config.unet.inChannels === 9;
  const pipeline = sdxl ? (inpaint ? 'StableDiffusionXLInpaintPipeline' : 'StableDiffusionXLPipeline')
    : inpaint ? 'StableDiffusionInpaintPipeline' : 'StableDiffusionPipeline';
  await writeJson(join(root, 'model_index.json'), {
    _class_name: pipeline,
    _diffusers_version: DIFFUSERS_VERSION,
    ...(sdxl ? { force_zeros_for_empty_prompt: true } : { feature_extractor: [null, null], requires_safety_checker: false, safety_checker: [null, null] }),
    scheduler: ['diffusers', sdxl ? 'EulerDiscreteScheduler' : 'PNDMScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    ...(sdxl ? { text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'] } : {}),
    tokenizer: tokenizer ? ['transformers', 'CLIPTokenizer'] : [null, null],
    ...(sdxl ? { tokenizer_2: tokenizer2 ? ['transformers', 'CLIPTokenizer'] : [null, null] } : {}),
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  });
  await writeJson(join(root, 'scheduler', 'scheduler_config.json'), sdxl ? SDXL_SCHEDULER_CONFIG : SCHEDULER_CONFIG);
  await writeJson(join(root, 'unet', 'config.json'), unetConfig(config.unet));
  await writeJson(join(root, 'vae', 'config.json'), vaeConfig(config.vae, sdxl));
  const textLayers = config.clip.naming === 'openclip' ? config.clip.layers - 1 : config.clip.layers;
  await writeJson(join(root, 'text_encoder', 'config.json'), textConfig(config.clip, textLayers));
  if (config.clip2) await writeJson(join(root, 'text_encoder_2', 'config.json'), textConfig(config.clip2, config.clip2.layers, true));
  if (tokenizer) for (const [name, text] of Object.entries(tokenizer)) await writeJson(join(root, 'tokenizer', name), text);
  if (tokenizer2) for (const [name, text] of Object.entries(tokenizer2)) await writeJson(join(root, 'tokenizer_2', name), text);

  /** @type {Record<string, string>} */
  const files = {
    unet: join(root, 'unet', 'diffusion_pytorch_model.safetensors'),
    vae: join(root, 'vae', 'diffusion_pytorch_model.safetensors'),
    textEncoder: join(root, 'text_encoder', 'model.safetensors'),
    ...(sdxl ? { textEncoder2: join(root, 'text_encoder_2', 'model.safetensors') } : {}),
  };
  /** @type {Record<string, number>} */
  const bytes = {};
  let tensorCount = 0;
  for (const [component, path] of Object.entries(files)) {
    const list = /** @type {DiffusersTensor[]} */ (tensors[/** @type {keyof DiffusersTensors} */ (component)]);
    bytes[component] = await writeSafetensors(path, list, seed, dtype);
    tensorCount += list.length;
  }
  return {
    path: root,
    preset,
    config,
    dtype,
    seed,
    files,
    bytes,
    tensorCount,
    tokenizer: tokenizer !== undefined,
  };
}
