// Telling what a model file is from tensor names and shapes only. The tensor lists are
// representative subsets of the real checkpoints' keys, with their real shapes (PyTorch order).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { inspectModel } from '../lib/index.js';
import { detectModel } from '../lib/model-detect.js';
import { taeEncoder } from './support/data.js';
import { writeSafetensors } from './support/safetensors.js';

type Tensor = { name: string; shape: number[] };
type Shapes = Record<string, number[]>;

const under = (prefix: string, shapes: Shapes): Tensor[] =>
  Object.entries(shapes).map(([k, shape]) => ({ name: prefix + k, shape }));

/** SD1.x / SD2.x LDM UNet keys (v1-5-pruned / v2-1_768 layout): context 768 or 1024. */
function ldmUnet(context: number, inChannels = 4): Shapes {
  const linear = context === 1024; // SD2 uses linear proj_in/proj_out, SD1 1×1 convs
  const s: Shapes = {
    'time_embed.0.weight': [1280, 320], 'time_embed.0.bias': [1280], 'time_embed.2.weight': [1280, 1280],
    'input_blocks.0.0.weight': [320, inChannels, 3, 3], 'input_blocks.0.0.bias': [320],
    'input_blocks.1.0.in_layers.0.weight': [320], 'input_blocks.1.0.in_layers.2.weight': [320, 320, 3, 3],
    'input_blocks.1.0.emb_layers.1.weight': [320, 1280], 'input_blocks.1.0.out_layers.3.weight': [320, 320, 3, 3],
    'input_blocks.1.1.norm.weight': [320], 'input_blocks.1.1.proj_in.weight': linear ? [320, 320] : [320, 320, 1, 1],
    'input_blocks.3.0.op.weight': [320, 320, 3, 3],
    'middle_block.0.in_layers.0.weight': [1280], 'middle_block.1.proj_in.weight': linear ? [1280, 1280] : [1280, 1280, 1, 1],
    'output_blocks.11.1.transformer_blocks.0.norm1.bias': [320],
    'out.0.weight': [320], 'out.2.weight': [4, 320, 3, 3], 'out.2.bias': [4],
  };
  const blocks = [
    ['input_blocks.1.1', 320], ['input_blocks.4.1', 640], ['input_blocks.7.1', 1280],
    ['middle_block.1', 1280], ['output_blocks.11.1', 320],
  ] as const;
  for (const [block, ch] of blocks) {
    const t = `${block}.transformer_blocks.0`;
    s[`${t}.attn1.to_q.weight`] = [ch, ch];
    s[`${t}.attn2.to_q.weight`] = [ch, ch];
    s[`${t}.attn2.to_k.weight`] = [ch, context];
    s[`${t}.attn2.to_v.weight`] = [ch, context];
    s[`${t}.ff.net.0.proj.weight`] = [ch * 8, ch];
  }
  return s;
}

/** SDXL base LDM UNet keys (sd_xl_base_1.0): no attention at level 0, ADM input 2816. */
function sdxlUnet(inChannels = 4): Shapes {
  const s: Shapes = {
    'time_embed.0.weight': [1280, 320], 'time_embed.2.weight': [1280, 1280],
    'label_emb.0.0.weight': [1280, 2816], 'label_emb.0.0.bias': [1280], 'label_emb.0.2.weight': [1280, 1280],
    'input_blocks.0.0.weight': [320, inChannels, 3, 3], 'input_blocks.0.0.bias': [320],
    'input_blocks.1.0.in_layers.2.weight': [320, 320, 3, 3], 'input_blocks.3.0.op.weight': [320, 320, 3, 3],
    'input_blocks.4.1.proj_in.weight': [640, 640], 'input_blocks.7.1.proj_in.weight': [1280, 1280],
    'out.2.weight': [4, 320, 3, 3],
  };
  for (const [t, ch] of [
    ['input_blocks.4.1.transformer_blocks.0', 640], ['input_blocks.4.1.transformer_blocks.1', 640],
    ['input_blocks.7.1.transformer_blocks.9', 1280], ['middle_block.1.transformer_blocks.9', 1280],
    ['output_blocks.0.1.transformer_blocks.0', 1280],
  ] as const) {
    s[`${t}.attn2.to_k.weight`] = [ch, 2048];
    s[`${t}.attn2.to_v.weight`] = [ch, 2048];
  }
  return s;
}

