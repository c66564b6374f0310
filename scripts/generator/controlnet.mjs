// Writes random ControlNet weights that fit one of the generator's model presets (its UNet's
// first half: time / label embedding, input_blocks, middle_block, with the stem taking the
// 4-channel latent even for inpainting presets), plus ControlNet-v1-1's hint encoder
// (input_hint_block.{0,2,...,14}: 3 → 16 → 16 → 32 → 32 → 96 → 96 → 256 → model channels at
// full size, the stride-2 convs being the three that widen between the first and the last; a
// narrower 3 → 8 → 8 → 16 → 16 → 24 → 24 → 32 → model channels for tiny presets) and the 1×1
// zero convs (zero_convs.N.0 per input block, middle_block_out.0). The zero convs are random,
// not zero as in an untrained ControlNet, so that the residuals change the image.
//
// Layouts: 'ldm' (cldm.ControlNet names, under `control_model.` or bare) as .safetensors or
// .pth; 'diffusers' (a ControlNetModel folder: config.json + diffusion_pytorch_model.safetensors,
// the UNet modules in the UNet's diffusers names, controlnet_cond_embedding.{conv_in, blocks.K,
// conv_out}, controlnet_down_blocks.N, controlnet_mid_block) with the same values. Values come
// from the seed and the internal (ldm, control_model.) name, as the model generator's do.
// Only node: builtins.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { COMPONENT_PREFIXES, PRESETS, tensorBytes, tensorSpecs, validateConfig } from '../generate-model.mjs';
import { diffusersTensors } from './diffusers-layout.mjs';
import { writeAtomically, writeSafetensorsFile } from './files.mjs';
import { writeTorchZip } from './torch-checkpoint.mjs';

/** @typedef {import('../generate-model.mjs').TensorSpec} TensorSpec */

const PREFIX = 'control_model.';
/** The hint encoder's widths before the last conv (to model channels): ControlNet-v1-1's, and a tiny one. */
export const HINT_CHANNELS = { full: [16, 16, 32, 32, 96, 96, 256], tiny: [8, 8, 16, 16, 24, 24, 32] };
export const CONTROLNET_LAYOUTS = ['ldm', 'diffusers'];

/** The UNet parts a ControlNet copies (LDM roots). */
const ENCODER_ROOTS = ['time_embed.', 'label_emb.', 'input_blocks.', 'middle_block.'];

/**
 * The ControlNet's tensors under internal names, in order, for a model config.
 * @param {import('../generate-model.mjs').ModelConfig} config
 * @param {number[]} hintChannels
 * @returns {TensorSpec[]}
 */
export function controlNetSpecs(config, hintChannels) {
  const c = validateConfig({ ...config, unet: { ...config.unet, inChannels: config.unet.outChannels } });
  const unet = COMPONENT_PREFIXES.unet;
  /** @type {TensorSpec[]} */
  const specs = [];
  for (const s of tensorSpecs(c)) {
    if (!s.name.startsWith(unet)) continue;
    const local = s.name.slice(unet.length);
    if (ENCODER_ROOTS.some((r) => local.startsWith(r))) specs.push({ ...s, name: PREFIX + local });
  }
  const conv = (/** @type {string} */ name, /** @type {number} */ inC, /** @type {number} */ outC, /** @type {number} */ k) => {
    specs.push({ name: `${PREFIX}${name}.weight`, shape: [outC, inC, k, k], init: 'weight', fanIn: inC * k * k });
    specs.push({ name: `${PREFIX}${name}.bias`, shape: [outC], init: 'bias', fanIn: 1 });
  };
  const widths = [3, ...hintChannels, c.unet.modelChannels];
  for (let i = 0; i + 1 < widths.length; i++) conv(`input_hint_block.${2 * i}`, /** @type {number} */ (widths[i]), /** @type {number} */ (widths[i + 1]), 3);
  // One zero conv per input block, as wide as its output (the UNet's skip channels).
  const skips = specs
    .filter((s) => /^control_model\.input_blocks\.\d+\.0\.(weight|out_layers\.3\.weight|op\.weight)$/.test(s.name))
    .map((s) => ({ block: Number(/input_blocks\.(\d+)\./.exec(s.name)?.[1]), channels: /** @type {number} */ (s.shape[0]) }));
  const byBlock = new Map(skips.map((s) => [s.block, s.channels]));
  for (const [block, channels] of [...byBlock].sort((a, b) => a[0] - b[0])) conv(`zero_convs.${block}.0`, channels, channels, 1);
  const middle = /** @type {TensorSpec} */ (specs.find((s) => s.name === `${PREFIX}middle_block.2.out_layers.3.weight`));
  conv('middle_block_out.0', /** @type {number} */ (middle.shape[0]), /** @type {number} */ (middle.shape[0]), 1);
  return specs;
}

