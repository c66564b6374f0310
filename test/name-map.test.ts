// One internal tensor naming: every file convention maps onto the LDM / stable-diffusion.cpp
// names. The generator writes the same model as an LDM single file and as a diffusers folder
// (values drawn from the LDM names), so the diffusers mapping is checked name by name, shape by
// shape and byte by byte against the LDM file.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { dataDir } from './support/data.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel, PRESETS, tensorSpecs } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { diffusersTensors, writeDiffusersFolder } from '../scripts/generator/diffusers-layout.mjs';

type Tensor = { name: string; shape: number[] };
type Component = 'checkpoint' | 'unet' | 'vae' | 'textEncoder' | 'textEncoder2';
type Mapping = { name: string; source: string; op: string; shape: number[]; rowBegin?: number };
type Plan = { convention: string; tensors: Mapping[]; dropped: string[] };

const plan = (c: Component, tensors: Tensor[], options?: { ema?: boolean }): Plan =>
  native().planNames(c, tensors, options) as Plan;

const PREFIX = { unet: 'model.diffusion_model.', vae: 'first_stage_model.', clip: 'cond_stage_model.transformer.text_model.' };
const ldmTensors = (preset: string): Tensor[] =>
  (tensorSpecs(PRESETS[preset]) as Tensor[]).map((s) => ({ name: s.name, shape: s.shape }));
const under = (tensors: Tensor[], prefix: string) => tensors.filter((t) => t.name.startsWith(prefix));
const sorted = (list: Tensor[]) => [...list].map((t) => `${t.name} [${t.shape.join(',')}]`).sort();

/** A safetensors file's header and the bytes of each tensor. */
function readSafetensors(path: string) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, { shape: number[]; dtype: string; data: Buffer }>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, { shape: v.shape, dtype: v.dtype, data: buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) });
  }
  return tensors;
}
const index = (file: ReturnType<typeof readSafetensors>): Tensor[] => [...file].map(([name, t]) => ({ name, shape: t.shape }));

const dir = mkdtempSync(join(tmpdir(), 'sdnode-names-'));