/** The KL-f8 autoencoder with LDM names (first_stage_model.* inside checkpoints; bare in
 *  vae-ft-mse-840000-ema-pruned). */
function ldmVae(): Shapes {
  return {
    'encoder.conv_in.weight': [128, 3, 3, 3], 'encoder.conv_in.bias': [128],
    'encoder.down.0.block.0.norm1.weight': [128], 'encoder.down.0.block.0.conv1.weight': [128, 128, 3, 3],
    'encoder.down.0.downsample.conv.weight': [128, 128, 3, 3],
    'encoder.down.1.block.0.nin_shortcut.weight': [256, 128, 1, 1],
    'encoder.mid.attn_1.q.weight': [512, 512, 1, 1], 'encoder.mid.block_1.conv1.weight': [512, 512, 3, 3],
    'encoder.norm_out.weight': [512], 'encoder.conv_out.weight': [8, 512, 3, 3],
    'quant_conv.weight': [8, 8, 1, 1], 'post_quant_conv.weight': [4, 4, 1, 1],
    'decoder.conv_in.weight': [512, 4, 3, 3], 'decoder.mid.attn_1.proj_out.weight': [512, 512, 1, 1],
    'decoder.up.3.block.0.conv1.weight': [512, 512, 3, 3], 'decoder.up.0.block.0.nin_shortcut.weight': [128, 256, 1, 1],
    'decoder.up.3.upsample.conv.weight': [512, 512, 3, 3], 'decoder.conv_out.weight': [3, 128, 3, 3],
  };
}

/** The same autoencoder with diffusers names (vae/diffusion_pytorch_model.safetensors). */
function diffusersVae(): Shapes {
  return {
    'encoder.conv_in.weight': [128, 3, 3, 3], 'encoder.down_blocks.0.resnets.0.conv1.weight': [128, 128, 3, 3],
    'encoder.down_blocks.0.downsamplers.0.conv.weight': [128, 128, 3, 3], 'encoder.mid_block.attentions.0.to_q.weight': [512, 512],
    'encoder.conv_norm_out.weight': [512], 'encoder.conv_out.weight': [8, 512, 3, 3],
    'quant_conv.weight': [8, 8, 1, 1], 'post_quant_conv.weight': [4, 4, 1, 1],
    'decoder.conv_in.weight': [512, 4, 3, 3], 'decoder.up_blocks.0.resnets.0.conv1.weight': [512, 512, 3, 3],
    'decoder.conv_out.weight': [3, 128, 3, 3],
  };
}