/**
 * The diffusers ControlNetModel names of the specs: [{ name, spec }].
 * @param {import('../generate-model.mjs').ModelConfig} config @param {TensorSpec[]} specs
 */
function diffusersNames(config, specs) {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const c = { ...config, unet: { ...config.unet, inChannels: config.unet.outChannels } };
  /** @type {Array<{ name: string, spec: TensorSpec }>} */
  const out = [];
  for (const t of diffusersTensors(c).unet) {
    if (t.rows || t.transpose) throw new Error(`diffusers ControlNet: ${t.name} is not stored as it is`);
    const spec = byName.get(PREFIX + t.spec.name.slice(COMPONENT_PREFIXES.unet.length));
    if (spec) out.push({ name: t.name, spec });
  }
  const hints = specs.filter((s) => s.name.startsWith(`${PREFIX}input_hint_block.`) && s.name.endsWith('.weight')).length;
  for (const s of specs) {
    const local = s.name.slice(PREFIX.length);
    let m;
    if ((m = /^input_hint_block\.(\d+)\.(weight|bias)$/.exec(local))) {
      const k = Number(m[1]) / 2;
      const module = k === 0 ? 'conv_in' : k === hints - 1 ? 'conv_out' : `blocks.${k - 1}`;
      out.push({ name: `controlnet_cond_embedding.${module}.${m[2]}`, spec: s });
    } else if ((m = /^zero_convs\.(\d+)\.0\.(weight|bias)$/.exec(local))) {
      out.push({ name: `controlnet_down_blocks.${m[1]}.${m[2]}`, spec: s });
    } else if ((m = /^middle_block_out\.0\.(weight|bias)$/.exec(local))) {
      out.push({ name: `controlnet_mid_block.${m[1]}`, spec: s });
    }
  }
  if (out.length !== specs.length) throw new Error(`diffusers ControlNet: ${specs.length - out.length} tensors have no diffusers name`);
  return out;
}

/**
 * Writes a random ControlNet. `preset`: a model preset whose UNet it fits (default 'tiny');
 * `hint`: 'full' or 'tiny' widths (default: 'tiny' for tiny presets); `layout` 'ldm' (a
 * .safetensors or .pth file; `prefix` false for bare names) or 'diffusers' (`out` a folder).
 * Returns { path, specs }.
 * @param {{ out: string, preset?: string, hint?: 'full' | 'tiny', layout?: 'ldm' | 'diffusers', prefix?: boolean,
 *           dtype?: 'f16' | 'f32', seed?: number }} options
 */
export async function generateControlNet(options) {
  const { out, preset = 'tiny', layout = 'ldm', prefix = true, dtype = 'f16', seed = 0 } = options;
  const config = /** @type {Record<string, import('../generate-model.mjs').ModelConfig>} */ (PRESETS)[preset];
  if (!config) throw new RangeError(`unknown preset '${preset}'`);
  if (!CONTROLNET_LAYOUTS.includes(layout)) throw new RangeError(`layout must be one of ${CONTROLNET_LAYOUTS.join(', ')}`);
  const hint = options.hint ?? (preset.startsWith('tiny') ? 'tiny' : 'full');
  const specs = controlNetSpecs(config, HINT_CHANNELS[hint]);
  const st = dtype === 'f16' ? 'F16' : 'F32';
  const path = resolve(out);
  if (layout === 'diffusers') {
    mkdirSync(path, { recursive: true });
    const named = diffusersNames(config, specs);
    await writeSafetensorsFile(join(path, 'diffusion_pytorch_model.safetensors'),
      named.map((t) => ({ name: t.name, shape: t.spec.shape, dtype: st, data: tensorBytes(t.spec, seed, dtype) })));
    const u = config.unet;
    const json = JSON.stringify({ _class_name: 'ControlNetModel', in_channels: u.outChannels, conditioning_channels: 3,
      block_out_channels: u.channelMult.map((m) => m * u.modelChannels), layers_per_block: u.numResBlocks,
      cross_attention_dim: u.contextDim, conditioning_embedding_out_channels: HINT_CHANNELS[hint].filter((_, i) => i % 2 === 1) }, null, 2);
    await writeAtomically(join(path, 'config.json'), (fh) => fh.writeFile(json));
    return { path, specs };
  }
  const name = (/** @type {string} */ n) => (prefix ? n : n.slice(PREFIX.length));
  if (path.endsWith('.safetensors')) {
    await writeSafetensorsFile(path, specs.map((s) => ({ name: name(s.name), shape: s.shape, dtype: st, data: tensorBytes(s, seed, dtype) })));
  } else {
    await writeTorchZip(path, specs.map((s) => ({ name: name(s.name), shape: s.shape, dtype: st, bytes: () => tensorBytes(s, seed, dtype) })), {}, { flat: true });
  }
  return { path, specs };
}