describe('diffusers folders map onto the LDM names, shapes and bytes', () => {
  const cases = [
    { preset: 'tiny', dtype: 'f16', legacyVaeAttention: false },
    { preset: 'tiny-inpaint', dtype: 'f32', legacyVaeAttention: true },
  ] as const;
  const files: Record<string, { ldm: ReturnType<typeof readSafetensors>; folder: string }> = {};

  beforeAll(async () => {
    for (const c of cases) {
      const ldmPath = join(dir, `${c.preset}.safetensors`);
      const folder = join(dir, `${c.preset}-diffusers`);
      await generateModel({ out: ldmPath, preset: c.preset, dtype: c.dtype, seed: 11 });
      await writeDiffusersFolder({ out: folder, preset: c.preset, dtype: c.dtype, seed: 11, legacyVaeAttention: c.legacyVaeAttention });
      files[c.preset] = { ldm: readSafetensors(ldmPath), folder };
    }
  });

  for (const c of cases) {
    it(`${c.preset} (${c.dtype}${c.legacyVaeAttention ? ', old VAE attention names' : ''})`, () => {
      const { ldm, folder } = files[c.preset]!;
      const parts = [
        { component: 'unet', file: 'unet/diffusion_pytorch_model.safetensors', prefix: PREFIX.unet },
        { component: 'vae', file: 'vae/diffusion_pytorch_model.safetensors', prefix: PREFIX.vae },
        { component: 'textEncoder', file: 'text_encoder/model.safetensors', prefix: PREFIX.clip },
      ] as const;
      let reshaped = 0;
      for (const p of parts) {
        const file = readSafetensors(join(folder, p.file));
        const r = plan(p.component, index(file));
        expect(r.convention).toBe('diffusers');
        expect(r.dropped).toEqual([]);
        // Exactly the LDM names and shapes of this component.
        expect(sorted(r.tensors)).toEqual(sorted(under(index(ldm), p.prefix)));
        for (const m of r.tensors) {
          const src = file.get(m.source)!;
          const want = ldm.get(m.name)!;
          expect(m.op === 'view' || m.op === 'reshape', m.name).toBe(true);
          if (m.op === 'reshape') {
            reshaped++;
            expect(src.shape).toEqual(m.shape.slice(0, 2));
          }
          expect(src.dtype).toBe(want.dtype);
          expect(Buffer.compare(src.data, want.data), `${m.source} -> ${m.name}`).toBe(0);
        }
      }
      // encoder and decoder mid-block attention: q, k, v, proj_out weights
      expect(reshaped).toBe(8);
    });
  }

  it('writes the diffusers config files from the model config', () => {
    const folder = files.tiny!.folder;
    const unet = JSON.parse(readFileSync(join(folder, 'unet/config.json'), 'utf8'));
    expect(unet).toMatchObject({
      _class_name: 'UNet2DConditionModel', block_out_channels: [32, 64], layers_per_block: 1, in_channels: 4,
      cross_attention_dim: 32, attention_head_dim: [1, 2],
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D'], up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D'],
    });
    const vae = JSON.parse(readFileSync(join(folder, 'vae/config.json'), 'utf8'));
    expect(vae).toMatchObject({ _class_name: 'AutoencoderKL', block_out_channels: [32, 32, 64, 64], layers_per_block: 1, latent_channels: 4 });
    const text = JSON.parse(readFileSync(join(folder, 'text_encoder/config.json'), 'utf8'));
    expect(text).toMatchObject({ hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, vocab_size: 49408 });
    const pipe = JSON.parse(readFileSync(join(folder, 'model_index.json'), 'utf8'));
    expect(pipe._class_name).toBe('StableDiffusionPipeline');
    expect(JSON.parse(readFileSync(join(files['tiny-inpaint']!.folder, 'model_index.json'), 'utf8'))._class_name).toBe('StableDiffusionInpaintPipeline');
    expect(existsSync(join(folder, 'scheduler/scheduler_config.json'))).toBe(true);
    expect(existsSync(join(folder, 'tokenizer'))).toBe(false);
  });

  it('writes a tokenizer/ as transformers does when given the CLIP vocabulary', async () => {
    const bpe = join(dataDir, 'clip', 'bpe_simple_vocab_16e6.txt.gz');
    const folder = join(dir, 'with-tokenizer');
    await writeDiffusersFolder({ out: folder, preset: 'tiny', seed: 1, tokenizerFrom: bpe });
    const vocab = JSON.parse(readFileSync(join(folder, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    expect(Object.keys(vocab)).toHaveLength(49408);
    // 'a lovely cat' -> [49406, 320, 2165, 2368, 49407] (DESIGN.md)
    expect([vocab['<|startoftext|>'], vocab['a</w>'], vocab['lovely</w>'], vocab['cat</w>'], vocab['<|endoftext|>']])
      .toEqual([49406, 320, 2165, 2368, 49407]);
    const merges = readFileSync(join(folder, 'tokenizer/merges.txt'), 'utf8').trimEnd().split('\n');
    expect(merges[0]).toBe('#version: 0.2');
    expect(merges).toHaveLength(48895);
  });

  it('the SD1.5 config: every diffusers name and shape (no data)', () => {
    const d = diffusersTensors(PRESETS.sd15) as Record<'unet' | 'vae' | 'textEncoder', Tensor[]>;
    const ldm = ldmTensors('sd15');
    const got: Tensor[] = [];
    for (const c of ['unet', 'vae', 'textEncoder'] as const) {
      const r = plan(c, d[c].map((t) => ({ name: t.name, shape: t.shape })));
      expect(r.dropped).toEqual([]);
      got.push(...r.tensors);
    }
    expect(sorted(got)).toEqual(sorted(ldm));
    // SD1.5's well-known places: the level-0 upsampler-free block, the deepest level's upsampler.
    const names = new Set(d.unet.map((t) => t.name));
    expect(names.has('up_blocks.0.upsamplers.0.conv.weight')).toBe(true);
    expect(names.has('up_blocks.3.upsamplers.0.conv.weight')).toBe(false);
    expect(names.has('down_blocks.3.attentions.0.norm.weight')).toBe(false);
    const r = plan('unet', [{ name: 'up_blocks.0.upsamplers.0.conv.weight', shape: [1280, 1280, 3, 3] },
      ...d.unet.filter((t) => t.name.startsWith('up_blocks.0.resnets'))]);
    expect(r.tensors.find((m) => m.source === 'up_blocks.0.upsamplers.0.conv.weight')!.name)
      .toBe('model.diffusion_model.output_blocks.2.1.conv.weight');
  });
});

describe('LDM files and component files', () => {
  it('an LDM checkpoint maps onto itself', () => {
    const ldm = ldmTensors('tiny');
    const r = plan('checkpoint', ldm);
    expect(r.convention).toBe('ldm');
    expect(r.dropped).toEqual([]);
    expect(r.tensors.every((m) => m.op === 'view' && m.name === m.source)).toBe(true);
    expect(sorted(r.tensors)).toEqual(sorted(ldm));
  });

  it('keeps the DDPM buffers and drops unknown names', () => {
    const r = plan('checkpoint', [...ldmTensors('tiny'), { name: 'betas', shape: [1000] }, { name: 'alphas_cumprod', shape: [1000] },
      { name: 'something.else', shape: [3] }, { name: 'cond_stage_model.model.logit_scale', shape: [] }]);
    expect(r.tensors.filter((m) => m.name === 'betas' || m.name === 'alphas_cumprod')).toHaveLength(2);
    expect(r.dropped.sort()).toEqual(['cond_stage_model.model.logit_scale', 'something.else']);
  });

  it('a standalone VAE without first_stage_model. (vae-ft-mse-840000 style)', () => {
    const vae = under(ldmTensors('tiny'), PREFIX.vae);
    const r = plan('vae', vae.map((t) => ({ name: t.name.slice(PREFIX.vae.length), shape: t.shape })));
    expect(r.convention).toBe('ldm');
    expect(sorted(r.tensors)).toEqual(sorted(vae));
    // the same file with the attention 1×1 convs stored as linears (diffusers-converted LDM VAEs)
    const linear = vae.map((t) => ({
      name: t.name.slice(PREFIX.vae.length),
      shape: /attn_1\.(q|k|v|proj_out)\.weight$/.test(t.name) ? t.shape.slice(0, 2) : t.shape,
    }));
    const r2 = plan('vae', linear);
    expect(sorted(r2.tensors)).toEqual(sorted(vae));
    expect(r2.tensors.filter((m) => m.op === 'reshape')).toHaveLength(8);
  });

  it('a UNet file with diffusion_model. or no prefix', () => {
    const unet = under(ldmTensors('tiny'), PREFIX.unet);
    for (const prefix of ['diffusion_model.', '', 'model.diffusion_model.']) {
      const r = plan('unet', unet.map((t) => ({ name: prefix + t.name.slice(PREFIX.unet.length), shape: t.shape })));
      expect(r.convention).toBe('ldm');
      expect(r.dropped).toEqual([]);
      expect(sorted(r.tensors)).toEqual(sorted(unet));
    }
  });

  it('EMA: UNet weights from model_ema.* when asked, dropped otherwise', () => {
    const ldm = ldmTensors('tiny');
    const unet = under(ldm, PREFIX.unet);
    const emaName = (n: string) => `model_ema.${n.slice('model.'.length).replaceAll('.', '')}`;
    expect(emaName('model.diffusion_model.input_blocks.0.0.weight')).toBe('model_ema.diffusion_modelinput_blocks00weight');
    const withEma = [...ldm, ...unet.map((t) => ({ name: emaName(t.name), shape: t.shape })),
      { name: 'model_ema.decay', shape: [] }, { name: 'model_ema.num_updates', shape: [] }];

    const on = plan('checkpoint', withEma, { ema: true });
    expect(sorted(on.tensors)).toEqual(sorted(ldm));
    for (const m of on.tensors) expect(m.source).toBe(m.name.startsWith(PREFIX.unet) ? emaName(m.name) : m.name);
    expect(on.dropped.sort()).toEqual([...unet.map((t) => t.name), 'model_ema.decay', 'model_ema.num_updates'].sort());

    const off = plan('checkpoint', withEma, { ema: false });
    expect(off.tensors.every((m) => m.source === m.name)).toBe(true);
    expect(off.dropped).toHaveLength(unet.length + 2);
    expect(plan('checkpoint', withEma).dropped).toHaveLength(unet.length + 2);
  });
});

/** An OpenCLIP text tower's names and shapes (open_clip TextTransformer state_dict). */
function openClip(prefix: string, width: number, layers: number): Tensor[] {
  const t: Tensor[] = [
    { name: `${prefix}token_embedding.weight`, shape: [49408, width] },
    { name: `${prefix}positional_embedding`, shape: [77, width] },
    { name: `${prefix}ln_final.weight`, shape: [width] },
    { name: `${prefix}ln_final.bias`, shape: [width] },
    { name: `${prefix}text_projection`, shape: [width, width] },
    { name: `${prefix}logit_scale`, shape: [] },
  ];
  for (let l = 0; l < layers; l++) {
    const b = `${prefix}transformer.resblocks.${l}.`;
    t.push(
      { name: `${b}ln_1.weight`, shape: [width] }, { name: `${b}ln_1.bias`, shape: [width] },
      { name: `${b}attn.in_proj_weight`, shape: [3 * width, width] }, { name: `${b}attn.in_proj_bias`, shape: [3 * width] },
      { name: `${b}attn.out_proj.weight`, shape: [width, width] }, { name: `${b}attn.out_proj.bias`, shape: [width] },
      { name: `${b}ln_2.weight`, shape: [width] }, { name: `${b}ln_2.bias`, shape: [width] },
      { name: `${b}mlp.c_fc.weight`, shape: [4 * width, width] }, { name: `${b}mlp.c_fc.bias`, shape: [4 * width] },
      { name: `${b}mlp.c_proj.weight`, shape: [width, 4 * width] }, { name: `${b}mlp.c_proj.bias`, shape: [width] },
    );
  }
  return t;
}

/** The HF CLIPTextModel names and shapes the OpenCLIP tower above becomes. */
function hfClip(prefix: string, width: number, layers: number): Tensor[] {
  const t: Tensor[] = [
    { name: `${prefix}embeddings.token_embedding.weight`, shape: [49408, width] },
    { name: `${prefix}embeddings.position_embedding.weight`, shape: [77, width] },
    { name: `${prefix}final_layer_norm.weight`, shape: [width] },
    { name: `${prefix}final_layer_norm.bias`, shape: [width] },
  ];
  for (let l = 0; l < layers; l++) {
    const b = `${prefix}encoder.layers.${l}.`;
    for (const x of ['q_proj', 'k_proj', 'v_proj', 'out_proj'])
      t.push({ name: `${b}self_attn.${x}.weight`, shape: [width, width] }, { name: `${b}self_attn.${x}.bias`, shape: [width] });
    for (const x of ['layer_norm1', 'layer_norm2']) t.push({ name: `${b}${x}.weight`, shape: [width] }, { name: `${b}${x}.bias`, shape: [width] });
    t.push({ name: `${b}mlp.fc1.weight`, shape: [4 * width, width] }, { name: `${b}mlp.fc1.bias`, shape: [4 * width] });
    t.push({ name: `${b}mlp.fc2.weight`, shape: [width, 4 * width] }, { name: `${b}mlp.fc2.bias`, shape: [width] });
  }
  return t;
}

describe('text encoders', () => {
  it('SD2.x OpenCLIP ViT-H (cond_stage_model.model.*) -> HF names, in_proj split in three row blocks', () => {
    const r = plan('checkpoint', openClip('cond_stage_model.model.', 1024, 2));
    expect(r.convention).toBe('ldm-sd2');
    expect(sorted(r.tensors)).toEqual(sorted(hfClip(PREFIX.clip, 1024, 2)));
    const slices = r.tensors.filter((m) => m.source === 'cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight');
    expect(slices.map((m) => [m.name.split('.').slice(-2, -1)[0], m.op, m.rowBegin, m.shape])).toEqual([
      ['q_proj', 'rowSlice', 0, [1024, 1024]],
      ['k_proj', 'rowSlice', 1024, [1024, 1024]],
      ['v_proj', 'rowSlice', 2048, [1024, 1024]],
    ]);
    expect(r.tensors.filter((m) => m.source.endsWith('in_proj_bias')).map((m) => m.rowBegin)).toEqual([0, 1024, 2048, 0, 1024, 2048]);
    // SD2 does not pool: its text_projection, like logit_scale, is dropped (sd.cpp unused_tensors)
    expect(r.dropped.sort()).toEqual(['cond_stage_model.model.logit_scale', 'cond_stage_model.model.text_projection']);
    // the same tower as a component file without prefix
    const bare = plan('textEncoder', openClip('', 1024, 2));
    expect(bare.convention).toBe('openclip');
    expect(sorted(bare.tensors)).toEqual(sorted(hfClip(PREFIX.clip, 1024, 2)));
  });

  it('in_proj rows must divide by three', () => {
    const bad = openClip('cond_stage_model.model.', 64, 1).map((t) =>
      t.name.endsWith('in_proj_weight') ? { ...t, shape: [190, 64] } : t);
    expect(() => plan('checkpoint', bad)).toThrow(expect.objectContaining({ code: 'ERR_MODEL_FORMAT', message: expect.stringMatching(/divisible by 3/) }));
  });

  it('SDXL conditioner.embedders -> cond_stage_model.transformer / cond_stage_model.1.transformer', () => {
    const te1 = hfClip('conditioner.embedders.0.transformer.text_model.', 768, 1);
    const te2 = openClip('conditioner.embedders.1.model.', 1280, 2);
    const r = plan('checkpoint', [...te1, ...te2]);
    expect(r.convention).toBe('ldm-sdxl');
    const text2 = 'cond_stage_model.1.transformer.text_model.';
    expect(sorted(r.tensors)).toEqual(sorted([...hfClip(PREFIX.clip, 768, 1), ...hfClip(text2, 1280, 2),
      { name: `${text2}text_projection`, shape: [1280, 1280] }]));
    // OpenCLIP applies x @ P; the internal tensor is the nn.Linear weight, Pᵀ
    expect(r.tensors.find((m) => m.name === `${text2}text_projection`)).toMatchObject({
      source: 'conditioner.embedders.1.model.text_projection', op: 'transpose2d',
    });
    expect(r.dropped).toEqual(['conditioner.embedders.1.model.logit_scale']);
  });

  it('SDXL diffusers text_encoder_2 (CLIPTextModelWithProjection) and sd.cpp GGUF names', () => {
    const text2 = 'cond_stage_model.1.transformer.text_model.';
    const want = sorted([...hfClip(text2, 64, 1), { name: `${text2}text_projection`, shape: [64, 64] }]);
    const hf = [...hfClip('text_model.', 64, 1), { name: 'text_projection.weight', shape: [64, 64] }];
    const r = plan('textEncoder2', hf);
    expect(r.convention).toBe('diffusers');
    expect(sorted(r.tensors)).toEqual(want);
    expect(r.tensors.find((m) => m.name === `${text2}text_projection`)!.op).toBe('view');
    // the same under text_encoder_2. in a single file
    expect(sorted(plan('checkpoint', hf.map((t) => ({ ...t, name: `text_encoder_2.${t.name}` }))).tensors)).toEqual(want);
    // sd.cpp GGUF: already internal names, projection as is, and (newer sd.cpp) a fused in_proj
    const gguf = [...hfClip(text2, 64, 1).filter((t) => !/self_attn\.[qkv]_proj/.test(t.name)),
      { name: `${text2}encoder.layers.0.self_attn.in_proj.weight`, shape: [192, 64] },
      { name: `${text2}encoder.layers.0.self_attn.in_proj.bias`, shape: [192] },
      { name: `${text2}text_projection`, shape: [64, 64] }];
    const g = plan('checkpoint', gguf);
    expect(g.convention).toBe('ldm-sdxl');
    expect(sorted(g.tensors)).toEqual(want);
    expect(g.tensors.filter((m) => m.op === 'rowSlice')).toHaveLength(6);
  });

  it("the SDXL refiner's bigG at conditioner.embedders.0.model. goes to the second encoder's place with its projection; SD2's stays first", () => {
    const refiner = ldmTensors('tiny-sdxl-refiner');
    const r = plan('checkpoint', refiner);
    const text2 = 'cond_stage_model.1.transformer.text_model.';
    const texts = r.tensors.filter((m) => m.source.startsWith('conditioner.'));
    expect(texts.length).toBeGreaterThan(0);
    expect(texts.every((m) => m.name.startsWith(text2))).toBe(true);
    const projection = r.tensors.find((m) => m.name === `${text2}text_projection`)!;
    expect(projection).toMatchObject({ source: 'conditioner.embedders.0.model.text_projection', op: 'transpose2d' });
    // Without the UNet's label_emb the same place is SD2.x's OpenCLIP-H: the first encoder, no projection.
    const sd2 = plan('checkpoint', refiner.filter((t) => !t.name.includes('.label_emb.')));
    const sd2Texts = sd2.tensors.filter((m) => m.source.startsWith('conditioner.'));
    expect(sd2Texts.every((m) => m.name.startsWith('cond_stage_model.transformer.text_model.'))).toBe(true);
    expect(sd2Texts.some((m) => m.name.endsWith('text_projection'))).toBe(false);
  });

  it('a diffusers SD1.x text_encoder under text_encoder. and with old transformers names', () => {
    const clip = under(ldmTensors('tiny'), PREFIX.clip);
    const local = clip.map((t) => ({ name: t.name.slice(PREFIX.clip.length), shape: t.shape }));
    expect(sorted(plan('checkpoint', local.map((t) => ({ ...t, name: `text_encoder.text_model.${t.name}` }))).tensors)).toEqual(sorted(clip));
    const old = plan('checkpoint', local.map((t) => ({ ...t, name: `cond_stage_model.transformer.${t.name}` })));
    expect(old.convention).toBe('ldm');
    expect(sorted(old.tensors)).toEqual(sorted(clip));
  });
});

describe('refusals', () => {
  it('two sources for one internal name: ERR_MODEL_FORMAT naming both', () => {
    const cases: Array<[Component, Tensor[]]> = [
      ['checkpoint', [{ name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [32, 4, 3, 3] },
        { name: 'unet.conv_in.weight', shape: [32, 4, 3, 3] }]],
      ['vae', [{ name: 'encoder.mid.attn_1.q.weight', shape: [64, 64, 1, 1] },
        { name: 'encoder.mid_block.attentions.0.to_q.weight', shape: [64, 64] }]],
      ['vae', [{ name: 'encoder.mid_block.attentions.0.query.weight', shape: [64, 64] },
        { name: 'encoder.mid_block.attentions.0.to_q.weight', shape: [64, 64] }]],
      ['unet', [{ name: 'diffusion_model.out.2.bias', shape: [4] }, { name: 'out.2.bias', shape: [4] }]],
      ['textEncoder', [{ name: 'text_model.final_layer_norm.weight', shape: [8] }, { name: 'ln_final.weight', shape: [8] }]],
    ];
    for (const [component, tensors] of cases) {
      let err: unknown;
      try {
        plan(component, tensors);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(tensors)).toMatchObject({ code: 'ERR_MODEL_FORMAT' });
      for (const t of tensors) expect((err as Error).message).toContain(t.name);
    }
  });

  it('diffusers levels with a gap', () => {
    expect(() => plan('unet', [
      { name: 'down_blocks.0.resnets.0.norm1.weight', shape: [32] },
      { name: 'down_blocks.2.resnets.0.norm1.weight', shape: [32] },
    ])).toThrow(expect.objectContaining({ code: 'ERR_MODEL_FORMAT' }));
  });

  it('argument checks', () => {
    const b = native();
    const call = (...args: unknown[]) => (b.planNames as (...a: unknown[]) => unknown)(...args);
    expect(() => call('bogus', [])).toThrow(TypeError);
    expect(() => call('unet')).toThrow(TypeError);
    expect(() => call('unet', 'x')).toThrow(TypeError);
    expect(() => call('unet', [{ name: 1, shape: [] }])).toThrow(TypeError);
    expect(() => call('unet', [{ name: 'a', shape: [-1] }])).toThrow(TypeError);
    expect(() => call('unet', [{ name: 'a', shape: [1.5] }])).toThrow(TypeError);
    expect(() => call('unet', [{ name: 'a', shape: [1] }], { ema: 'yes' })).toThrow(TypeError);
    expect(call('unet', [])).toEqual({ convention: 'unknown', tensors: [], dropped: [] });
  });
});