/** A CLIP text transformer with HF transformers names (CLIP ViT-L/14: width 768, 12 layers). */
function hfClip(width = 768, layers = 12, projection = false): Shapes {
  const s: Shapes = {
    'text_model.embeddings.token_embedding.weight': [49408, width],
    'text_model.embeddings.position_embedding.weight': [77, width],
    'text_model.final_layer_norm.weight': [width],
  };
  for (const l of [0, layers - 1]) {
    const p = `text_model.encoder.layers.${l}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) s[`${p}.self_attn.${proj}.weight`] = [width, width];
    s[`${p}.layer_norm1.weight`] = [width];
    s[`${p}.mlp.fc1.weight`] = [width * 4, width];
    s[`${p}.mlp.fc2.weight`] = [width, width * 4];
  }
  if (projection) s['text_projection.weight'] = [width, width];
  return s;
}

/** An OpenCLIP text transformer with its own names (ViT-H/14: 1024 × 24; ViT-bigG/14: 1280 × 32). */
function openClip(width: number, layers: number): Shapes {
  const s: Shapes = {
    'token_embedding.weight': [49408, width], positional_embedding: [77, width],
    'ln_final.weight': [width], text_projection: [width, width], logit_scale: [],
  };
  for (const l of [0, layers - 1]) {
    const p = `transformer.resblocks.${l}`;
    s[`${p}.ln_1.weight`] = [width];
    s[`${p}.attn.in_proj_weight`] = [width * 3, width];
    s[`${p}.attn.out_proj.weight`] = [width, width];
    s[`${p}.mlp.c_fc.weight`] = [width * 4, width];
    s[`${p}.mlp.c_proj.weight`] = [width, width * 4];
  }
  return s;
}

/** A diffusers UNet2DConditionModel (SD1.5 layout, or SDXL's with add_embedding). */
function diffusersUnet(context: number, sdxl = false, inChannels = 4): Shapes {
  const s: Shapes = {
    'conv_in.weight': [320, inChannels, 3, 3], 'conv_in.bias': [320],
    'time_embedding.linear_1.weight': [1280, 320], 'time_embedding.linear_2.weight': [1280, 1280],
    'down_blocks.0.resnets.0.conv1.weight': [320, 320, 3, 3], 'down_blocks.0.resnets.0.time_emb_proj.weight': [320, 1280],
    'mid_block.resnets.0.conv1.weight': [1280, 1280, 3, 3],
    'up_blocks.3.resnets.2.conv_shortcut.weight': [320, 640, 1, 1],
    'conv_norm_out.weight': [320], 'conv_out.weight': [4, 320, 3, 3],
  };
  const blocks = sdxl
    ? [['down_blocks.1.attentions.0', 640], ['mid_block.attentions.0', 1280], ['up_blocks.0.attentions.2', 1280]] as const
    : [['down_blocks.0.attentions.0', 320], ['mid_block.attentions.0', 1280], ['up_blocks.3.attentions.2', 320]] as const;
  for (const [b, ch] of blocks) {
    s[`${b}.proj_in.weight`] = sdxl ? [ch, ch] : [ch, ch, 1, 1];
    s[`${b}.transformer_blocks.0.attn2.to_k.weight`] = [ch, context];
    s[`${b}.transformer_blocks.0.attn2.to_v.weight`] = [ch, context];
  }
  if (sdxl) {
    s['add_embedding.linear_1.weight'] = [1280, 2816];
    s['add_embedding.linear_2.weight'] = [1280, 1280];
  }
  return s;
}

/** DDPM schedule buffers and EMA counters an LDM training checkpoint carries. */
const LDM_EXTRAS: Shapes = {
  betas: [1000], alphas_cumprod: [1000], alphas_cumprod_prev: [1000], 'model_ema.decay': [], 'model_ema.num_updates': [],
};

function sd15(inChannels = 4): Tensor[] {
  return [
    ...under('model.diffusion_model.', ldmUnet(768, inChannels)),
    ...under('first_stage_model.', ldmVae()),
    ...under('cond_stage_model.transformer.', { ...hfClip(), 'text_model.embeddings.position_ids': [1, 77] }),
    ...under('', LDM_EXTRAS),
  ];
}

function sd21(): Tensor[] {
  return [
    ...under('model.diffusion_model.', ldmUnet(1024)),
    ...under('first_stage_model.', ldmVae()),
    ...under('cond_stage_model.model.', openClip(1024, 24)),
    ...under('', LDM_EXTRAS),
  ];
}

function sdxlBase(): Tensor[] {
  return [
    ...under('model.diffusion_model.', sdxlUnet()),
    ...under('first_stage_model.', ldmVae()),
    ...under('conditioner.embedders.0.transformer.', hfClip()),
    ...under('conditioner.embedders.1.model.', openClip(1280, 32)),
  ];
}

const noComponents = { unet: false, vae: false, textEncoder: false, textEncoder2: false };

describe('detectModel', () => {
  it('an SD1.5 LDM checkpoint (v1-5-pruned layout)', () => {
    const d = detectModel(sd15());
    expect(d).toMatchObject({
      family: 'sd1', inpaint: false, convention: 'ldm', prediction: 'unknown',
      components: { unet: true, vae: true, textEncoder: true, textEncoder2: false },
      unetInChannels: 4, contextDim: 768, vaeLatentChannels: 4,
    });
    expect(d.notes.join('\n')).toMatch(/context width 768/);
    expect(d.notes.join('\n')).toMatch(/cond_stage_model\.transformer\.\*.*width 768/);
    // Schedule buffers and EMA counters are known checkpoint furniture, not strangers.
    expect(d.notes.some((n) => n.includes('outside the recognised components'))).toBe(false);
  });

  it('an SD1.5 inpainting checkpoint: 9 UNet input channels', () => {
    const d = detectModel(sd15(9));
    expect(d).toMatchObject({ family: 'sd1', inpaint: true, unetInChannels: 9, contextDim: 768 });
    expect(d.notes.join('\n')).toContain('input_blocks.0.0.weight [320, 9, 3, 3]');
  });

  it('an SD2.1 checkpoint: 1024 context, OpenCLIP ViT-H; v vs epsilon is not in the weights', () => {
    const d = detectModel(sd21());
    expect(d).toMatchObject({
      family: 'sd2', inpaint: false, convention: 'ldm', prediction: 'unknown', contextDim: 1024,
      components: { unet: true, vae: true, textEncoder: true, textEncoder2: false },
    });
    expect(d.notes.join('\n')).toMatch(/OpenCLIP ViT-H\/14, width 1024/);
    expect(d.notes.join('\n')).toMatch(/768-v .* cannot be told apart/);
  });

  it('SDXL base: label_emb (ADM 2816), context 2048, two text encoders', () => {
    const d = detectModel(sdxlBase());
    expect(d).toMatchObject({
      family: 'sdxl', inpaint: false, convention: 'ldm', contextDim: 2048, unetInChannels: 4, vaeLatentChannels: 4,
      components: { unet: true, vae: true, textEncoder: true, textEncoder2: true },
    });
    expect(d.notes.join('\n')).toContain('label_emb.0.0.weight [1280, 2816]');
  });

  it('SDXL inpainting is sdxl with inpaint set', () => {
    const tensors = sdxlBase().filter((t) => !t.name.endsWith('input_blocks.0.0.weight'));
    tensors.push({ name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [320, 9, 3, 3] });
    expect(detectModel(tensors)).toMatchObject({ family: 'sdxl', inpaint: true, unetInChannels: 9 });
  });

  it('a diffusers UNet file on its own', () => {
    const d = detectModel(under('', diffusersUnet(768)));
    expect(d).toMatchObject({
      family: 'sd1', inpaint: false, convention: 'diffusers', unetInChannels: 4, contextDim: 768,
      components: { unet: true, vae: false, textEncoder: false, textEncoder2: false },
    });
    expect(d).not.toHaveProperty('vaeLatentChannels');
  });

  it('a diffusers SDXL folder read as one tensor list (unet/, vae/, text_encoder/, text_encoder_2/)', () => {
    const d = detectModel([
      ...under('unet.', diffusersUnet(2048, true)),
      ...under('vae.', diffusersVae()),
      ...under('text_encoder.', hfClip()),
      ...under('text_encoder_2.', hfClip(1280, 32, true)),
    ]);
    expect(d).toMatchObject({
      family: 'sdxl', convention: 'diffusers', contextDim: 2048,
      components: { unet: true, vae: true, textEncoder: true, textEncoder2: true },
    });
  });

  it('a UNet-only LDM file without the model.diffusion_model. prefix', () => {
    expect(detectModel(under('', sdxlUnet()))).toMatchObject({
      family: 'sdxl', convention: 'ldm', components: { unet: true, vae: false, textEncoder: false, textEncoder2: false },
    });
  });

  it('a VAE on its own (vae-ft-mse-840000-ema-pruned layout): a VAE, of no particular family', () => {
    const d = detectModel(under('', ldmVae()));
    expect(d).toMatchObject({
      family: 'unknown', inpaint: false, convention: 'ldm', prediction: 'unknown', vaeLatentChannels: 4,
      components: { unet: false, vae: true, textEncoder: false, textEncoder2: false },
    });
    expect(d).not.toHaveProperty('unetInChannels');
    expect(d.notes.join('\n')).toMatch(/VAE alone does not tell/);
    expect(d.notes.join('\n')).toContain('decoder.conv_in.weight [512, 4, 3, 3]');
  });

  it('a diffusers VAE, and a first_stage_model.* VAE extract', () => {
    expect(detectModel(under('', diffusersVae())))
      .toMatchObject({ convention: 'diffusers', components: { vae: true }, vaeLatentChannels: 4 });
    expect(detectModel(under('first_stage_model.', ldmVae())))
      .toMatchObject({ convention: 'ldm', components: { vae: true, unet: false } });
  });

  it('a CLIP ViT-L text encoder alone fits SD1.x and SDXL alike; OpenCLIP-H alone is SD2.x', () => {
    const l = detectModel(under('', hfClip()));
    expect(l).toMatchObject({
      family: 'unknown', convention: 'diffusers', components: { textEncoder: true, textEncoder2: false },
    });
    expect(l.notes.join('\n')).toMatch(/fit sd1 or sdxl/);
    expect(detectModel(under('', hfClip(1024, 23)))).toMatchObject({ family: 'sd2', components: { textEncoder: true } });
    // bigG alone: SDXL's second encoder, or the refiner's only one
    const g = detectModel(under('', hfClip(1280, 32, true)));
    expect(g).toMatchObject({ family: 'unknown', components: { textEncoder: false, textEncoder2: true } });
    expect(g.notes.join('\n')).toMatch(/fit sdxl or sdxl-refiner/);
  });

  it('an LLM GGUF is not a Stable Diffusion file', () => {
    const d = detectModel(
      under('', {
        'token_embd.weight': [32000, 4096], 'blk.0.attn_q.weight': [4096, 4096], 'blk.0.attn_k.weight': [4096, 4096],
        'blk.0.ffn_up.weight': [11008, 4096], 'blk.0.attn_norm.weight': [4096],
        'output_norm.weight': [4096], 'output.weight': [32000, 4096],
      }),
      { 'general.architecture': 'llama', 'general.name': 'tiny' },
    );
    expect(d).toMatchObject({
      family: 'unknown', convention: 'unknown', prediction: 'unknown', inpaint: false, components: noComponents,
    });
    expect(d.notes.join('\n')).toMatch(/blk\.N.*language model/);
    expect(d.notes.join('\n')).toContain('"llama"');
  });

  it('a TAE checkpoint (nn.Sequential names) is not a Stable Diffusion component', () => {
    const d = detectModel(
      under('', { '0.weight': [64, 3, 3, 3], '0.bias': [64], '2.conv.0.weight': [64, 64, 3, 3], '14.weight': [4, 64, 3, 3] }),
    );
    expect(d).toMatchObject({ family: 'unknown', components: noComponents });
    expect(d.notes.join('\n')).toMatch(/tiny autoencoder/);
  });

  it('a DiT under model.diffusion_model.* is not taken for a UNet', () => {
    const d = detectModel(under('model.diffusion_model.', {
      'joint_blocks.0.context_block.attn.qkv.weight': [4608, 1536], 'x_embedder.proj.weight': [1536, 16, 2, 2],
    }));
    expect(d).toMatchObject({ family: 'unknown', components: noComponents });
    expect(d.notes.join('\n')).toMatch(/not a Stable Diffusion UNet \(joint_blocks/);
  });

  it('an empty list', () => {
    expect(detectModel([])).toEqual({
      family: 'unknown', inpaint: false, convention: 'unknown', prediction: 'unknown',
      components: noComponents, notes: ['no tensors'],
    });
  });

  it('prediction type from metadata', () => {
    const v = detectModel(sd21(), {
      'modelspec.prediction_type': 'v', 'modelspec.architecture': 'stable-diffusion-v2-768-v',
    });
    expect(v).toMatchObject({ family: 'sd2', prediction: 'v' });
    expect(v.notes.join('\n')).toContain('metadata modelspec.prediction_type = "v"');
    expect(v.notes.join('\n')).not.toMatch(/cannot be told apart/);
    expect(detectModel(sd21(), { prediction_type: 'v_prediction' }).prediction).toBe('v');
    expect(detectModel(sd15(), { 'modelspec.prediction_type': 'epsilon' }).prediction).toBe('epsilon');
    expect(detectModel(sd15(), { ss_v_parameterization: 'False' }).prediction).toBe('epsilon');
    const odd = detectModel(sd15(), { prediction_type: 'sample' });
    expect(odd.prediction).toBe('unknown');
    expect(odd.notes.join('\n')).toMatch(/"sample": not epsilon or v/);
  });

  it('prediction type from the v_pred marker tensor, and a file that contradicts itself', () => {
    const marked = [...sdxlBase(), { name: 'v_pred', shape: [] }, { name: 'ztsnr', shape: [] }];
    const d = detectModel(marked);
    expect(d).toMatchObject({ family: 'sdxl', prediction: 'v' });
    expect(d.notes.join('\n')).toMatch(/marker tensor v_pred/);
    expect(d.notes.some((n) => n.includes('outside the recognised components'))).toBe(false);
    const torn = detectModel(marked, { 'modelspec.prediction_type': 'epsilon' });
    expect(torn.prediction).toBe('unknown');
    expect(torn.notes.join('\n')).toMatch(/disagrees with itself/);
  });

  it('components of different families, and unsupported UNet variants, give unknown', () => {
    const mixed = detectModel([
      ...under('model.diffusion_model.', ldmUnet(768)),
      ...under('cond_stage_model.model.', openClip(1024, 24)),
    ]);
    expect(mixed.family).toBe('unknown');
    expect(mixed.notes.join('\n')).toMatch(/different families/);
    const pix2pix = detectModel(sd15(8));
    expect(pix2pix).toMatchObject({ family: 'unknown', inpaint: false, unetInChannels: 8 });
    expect(pix2pix.notes.join('\n')).toMatch(/instruct-pix2pix/);
    // a context of 1280 with an ADM input other than the refiner's 2560
    const odd = detectModel([
      ...under('model.diffusion_model.', {
        'input_blocks.0.0.weight': [384, 4, 3, 3], 'label_emb.0.0.weight': [1536, 2816],
        'input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight': [768, 1280],
      }),
      ...under('conditioner.embedders.0.model.', openClip(1280, 32)),
    ]);
    expect(odd).toMatchObject({ family: 'unknown', contextDim: 1280 });
    expect(odd.notes.join('\n')).toMatch(/the SDXL refiner has 2560/);
  });

  it('the SDXL refiner: bigG alone at conditioner.embedders.0.model., context 1280, ADM 2560', () => {
    const refiner = detectModel([
      ...under('model.diffusion_model.', {
        'input_blocks.0.0.weight': [384, 4, 3, 3], 'label_emb.0.0.weight': [1536, 2560],
        'input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight': [768, 1280],
      }),
      ...under('conditioner.embedders.0.model.', openClip(1280, 32)),
    ]);
    expect(refiner).toMatchObject({
      family: 'sdxl-refiner', contextDim: 1280, components: { unet: true, textEncoder: false, textEncoder2: true },
    });
    expect(refiner.notes.join('\n')).toMatch(/→ the SDXL refiner/);
    // the same encoder place beside a UNet without label_emb is SD2.x in the sgm layout
    const sd2 = detectModel([
      ...under('model.diffusion_model.', {
        'input_blocks.0.0.weight': [320, 4, 3, 3], 'input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': [320, 1024],
      }),
      ...under('conditioner.embedders.0.model.', openClip(1024, 24)),
    ]);
    expect(sd2).toMatchObject({ family: 'sd2', components: { textEncoder: true, textEncoder2: false } });
  });

  it('hostile shapes do not throw', () => {
    const d = detectModel([
      { name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [320] },
      { name: 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight', shape: [-1, 1e300] },
      { name: 'first_stage_model.decoder.conv_in.weight', shape: [] },
      { name: 'cond_stage_model.model.token_embedding.weight', shape: null as unknown as number[] },
    ]);
    expect(d.family).toBe('unknown');
    expect(d).not.toHaveProperty('unetInChannels');
  });
});

describe('inspectModel(...).detection', () => {
  it('is computed from the file index', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-detect-'));
    const path = join(dir, 'inpaint-unet.safetensors');
    const f16 = (shape: number[]) =>
      ({ dtype: 'F16' as const, shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 2) });
    writeSafetensors(path, [
      { name: 'model.diffusion_model.input_blocks.0.0.weight', ...f16([320, 9, 3, 3]) },
      { name: 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight', ...f16([320, 768]) },
    ], { 'modelspec.prediction_type': 'epsilon' });
    const r = await inspectModel(path);
    expect(r.detection).toMatchObject({
      family: 'sd1', inpaint: true, convention: 'ldm', prediction: 'epsilon', unetInChannels: 9, contextDim: 768,
      components: { unet: true, vae: false, textEncoder: false, textEncoder2: false },
    });
    const tae = await inspectModel(taeEncoder);
    expect(tae.detection).toMatchObject({ family: 'unknown', components: noComponents });
    expect(tae.detection.notes.join('\n')).toMatch(/tiny autoencoder/);
  });
});
