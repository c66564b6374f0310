// Writes random RRDBNet (ESRGAN) upscaler weights in the two key layouts users' files come in:
//   'basicsr'  BasicSR / Real-ESRGAN: conv_first, body.N.rdbK.convM, conv_body, conv_up1..,
//              conv_hr, conv_last; in a .pth inside `params_ema` as Real-ESRGAN ships them
//   'esrgan'   the original ESRGAN repository's nn.Sequential (4x-UltraSharp and most community
//              models): model.0, model.1.sub.N.RDBK.convM.0, model.1.sub.<blocks>, then the
//              upsampling convs at model.3, 6, ..., the HR conv and the output conv; a flat .pth
// as .pth (PyTorch zip, torch.save's layout) or .safetensors, f32. Presets: RealESRGAN_x4plus
// and x2plus shapes (64 features, 32 growth, 23 blocks; x2plus unshuffles its input by 2, so its
// first conv takes 12 channels) and tiny ones for tests. Values are Gaussian from `seed`, each
// conv's std sqrt(2 / fan_in) × `gain` (He's × 0.4 by default: at 1 the 23-block trunk's residual
// sums grow until nearly every output pixel clamps; at 0.4 a photo comes out spread over the
// whole 8-bit range), biases std 0.01, except the output conv's: 0.5, so that the
// random output sits around mid-grey rather than at black, where clamping would hide it.
// Only node: builtins.
import { resolve } from 'node:path';

import { gaussianValues } from './embeddings.mjs';
import { writeSafetensorsFile } from './files.mjs';
import { PickleWriter, STORAGE, op, writeTorchPickle, writeTorchZip } from './torch-checkpoint.mjs';

/** Shapes of the published models and tiny ones for tests. */
export const ESRGAN_PRESETS = {
  x4plus: { features: 64, growth: 32, blocks: 23, upsamples: 2, unshuffle: 1 },
  x2plus: { features: 64, growth: 32, blocks: 23, upsamples: 2, unshuffle: 2 },
  'tiny-x4': { features: 8, growth: 4, blocks: 1, upsamples: 2, unshuffle: 1 },
  'tiny-x2': { features: 8, growth: 4, blocks: 1, upsamples: 2, unshuffle: 2 },
  'tiny-x2-esrgan': { features: 8, growth: 4, blocks: 2, upsamples: 1, unshuffle: 1 },
};

export const ESRGAN_LAYOUTS = ['basicsr', 'esrgan'];

/**
 * The network's tensors under BasicSR's names, in order: [{ name, shape }].
 * @param {{ features: number, growth: number, blocks: number, upsamples: number, unshuffle: number }} c
 */
export function esrganSpecs(c) {
  /** @type {Array<{ name: string, shape: number[] }>} */
  const specs = [];
  const conv = (/** @type {string} */ name, /** @type {number} */ inC, /** @type {number} */ outC) => {
    specs.push({ name: `${name}.weight`, shape: [outC, inC, 3, 3] }, { name: `${name}.bias`, shape: [outC] });
  };
  conv('conv_first', 3 * c.unshuffle * c.unshuffle, c.features);
  for (let b = 0; b < c.blocks; b++) {
    for (let k = 1; k <= 3; k++) {
      for (let m = 1; m <= 5; m++) conv(`body.${b}.rdb${k}.conv${m}`, c.features + (m - 1) * c.growth, m === 5 ? c.features : c.growth);
    }
  }
  conv('conv_body', c.features, c.features);
  for (let u = 1; u <= c.upsamples; u++) conv(`conv_up${u}`, c.features, c.features);
  conv('conv_hr', c.features, c.features);
  conv('conv_last', c.features, 3);
  return specs;
}

/**
 * A BasicSR name in the original ESRGAN's nn.Sequential numbering.
 * @param {string} name @param {{ blocks: number, upsamples: number }} c
 */
export function esrganLayoutName(name, c) {
  const [, module, param] = /** @type {RegExpMatchArray} */ (/^(.*)\.(weight|bias)$/.exec(name));
  const dense = /^body\.(\d+)\.rdb(\d)\.conv(\d)$/.exec(module);
  if (dense) return `model.1.sub.${dense[1]}.RDB${dense[2]}.conv${dense[3]}.0.${param}`;
  const up = /^conv_up(\d)$/.exec(module);
  // Upsample, conv, LeakyReLU per step after model.1 and model.2 (the upsample): convs at 3, 6, …
  if (up) return `model.${3 * Number(up[1])}.${param}`;
  const n = c.upsamples;
  const index = { conv_first: 0, conv_hr: 3 * n + 2, conv_last: 3 * n + 4 }[module];
  if (module === 'conv_body') return `model.1.sub.${c.blocks}.${param}`;
  if (index === undefined) throw new RangeError(`no ESRGAN name for '${name}'`);
  return `model.${index}.${param}`;
}

