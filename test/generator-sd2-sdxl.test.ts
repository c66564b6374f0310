// The generator's SD2.x and SDXL presets: the full-size ones have the names, shapes and
// parameter counts of the released checkpoints (checked from the specs alone, nothing written);
// the tiny ones are written and read back by the engine.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { inspectModel, loadModel, type Model } from '../lib/index.js';
import { dataDir } from './support/data.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, SDXL_SIZE_EMBEDDINGS, attentionHeadsMetadata, componentOf, generateModel, tensorSpecs, validateConfig } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { writeTorchCheckpoint } from '../scripts/generator/torch-checkpoint.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { diffusersTensors, writeDiffusersFolder } from '../scripts/generator/diffusers-layout.mjs';

interface Spec { name: string; shape: number[]; init: string }
const dir = mkdtempSync(join(tmpdir(), 'sdnode-gen2-'));
const specsOf = (preset: string) => tensorSpecs(PRESETS[preset]) as Spec[];
const shapes = (preset: string) => new Map(specsOf(preset).map((s) => [s.name, s.shape]));
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** Floating-point parameters of one component (position_ids excluded, as generateModel counts). */
const parameters = (preset: string, component: string) =>
  specsOf(preset).filter((s) => componentOf(s.name) === component && s.init !== 'position_ids').reduce((n, s) => n + numel(s.shape), 0);

const U = 'model.diffusion_model.';