/**
 * `{ params_ema: { name: tensor } }`, as Real-ESRGAN's .pth files hold the weights.
 * @param {Array<{ name: string, shape: number[] }>} tensors @param {string} key
 */
function wrappedPickle(tensors, key) {
  const p = new PickleWriter().raw(op.PROTO, 2, op.EMPTY_DICT, op.MARK).str(key);
  p.global('collections', 'OrderedDict').raw(op.EMPTY_TUPLE, op.REDUCE, op.MARK);
  tensors.forEach((t, i) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const strides = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    p.str(t.name).global('torch._utils', '_rebuild_tensor_v2').raw(op.MARK);
    p.raw(op.MARK).str('storage').global('torch', STORAGE.F32).str(String(i)).str('cpu').int(numel).raw(op.TUPLE, op.BINPERSID);
    p.int(0).tuple(t.shape).tuple(strides).raw(op.NEWFALSE).global('collections', 'OrderedDict').raw(op.EMPTY_TUPLE, op.REDUCE);
    p.raw(op.TUPLE, op.REDUCE);
  });
  return Uint8Array.from(p.raw(op.SETITEMS, op.SETITEMS, op.STOP).bytes);
}

/**
 * Writes random RRDBNet weights. Returns the path, the shape config and the values by BasicSR
 * name (what a reader gets back: f32, exact), for references.
 * @param {{ out: string, preset?: keyof typeof ESRGAN_PRESETS, config?: typeof ESRGAN_PRESETS.x4plus,
 *           layout?: 'basicsr' | 'esrgan', seed?: number, gain?: number, wrapper?: string | null }} options
 *   `wrapper`: the .pth entry the state dict sits in (default 'params_ema' for basicsr, none for esrgan).
 */
export async function generateEsrgan(options) {
  const { out, layout = 'basicsr', seed = 0, gain = 0.4 } = options;
  if (!ESRGAN_LAYOUTS.includes(layout)) throw new RangeError(`layout must be one of ${ESRGAN_LAYOUTS.join(', ')}`);
  const config = options.config ?? ESRGAN_PRESETS[options.preset ?? 'tiny-x4'];
  if (!config) throw new RangeError(`unknown preset '${options.preset}'`);
  const specs = esrganSpecs(config);
  /** @type {Map<string, { shape: number[], values: Float32Array }>} */
  const values = new Map();
  specs.forEach((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const fanIn = s.shape.length === 4 ? s.shape[1] * 9 : 1;
    // Biases small beside the weights, so that they count without dominating.
    const std = s.shape.length === 4 ? Math.sqrt(2 / fanIn) * gain : 0.01;
    const v = gaussianValues(seed * 100003 + i * 7919 + 1, n, std);
    if (s.name === 'conv_last.bias') v.fill(0.5);
    values.set(s.name, { shape: s.shape, values: v });
  });
  const named = specs.map((s) => ({ ...s, fileName: layout === 'basicsr' ? s.name : esrganLayoutName(s.name, config) }));
  const bytesOf = (/** @type {string} */ name) => {
    const v = /** @type {{ values: Float32Array }} */ (values.get(name)).values;
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  };
  const path = resolve(out);
  if (path.endsWith('.safetensors')) {
    await writeSafetensorsFile(path, named.map((s) => ({ name: s.fileName, shape: s.shape, dtype: 'F32', data: bytesOf(s.name) })));
  } else {
    const wrapper = options.wrapper === undefined ? (layout === 'basicsr' ? 'params_ema' : null) : options.wrapper;
    const tensors = named.map((s) => ({ name: s.fileName, shape: s.shape, dtype: 'F32', bytes: () => bytesOf(s.name) }));
    if (wrapper) {
      await writeTorchPickle(path, wrappedPickle(tensors, wrapper), tensors.map((t) => t.bytes));
    } else {
      await writeTorchZip(path, tensors, {}, { flat: true });
    }
  }
  return { path, config, values };
}