// Keys and shapes of sd_xl_base_1.0.safetensors. The bigG ones are those of the size-mismatch
// listing in Stability-AI/generative-models issue 431 (resblocks.N.attn.in_proj_weight
// [3840, 1280], out_proj [1280, 1280], ln_1/ln_2 [1280]); the rest follow sd_xl_base.yaml
// (channels 320/640/1280, no attention at the first level, depth 2 and 10, linear proj,
// context 2048, ADM 2816) as stable-diffusion.cpp's and ComfyUI's SDXL loaders read them.
const SDXL_KEYS: Array<[string, number[]]> = [
  [`${U}time_embed.0.weight`, [1280, 320]],
  [`${U}time_embed.2.weight`, [1280, 1280]],
  [`${U}label_emb.0.0.weight`, [1280, 2816]],
  [`${U}label_emb.0.0.bias`, [1280]],
  [`${U}label_emb.0.2.weight`, [1280, 1280]],
  [`${U}input_blocks.0.0.weight`, [320, 4, 3, 3]],
  [`${U}input_blocks.1.0.in_layers.2.weight`, [320, 320, 3, 3]],
  [`${U}input_blocks.2.0.emb_layers.1.weight`, [320, 1280]],
  [`${U}input_blocks.3.0.op.weight`, [320, 320, 3, 3]],
  [`${U}input_blocks.4.0.skip_connection.weight`, [640, 320, 1, 1]],
  [`${U}input_blocks.4.1.norm.weight`, [640]],
  [`${U}input_blocks.4.1.proj_in.weight`, [640, 640]],
  [`${U}input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight`, [640, 2048]],
  [`${U}input_blocks.5.1.transformer_blocks.1.ff.net.0.proj.weight`, [5120, 640]],
  [`${U}input_blocks.6.0.op.weight`, [640, 640, 3, 3]],
  [`${U}input_blocks.7.1.transformer_blocks.9.attn2.to_v.weight`, [1280, 2048]],
  [`${U}input_blocks.8.1.transformer_blocks.9.ff.net.2.weight`, [1280, 5120]],
  [`${U}input_blocks.8.1.proj_out.weight`, [1280, 1280]],
  [`${U}middle_block.0.in_layers.2.weight`, [1280, 1280, 3, 3]],
  [`${U}middle_block.1.transformer_blocks.9.attn1.to_q.weight`, [1280, 1280]],
  [`${U}middle_block.1.transformer_blocks.9.norm3.bias`, [1280]],
  [`${U}middle_block.2.out_layers.3.weight`, [1280, 1280, 3, 3]],
  [`${U}output_blocks.0.0.skip_connection.weight`, [1280, 2560, 1, 1]],
  [`${U}output_blocks.0.1.transformer_blocks.9.attn1.to_out.0.weight`, [1280, 1280]],
  [`${U}output_blocks.2.0.in_layers.0.weight`, [1920]],
  [`${U}output_blocks.2.2.conv.weight`, [1280, 1280, 3, 3]],
  [`${U}output_blocks.3.0.skip_connection.weight`, [640, 1920, 1, 1]],
  [`${U}output_blocks.5.0.in_layers.2.weight`, [640, 960, 3, 3]],
  [`${U}output_blocks.5.1.transformer_blocks.1.attn2.to_k.weight`, [640, 2048]],
  [`${U}output_blocks.5.2.conv.weight`, [640, 640, 3, 3]],
  [`${U}output_blocks.6.0.skip_connection.weight`, [320, 960, 1, 1]],
  [`${U}output_blocks.8.0.skip_connection.weight`, [320, 640, 1, 1]],
  [`${U}out.2.weight`, [4, 320, 3, 3]],
  ['first_stage_model.encoder.conv_out.weight', [8, 512, 3, 3]],
  ['first_stage_model.decoder.up.3.block.0.conv1.weight', [512, 512, 3, 3]],
  ['first_stage_model.quant_conv.weight', [8, 8, 1, 1]],
  ['conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight', [49408, 768]],
  ['conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight', [77, 768]],
  ['conditioner.embedders.0.transformer.text_model.embeddings.position_ids', [1, 77]],
  ['conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight', [768, 768]],
  ['conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight', [3072, 768]],
  ['conditioner.embedders.0.transformer.text_model.final_layer_norm.bias', [768]],
  ['conditioner.embedders.1.model.token_embedding.weight', [49408, 1280]],
  ['conditioner.embedders.1.model.positional_embedding', [77, 1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.0.ln_1.weight', [1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.6.attn.in_proj_weight', [3840, 1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.6.attn.in_proj_bias', [3840]],
  ['conditioner.embedders.1.model.transformer.resblocks.6.attn.out_proj.weight', [1280, 1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.31.ln_2.bias', [1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_fc.weight', [5120, 1280]],
  ['conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_proj.weight', [1280, 5120]],
  ['conditioner.embedders.1.model.ln_final.weight', [1280]],
  ['conditioner.embedders.1.model.text_projection', [1280, 1280]],
  ['conditioner.embedders.1.model.logit_scale', []],
];
const SDXL_ABSENT = [
  `${U}input_blocks.1.1.norm.weight`, // no attention at the first level
  `${U}output_blocks.6.1.norm.weight`,
  `${U}input_blocks.4.1.transformer_blocks.2.attn1.to_q.weight`, // depth 2 there
  `${U}input_blocks.9.0.in_layers.0.weight`, // three levels: blocks 0 … 8
  `${U}output_blocks.9.0.in_layers.0.weight`,
  `${U}output_blocks.8.2.conv.weight`, // no upsampling after the last level
  'conditioner.embedders.1.model.transformer.resblocks.32.ln_1.weight',
  'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight',
];

// Keys and shapes of v2-1_768-ema-pruned (v2-inference-v.yaml: heads of 64, linear proj,
// context 1024; OpenCLIP ViT-H/14 text tower under cond_stage_model.model, 24 resblocks).
const SD21_KEYS: Array<[string, number[]]> = [
  [`${U}input_blocks.0.0.weight`, [320, 4, 3, 3]],
  [`${U}input_blocks.1.1.proj_in.weight`, [320, 320]],
  [`${U}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`, [320, 1024]],
  [`${U}input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight`, [5120, 640]],
  [`${U}input_blocks.7.1.proj_out.weight`, [1280, 1280]],
  [`${U}input_blocks.11.0.out_layers.3.weight`, [1280, 1280, 3, 3]],
  [`${U}middle_block.1.proj_in.weight`, [1280, 1280]],
  [`${U}middle_block.1.transformer_blocks.0.attn2.to_v.weight`, [1280, 1024]],
  [`${U}output_blocks.2.1.conv.weight`, [1280, 1280, 3, 3]],
  [`${U}output_blocks.5.2.conv.weight`, [1280, 1280, 3, 3]],
  [`${U}output_blocks.11.1.transformer_blocks.0.norm1.bias`, [320]],
  [`${U}output_blocks.11.1.proj_out.weight`, [320, 320]],
  ['cond_stage_model.model.token_embedding.weight', [49408, 1024]],
  ['cond_stage_model.model.positional_embedding', [77, 1024]],
  ['cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight', [3072, 1024]],
  ['cond_stage_model.model.transformer.resblocks.23.attn.in_proj_bias', [3072]],
  ['cond_stage_model.model.transformer.resblocks.23.mlp.c_fc.weight', [4096, 1024]],
  ['cond_stage_model.model.transformer.resblocks.23.mlp.c_proj.bias', [1024]],
  ['cond_stage_model.model.ln_final.weight', [1024]],
  ['cond_stage_model.model.text_projection', [1024, 1024]],
  ['cond_stage_model.model.logit_scale', []],
];

describe('generate-model: SDXL', () => {
  it('sdxl has the names and shapes of sd_xl_base_1.0', () => {
    const s = shapes('sdxl');
    for (const [name, shape] of SDXL_KEYS) expect([name, s.get(name)]).toEqual([name, shape]);
    for (const name of SDXL_ABSENT) expect(s.has(name), name).toBe(false);
    // 1680 UNet + 248 VAE + 197 CLIP ViT-L (position_ids included) + 390 bigG (logit_scale included).
    expect(s.size).toBe(2515);
  });

  it('sdxl counts the parameters of the released model', () => {
    expect(parameters('sdxl', 'unet')).toBe(2_567_463_684);
    expect(parameters('sdxl', 'vae')).toBe(83_653_863);
    expect(parameters('sdxl', 'clip')).toBe(123_060_480);
    // OpenCLIP bigG's text tower: 694,659,840 weights, and the logit scale.
    expect(parameters('sdxl', 'clip2')).toBe(694_659_841);
  });

  it('keeps the real ADM formula: pooled width + 3·2·256, checked against the config', () => {
    expect(SDXL_SIZE_EMBEDDINGS).toBe(1536);
    const tiny = shapes('tiny-sdxl');
    expect(tiny.get(`${U}label_emb.0.0.weight`)).toEqual([128, 32 + 1536]);
    const bad = { ...PRESETS['tiny-sdxl'], unet: { ...PRESETS['tiny-sdxl'].unet, admInChannels: 2816 } };
    expect(() => validateConfig(bad)).toThrow(/admInChannels must be clip2\.projectionDim \+ 1536 = 1568/);
    const deep = { ...PRESETS['tiny-sdxl'], unet: { ...PRESETS['tiny-sdxl'].unet, transformerDepth: [1, 1, 2] } };
    expect(() => validateConfig(deep)).toThrow(/transformerDepth\[0\] is 1, but level 0 is not in unet.attentionLevels/);
    const ctx = { ...PRESETS['tiny-sdxl'], unet: { ...PRESETS['tiny-sdxl'].unet, contextDim: 32 } };
    expect(() => validateConfig(ctx)).toThrow(/clip\.width \+ clip2\.width 64/);
  });

  it('tiny-sdxl exercises what sdxl has: a level without attention, depth 2, linear proj, two encoders', () => {
    const s = shapes('tiny-sdxl');
    expect(s.has(`${U}input_blocks.1.1.norm.weight`)).toBe(false);
    expect(s.get(`${U}input_blocks.7.1.transformer_blocks.1.attn2.to_k.weight`)).toEqual([64, 64]);
    expect(s.get(`${U}middle_block.1.transformer_blocks.1.attn1.to_q.weight`)).toEqual([64, 64]);
    expect(s.get(`${U}output_blocks.2.2.conv.weight`)).toEqual([64, 64, 3, 3]);
    expect(s.get(`${U}input_blocks.4.1.proj_in.weight`)).toEqual([64, 64]);
    expect(s.get('conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight')).toEqual([49408, 32]);
    expect(s.get('conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight')).toEqual([96, 32]);
    expect(s.get('conditioner.embedders.1.model.positional_embedding')).toEqual([77, 32]);
  });

  it('writes tiny-sdxl, which the engine reads with every name and shape', async () => {
    const out = join(dir, 'tiny-sdxl.safetensors');
    const result = await generateModel({ out, preset: 'tiny-sdxl', seed: 1 });
    const r = await inspectModel(out);
    expect(r.tensorCount).toBe(result.tensorCount);
    expect(r.fileSize).toBe(result.fileBytes);
    const expected = specsOf('tiny-sdxl').map((s) => [s.name, s.shape]).sort();
    expect(r.tensors.map((t) => [t.name, t.shape]).sort()).toEqual(expected);
    expect(r.tensors.find((t) => t.name.endsWith('logit_scale'))?.shape).toEqual([]);
    expect(JSON.parse(r.metadata['sdnode.attention_heads']!)).toEqual({ unet: { headDim: 32 }, clip: { numHeads: 2 }, clip2: { numHeads: 2 } });
    expect(r.detection).toMatchObject({ inpaint: false, convention: 'ldm', contextDim: 64 });
    expect(r.detection.components).toEqual({ unet: true, vae: true, textEncoder: true, textEncoder2: true });
    // Both encoders are told SDXL by their key layout.
    expect(r.detection.notes.filter((n) => /sdxl by key layout/.test(n))).toHaveLength(2);
    expect(result.components.clip2.tensors).toBe(30);
  });

  // lib/model-detect.ts reads a UNet with an ADM input and a context other than 2048 as an
  // unCLIP/upscaler-style UNet, so the scaled-down SDXL is family 'unknown' for now. When
  // detection accepts it, this fails: make it a plain `it`.
  it('tiny-sdxl is detected as family sdxl', async () => {
    const out = join(dir, 'tiny-sdxl-family.safetensors');
    await generateModel({ out, preset: 'tiny-sdxl', seed: 1 });
    expect((await inspectModel(out)).detection.family).toBe('sdxl');
  });

  it('tiny-sdxl-inpaint has the 9-channel input', async () => {
    const out = join(dir, 'tiny-sdxl-inpaint.safetensors');
    await generateModel({ out, preset: 'tiny-sdxl-inpaint', seed: 1 });
    const r = await inspectModel(out);
    expect(r.tensors.find((t) => t.name === `${U}input_blocks.0.0.weight`)?.shape).toEqual([32, 9, 3, 3]);
    expect(r.detection).toMatchObject({ inpaint: true, unetInChannels: 9 });
  });

  it('writes tiny-sdxl as a .ckpt with the same names and shapes', async () => {
    const out = join(dir, 'tiny-sdxl.ckpt');
    const w = await writeTorchCheckpoint({ out, preset: 'tiny-sdxl', seed: 1 });
    const r = await inspectModel(out);
    expect(r.format).toBe('torch');
    expect(r.tensorCount).toBe(w.tensorCount);
    expect(r.tensors.map((t) => [t.name, t.shape]).sort()).toEqual(specsOf('tiny-sdxl').map((s) => [s.name, s.shape]).sort());
  });
});

describe('generate-model: SD2.x', () => {
  it('sd21 has the names and shapes of v2-1_768', () => {
    const s = shapes('sd21');
    for (const [name, shape] of SD21_KEYS) expect([name, s.get(name)]).toEqual([name, shape]);
    for (const name of [`${U}label_emb.0.0.weight`, 'cond_stage_model.model.transformer.resblocks.24.ln_1.weight'])
      expect(s.has(name), name).toBe(false);
    expect([...s.keys()].some((n) => n.endsWith('position_ids'))).toBe(false);
  });

  it('sd21 counts the parameters of the released model', () => {
    expect(parameters('sd21', 'unet')).toBe(865_910_724);
    // OpenCLIP ViT-H/14's text tower: 354,032,640 weights, and the logit scale.
    expect(parameters('sd21', 'clip')).toBe(354_032_641);
  });

  it('writes the heads as head widths, in the form lib/ reads', () => {
    expect(JSON.parse(attentionHeadsMetadata(PRESETS.sd21))).toEqual({ unet: { headDim: 64 }, clip: { numHeads: 16 } });
    expect(JSON.parse(attentionHeadsMetadata(PRESETS.sdxl))).toEqual({ unet: { headDim: 64 }, clip: { numHeads: 12 }, clip2: { numHeads: 20 } });
  });

  it('writes tiny-sd2, which the engine reads and detects as SD2.x', async () => {
    const out = join(dir, 'tiny-sd2.safetensors');
    const result = await generateModel({ out, preset: 'tiny-sd2', seed: 1 });
    const r = await inspectModel(out);
    expect(r.tensorCount).toBe(result.tensorCount);
    expect(r.tensors.map((t) => [t.name, t.shape]).sort()).toEqual(specsOf('tiny-sd2').map((s) => [s.name, s.shape]).sort());
    expect(r.tensors.find((t) => t.name === `${U}input_blocks.1.1.proj_in.weight`)?.shape).toEqual([32, 32]);
    expect(r.detection).toMatchObject({ family: 'sd2', inpaint: false, convention: 'ldm', contextDim: 32 });
    expect(r.detection.components).toEqual({ unet: true, vae: true, textEncoder: true, textEncoder2: false });
    expect(JSON.parse(r.metadata['sdnode.attention_heads']!)).toEqual({ unet: { headDim: 32 }, clip: { numHeads: 2 } });
  });

  it('leaves SD1.x presets as they were: no new config fields', () => {
    const c = validateConfig(PRESETS.sd15);
    expect(Object.keys(c.unet)).not.toContain('linearProj');
    expect(Object.keys(c.clip)).not.toContain('naming');
    expect(c).not.toHaveProperty('clip2');
  });
});

describe('generate-model: SD2.x and SDXL diffusers folders', () => {
  const cpu = { device: 'cpu', threads: 2 } as const;
  /** name → [shape, checksum] of every float weight of a loaded model, under the engine's names. */
  const weights = async (model: Model) => {
    const list = model.weights().filter((w) => !w.name.endsWith('position_ids'));
    const sums = await model.checksums(list.map((w) => w.name));
    return new Map(list.map((w) => [w.name, [w.shape, sums[w.name]]]));
  };

  it('sdxl: text_encoder_2 is CLIPTextModelWithProjection with bigG cut into q/k/v and the projection transposed', () => {
    const t = diffusersTensors(PRESETS.sdxl) as Record<string, Array<{ name: string; shape: number[] }>>;
    expect(Object.keys(t)).toEqual(['unet', 'vae', 'textEncoder', 'textEncoder2']);
    const te2 = new Map(t.textEncoder2!.map((x) => [x.name, x.shape]));
    // 32 layers × 16 + token and position embeddings + final norm (2) + projection.
    expect(te2.size).toBe(517);
    expect(te2.get('text_model.encoder.layers.31.self_attn.q_proj.weight')).toEqual([1280, 1280]);
    expect(te2.get('text_model.encoder.layers.31.self_attn.v_proj.bias')).toEqual([1280]);
    expect(te2.get('text_model.encoder.layers.0.mlp.fc1.weight')).toEqual([5120, 1280]);
    expect(te2.get('text_model.embeddings.position_embedding.weight')).toEqual([77, 1280]);
    expect(te2.get('text_projection.weight')).toEqual([1280, 1280]);
    const unet = new Map(t.unet!.map((x) => [x.name, x.shape]));
    expect(unet.get('add_embedding.linear_1.weight')).toEqual([1280, 2816]);
    expect(unet.get('down_blocks.1.attentions.0.proj_in.weight')).toEqual([640, 640]);
    expect(unet.get('mid_block.attentions.0.transformer_blocks.9.attn2.to_k.weight')).toEqual([1280, 2048]);
    expect(unet.has('down_blocks.0.attentions.0.norm.weight')).toBe(false);
  });

  it('sd21: text_encoder keeps 23 of the 24 layers, as diffusers converts SD2.x', () => {
    const te = new Map((diffusersTensors(PRESETS.sd21).textEncoder as Array<{ name: string; shape: number[] }>).map((x) => [x.name, x.shape]));
    expect(te.size).toBe(23 * 16 + 4);
    expect(te.get('text_model.encoder.layers.22.self_attn.k_proj.weight')).toEqual([1024, 1024]);
    expect(te.has('text_model.encoder.layers.23.self_attn.k_proj.weight')).toBe(false);
    expect(te.has('text_projection.weight')).toBe(false);
  });

  it('tiny-sdxl: the folder loads to the same weights, names and values as the single file', async () => {
    const folder = join(dir, 'tiny-sdxl-diffusers');
    const file = join(dir, 'tiny-sdxl-ldm.safetensors');
    const tokenizerFrom = join(dataDir, 'clip', 'bpe_simple_vocab_16e6.txt.gz');
    const written = await writeDiffusersFolder({ preset: 'tiny-sdxl', seed: 3, out: folder, tokenizerFrom });
    // tokenizer_2: CLIP's vocabulary with OpenCLIP's padding token.
    expect(readFileSync(join(folder, 'tokenizer_2', 'vocab.json'))).toEqual(readFileSync(join(folder, 'tokenizer', 'vocab.json')));
    expect(JSON.parse(readFileSync(join(folder, 'tokenizer_2', 'special_tokens_map.json'), 'utf8')).pad_token).toBe('!');
    expect(JSON.parse(readFileSync(join(folder, 'model_index.json'), 'utf8'))).toMatchObject({
      _class_name: 'StableDiffusionXLPipeline', text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], tokenizer_2: ['transformers', 'CLIPTokenizer'],
    });
    await generateModel({ preset: 'tiny-sdxl', seed: 3, out: file });
    expect(Object.keys(written.files)).toEqual(['unet', 'vae', 'textEncoder', 'textEncoder2']);
    const config = JSON.parse(readFileSync(join(folder, 'unet', 'config.json'), 'utf8'));
    expect(config).toMatchObject({ addition_embed_type: 'text_time', projection_class_embeddings_input_dim: 1568, use_linear_projection: true, cross_attention_dim: 64 });
    expect(JSON.parse(readFileSync(join(folder, 'text_encoder_2', 'config.json'), 'utf8'))).toMatchObject({ architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu' });
    await using fromFolder = await loadModel(folder, cpu);
    await using fromFile = await loadModel(file, cpu);
    expect(fromFolder.info.sources.map((s) => s.component).sort()).toEqual(['textEncoder', 'textEncoder2', 'unet', 'vae']);
    const [a, b] = [await weights(fromFolder), await weights(fromFile)];
    expect(a.size).toBeGreaterThan(800);
    expect([...a.values()].every(([, sum]) => typeof sum === 'string' && sum.length > 0)).toBe(true);
    expect([...a.keys()].some((n) => n.includes('text_projection'))).toBe(true);
    expect(a).toEqual(b);
  });
});

