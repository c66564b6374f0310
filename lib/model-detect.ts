/**
 * Telling what a model file holds from its tensor names and shapes (and its metadata), without
 * reading any tensor data: the Stable Diffusion family, whether it is an inpainting variant,
 * which components are present, which key naming the file uses, and the prediction type where
 * the file itself says it. Every decision leaves a line in `notes`.
 *
 * The facts behind the rules were looked up in public sources and are cited beside each rule:
 * CompVis/Stability LDM configs and checkpoints, diffusers' single-file loading
 * (`loaders/single_file_utils.py`), ComfyUI's model detection (`comfy/model_detection.py`,
 * `comfy/supported_models.py`), stable-diffusion.cpp's loader (`model.cpp`), and kohya-ss
 * sd-scripts' ModelSpec writer (`library/sai_model_spec.py`). No code is taken from them.
 */

/**
 * Stable Diffusion 1.x, 2.x, XL, the SDXL refiner (OpenCLIP bigG alone, size and aesthetic-score
 * conditioning), or not told apart (not Stable Diffusion, or too little of it).
 */
export type ModelFamily = 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner' | 'unknown';

/** What a model file or loaded model is, told from tensor names, shapes and metadata only. */
export interface ModelDetection {
  /** 'unknown' when the names and shapes fit no family, or several. */
  family: ModelFamily;
  /** The UNet takes 9 input channels (4 latent + 4 masked-image latent + 1 mask). */
  inpaint: boolean;
  /** Key naming: LDM single-file checkpoints (CompVis / Stability) or diffusers. */
  convention: 'ldm' | 'diffusers' | 'unknown';
  /** Which components the weights hold (textEncoder2: SDXL's OpenCLIP bigG). */
  components: { unet: boolean; vae: boolean; textEncoder: boolean; textEncoder2: boolean };
  /** From metadata or marker keys only; never guessed from the family. */
  prediction: 'epsilon' | 'v' | 'unknown';
  /** The UNet's input channels (4, or 9 for inpainting); absent without a UNet. */
  unetInChannels?: number;
  /** Width of the text embeddings the UNet attends to (768 SD1.x, 1024 SD2.x, 2048 SDXL); absent without a UNet. */
  contextDim?: number;
  /** The VAE's latent channels (4); absent without a VAE. */
  vaeLatentChannels?: number;
  /** Why: which keys and shapes decided each field. */
  notes: string[];
}

type Family = Exclude<ModelFamily, 'unknown'>;
type Convention = 'ldm' | 'diffusers';
type Prediction = 'epsilon' | 'v';

/** SDXL's size conditioning in its ADM input: original size, crop, target size, 2 × 256 each. */
const SDXL_SIZE_EMBEDDINGS = 6 * 256;
/** The SDXL refiner's: original size, crop (2 × 256 each) and aesthetic score (256). */
const REFINER_SIZE_EMBEDDINGS = 5 * 256;

const ALL: ReadonlySet<Family> = new Set<Family>(['sd1', 'sd2', 'sdxl', 'sdxl-refiner']);
const NONE: ReadonlySet<Family> = new Set<Family>();
const fits = (...f: Family[]): ReadonlySet<Family> => new Set(f);

/** The tensors by name, with the names each rule has accounted for. */
class Index {
  readonly shapes = new Map<string, readonly number[]>();
  readonly claimed = new Set<string>();

  constructor(tensors: ReadonlyArray<{ name: string; shape: number[] }>) {
    for (const t of tensors) this.shapes.set(t.name, Array.isArray(t.shape) ? t.shape : []);
  }
  has(name: string): boolean {
    return this.shapes.has(name);
  }
  /** shape[axis] of `name` when it exists and is a positive integer: shapes are untrusted. */
  dim(name: string, axis: number): number | undefined {
    const v = this.shapes.get(name)?.[axis];
    return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
  }
  rank(name: string): number {
    return this.shapes.get(name)?.length ?? 0;
  }
  names(prefix: string): string[] {
    return [...this.shapes.keys()].filter((n) => n.startsWith(prefix));
  }
  /** Names under `prefix`; with no prefix, the top-level names whose first segment is in `roots`. */
  scope(prefix: string, roots?: ReadonlySet<string>): string[] {
    if (prefix || !roots) return this.names(prefix);
    return [...this.shapes.keys()].filter((n) => roots.has(n.split('.', 1)[0]!));
  }
  claim(names: Iterable<string>): void {
    for (const n of names) this.claimed.add(n);
  }
}

const fmt = (idx: Index, name: string) => `${name} [${(idx.shapes.get(name) ?? []).join(', ')}]`;

/** The first of `candidates` (key, axis) whose dimension is readable. */
function firstDim(idx: Index, prefix: string, candidates: ReadonlyArray<readonly [string, number]>) {
  for (const [key, axis] of candidates) {
    const v = idx.dim(prefix + key, axis);
    if (v !== undefined) return { key: prefix + key, value: v };
  }
  return undefined;
}

interface Found {
  convention: Convention;
  fits: ReadonlySet<Family>;
}

// ---------------------------------------------------------------------------------------------
// UNet

// LDM: `model.diffusion_model.*`, input conv `input_blocks.0.0.weight` [model_channels, in, 3, 3]
// and the ADM/label embedding `label_emb.0.0.weight` [time_embed_dim, adm_in] (ComfyUI
// detect_unet_config reads in_channels = input_blocks.0.0.weight.shape[1] and adm_in_channels =
// label_emb.0.0.weight.shape[1]). Diffusers: `conv_in.weight`, and `add_embedding.linear_1` /
// `class_embedding.linear_1` where LDM has label_emb.0.0 (diffusers DIFFUSERS_TO_LDM_MAPPING).
// UNet-only files come with the prefix or without it (ComfyUI unet_prefix_from_state_dict tries
// "model.diffusion_model." then none), and diffusers folders hold the UNet under `unet/`.
const LDM_UNET = {
  convention: 'ldm',
  roots: new Set(['input_blocks', 'middle_block', 'output_blocks', 'time_embed', 'label_emb', 'out']),
  conv: 'input_blocks.0.0.weight',
  body: 'input_blocks.',
  adm: ['label_emb.0.0.weight'],
} as const;
const DIFFUSERS_UNET = {
  convention: 'diffusers',
  roots: new Set([
    'conv_in', 'time_embedding', 'add_embedding', 'class_embedding', 'down_blocks', 'mid_block', 'up_blocks',
    'conv_norm_out', 'conv_out', 'encoder_hid_proj',
  ]),
  conv: 'conv_in.weight',
  body: 'down_blocks.',
  adm: ['add_embedding.linear_1.weight', 'class_embedding.linear_1.weight'],
} as const;
const UNET_LAYOUTS = [
  { ...LDM_UNET, prefix: 'model.diffusion_model.' },
  { ...DIFFUSERS_UNET, prefix: 'unet.' },
  { ...LDM_UNET, prefix: '' },
  { ...DIFFUSERS_UNET, prefix: '' },
] as const;

interface UnetFound extends Found {
  inChannels?: number;
  contextDim?: number;
  /** It has a label_emb / add_embedding (a vector y beside the context). */
  takesY: boolean;
}

function detectUnet(idx: Index, notes: string[]): UnetFound | undefined {
  for (const l of UNET_LAYOUTS) {
    if (!idx.has(l.prefix + l.conv) || idx.names(l.prefix + l.body).length === 0) continue;
    const names = idx.scope(l.prefix, l.roots);
    idx.claim(names);
    const where = l.prefix ? `${l.prefix}*` : 'unprefixed keys';
    notes.push(`UNet (${l.convention} names, ${where}): ${fmt(idx, l.prefix + l.conv)}`);

    const inChannels = idx.dim(l.prefix + l.conv, 1);
    // Context width: the cross-attention key projection attn2.to_k.weight is a Linear
    // [inner_dim, context_dim] (ComfyUI calculate_transformer_depth: context_dim =
    // attn2.to_k.weight.shape[1]; diffusers single_file_utils checks the same tensor's last
    // dimension == 1024 for SD2). Every cross-attention block of one UNet has the same width.
    const contexts = new Set<number>();
    for (const n of names) {
      if (n.endsWith('.attn2.to_k.weight') && idx.rank(n) === 2) {
        const c = idx.dim(n, 1);
        if (c !== undefined) contexts.add(c);
      }
    }
    const contextDim = contexts.size === 1 ? [...contexts][0] : undefined;
    const admKey = l.adm.map((k) => l.prefix + k).find((k) => idx.has(k));
    const hasAdm = admKey !== undefined || idx.names(l.prefix + 'label_emb.').length > 0;
    const admIn = admKey ? idx.dim(admKey, 1) : undefined;

    let family: ReadonlySet<Family> = NONE;
    let why: string;
    if (inChannels !== 4 && inChannels !== 9) {
      // 4 = text-to-image; 9 = inpainting (diffusers infer_diffusers_model_type: "inpainting"
      // when input_blocks.0.0.weight.shape[1] == 9). stable-diffusion.cpp reads 8 as
      // instruct-pix2pix; the SD x4 upscaler takes 7. Neither is a variant this engine runs.
      const known = inChannels === 8 ? ' (8 is the instruct-pix2pix layout)'
        : inChannels === 7 ? ' (7 is the x4-upscaler layout)' : '';
      why = `${inChannels ?? 'unreadable'} input channels: only 4 (text-to-image) and 9 (inpainting) are supported${known}`;
    } else if (contexts.size === 0) {
      why = 'no cross-attention (attn2.to_k.weight) tensor to read the context width from';
    } else if (contextDim === undefined) {
      why = `cross-attention widths disagree: ${[...contexts].join(', ')}`;
    } else if (contextDim === 768 && !hasAdm) {
      // SD1.x: CLIP ViT-L/14 context, 768 (v1-inference.yaml context_dim: 768).
      family = fits('sd1');
      why = 'cross-attention context width 768 (CLIP ViT-L/14) → SD1.x';
    } else if (contextDim === 1024 && !hasAdm) {
      // SD2.x: OpenCLIP ViT-H/14 context, 1024 (v2-inference*.yaml context_dim: 1024).
      family = fits('sd2');
      why = 'cross-attention context width 1024 (OpenCLIP ViT-H/14) → SD2.x';
    } else if (contextDim === 2048 && admIn === 2816) {
      // SDXL: context 2048 = CLIP-L 768 + OpenCLIP-bigG 1280, and an ADM input of 2816 =
      // pooled bigG 1280 + 6 size/crop embeddings × 256 (sd_xl_base.yaml: context_dim 2048,
      // adm_in_channels 2816; ComfyUI SDXL unet_config the same).
      family = fits('sdxl');
      why = `cross-attention context width 2048 and ADM input ${fmt(idx, admKey!)} → SDXL`;
    } else if (contextDim === 2048) {
      why = hasAdm ? `context width 2048 but ADM input ${admIn ?? 'unreadable'} (SDXL has 2816)`
        : 'context width 2048 but no label_emb/add_embedding (SDXL has one)';
    } else if (contextDim === 1280 && admIn === 1280 + REFINER_SIZE_EMBEDDINGS) {
      // The SDXL refiner: OpenCLIP-bigG only, context 1280, ADM 2560 = pooled 1280 + original
      // size, crop and aesthetic score, 256 each (sd_xl_refiner.yaml adm_in_channels 2560).
      family = fits('sdxl-refiner');
      why = `cross-attention context width 1280 and ADM input ${fmt(idx, admKey!)} → the SDXL refiner`;
    } else if (contextDim === 1280 && hasAdm) {
      why = `context width 1280 but ADM input ${admIn ?? 'unreadable'} (the SDXL refiner has ${1280 + REFINER_SIZE_EMBEDDINGS})`;
    } else if (hasAdm && ![768, 1024].includes(contextDim) && admIn !== undefined && admIn > SDXL_SIZE_EMBEDDINGS && admIn - SDXL_SIZE_EMBEDDINGS < contextDim) {
      // A scaled-down SDXL (the project's generated test models): an ADM input of a pooled
      // width + 6 × 256 size embeddings, that pooled width the second of two encoders whose
      // widths join to the context.
      family = fits('sdxl');
      why = `non-standard context width ${contextDim} with ADM input ${admIn} = ${admIn - SDXL_SIZE_EMBEDDINGS} pooled + 6 × 256 (a scaled-down SDXL?)`;
    } else if (hasAdm && ![768, 1024].includes(contextDim) && admIn === contextDim + REFINER_SIZE_EMBEDDINGS) {
      // A scaled-down refiner: one encoder whose width is the context and whose pooled output
      // (projected to the same width) opens the ADM input, + 5 × 256.
      family = fits('sdxl-refiner');
      why = `non-standard context width ${contextDim} with ADM input ${admIn} = ${contextDim} pooled + 5 × 256 (a scaled-down SDXL refiner?)`;
    } else if (hasAdm) {
      // SD2 unCLIP and the x4 upscaler carry label_emb with an SD1/SD2 context width.
      why = `context width ${contextDim} with a label_emb/add_embedding (an unCLIP- or upscaler-style UNet)`;
    } else {
      // A scaled-down model (the project's generated test models have context 32 or 64):
      // without an ADM input it is an SD1.x/SD2.x-shaped UNet, and the text encoder's key
      // layout decides which.
      family = fits('sd1', 'sd2');
      why = `non-standard context width ${contextDim} (a scaled-down model?): SD1.x or SD2.x by structure`;
    }
    notes.push(`UNet: ${why}`);
    return { convention: l.convention, fits: family, inChannels, contextDim, takesY: hasAdm };
  }

  // `model.diffusion_model.*` without input_blocks is some other diffusion network
  // (stable-diffusion.cpp get_sd_version: joint_blocks → SD3, double_blocks → Flux, …).
  const other = idx.names('model.diffusion_model.');
  if (other.length > 0) {
    idx.claim(other);
    const kind = other.some((n) => n.includes('.joint_blocks.')) ? ' (joint_blocks: an SD3-style MMDiT)'
      : other.some((n) => n.includes('.double_blocks.')) ? ' (double_blocks: a Flux-style DiT)' : '';
    notes.push(`model.diffusion_model.* holds ${other.length} tensors but no input_blocks.0.0.weight: ` +
      `not a Stable Diffusion UNet${kind}`);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// VAE (AutoencoderKL)

// LDM: `first_stage_model.{encoder,decoder}.*` with `down.N.block.M` / `up.N.block.M` / `mid.*`;
// diffusers: `encoder.down_blocks.N.resnets.M` / `decoder.up_blocks` / `mid_block` (diffusers
// renew_vae_resnet_paths / DIFFUSERS_TO_LDM_MAPPING["vae"]). Both share encoder.conv_in,
// decoder.conv_in, quant_conv and post_quant_conv. Standalone VAE files (vae-ft-mse-840000,
// sdxl_vae) hold the LDM names without `first_stage_model.`; diffusers folders have `vae/`.
const VAE_ROOTS = new Set(['encoder', 'decoder', 'quant_conv', 'post_quant_conv']);
const VAE_PREFIXES = ['first_stage_model.', 'vae.', ''] as const;

interface VaeFound {
  convention: Convention;
  latentChannels?: number;
}

function detectVae(idx: Index, notes: string[]): VaeFound | undefined {
  for (const p of VAE_PREFIXES) {
    const hasEnc = idx.has(`${p}encoder.conv_in.weight`);
    const hasDec = idx.has(`${p}decoder.conv_in.weight`);
    if (!hasEnc && !hasDec) continue;
    const names = idx.scope(p, VAE_ROOTS);
    const local = names.map((n) => n.slice(p.length));
    const ldm = local.some((n) => /^(encoder\.(down|mid)|decoder\.(up|mid))\./.test(n));
    const diffusers = local.some((n) => /^(encoder\.(down_blocks|mid_block)|decoder\.(up_blocks|mid_block))\./.test(n));
    let convention: Convention;
    if (ldm !== diffusers) convention = ldm ? 'ldm' : 'diffusers';
    else if (p === 'first_stage_model.') convention = 'ldm';
    else if (p === 'vae.') convention = 'diffusers';
    else {
      notes.push('encoder/decoder conv_in without the LDM or the diffusers block layout: not read as a VAE');
      continue;
    }
    idx.claim(names);
    // Latent channels z: decoder.conv_in.weight [ch, z, 3, 3]; post_quant_conv.weight [z, z, 1, 1];
    // encoder.conv_out.weight [2z, ch, 3, 3] (double_z: mean and log-variance). SD1.x, SD2.x and
    // SDXL all use z_channels: 4 (v1-inference.yaml, v2-inference.yaml, sd_xl_base.yaml ddconfig).
    const z = firstDim(idx, p, [['decoder.conv_in.weight', 1], ['post_quant_conv.weight', 0]]);
    const z2 = z ? undefined : firstDim(idx, p, [['encoder.conv_out.weight', 0], ['quant_conv.weight', 0]]);
    const latentChannels = z?.value ?? (z2 && z2.value % 2 === 0 ? z2.value / 2 : undefined);
    const halves = hasEnc && hasDec ? 'encoder and decoder' : hasEnc ? 'encoder only' : 'decoder only';
    const from = z ? `${latentChannels} latent channels from ${fmt(idx, z.key)}`
      : z2 ? `${latentChannels ?? 'unreadable'} latent channels from ${fmt(idx, z2.key)} / 2`
      : 'latent channels unreadable';
    notes.push(`VAE (${convention} names, ${p ? `${p}*` : 'unprefixed keys'}), ${halves}: ${from}`);
    if (latentChannels !== undefined && latentChannels !== 4)
      notes.push(`VAE: ${latentChannels} latent channels; the SD1.x/SD2.x/SDXL autoencoder has 4`);
    return { convention, latentChannels };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Text encoders

type Slot = 'textEncoder' | 'textEncoder2';

interface EncoderFound extends Found {
  slot: Slot;
}

// Width readers: HF transformers CLIPTextModel names (`text_model.embeddings.token_embedding.weight`
// [vocab, width]) and OpenCLIP names (`token_embedding.weight`, `positional_embedding` [77, width],
// `ln_final.weight` [width]) as diffusers' textenc conversion tables pair them.
const HF_WIDTH = [
  ['text_model.embeddings.token_embedding.weight', 1],
  ['embeddings.token_embedding.weight', 1],
  ['text_model.embeddings.position_embedding.weight', 1],
  ['text_model.final_layer_norm.weight', 0],
] as const;
const OPENCLIP_WIDTH = [
  ['token_embedding.weight', 1],
  ['positional_embedding', 1],
  ['ln_final.weight', 0],
] as const;

// LDM single-file prefixes (diffusers CHECKPOINT_KEY_NAMES / LDM_CLIP_PREFIX_TO_REMOVE,
// ComfyUI supported_models clip prefixes, stable-diffusion.cpp get_sd_version):
//  - SD1.x  `cond_stage_model.transformer.*`   CLIP ViT-L/14 (HF names inside), width 768
//  - SD2.x  `cond_stage_model.model.*`         OpenCLIP ViT-H/14, width 1024
//  - SD2.x in the sgm layout `conditioner.embedders.0.model.*`, width 1024 (ComfyUI SD20 maps
//    it to clip_h); the SDXL refiner has OpenCLIP bigG (1280) at the same place
//  - SDXL   `conditioner.embedders.0.transformer.*` CLIP ViT-L/14 (768) and
//           `conditioner.embedders.1.model.*`        OpenCLIP ViT-bigG/14 (1280)
//  - SDXL as stable-diffusion.cpp names it (its GGUF files, and a loaded model's weights):
//           `cond_stage_model.transformer.*` and `cond_stage_model.1.transformer.*`, HF names
//           inside; the first is SD1.x's place, so the second decides.
/** What else the file (or the load) says, which some places' meaning depends on. */
interface EncoderContext {
  /** A second encoder at cond_stage_model.1.transformer. (stable-diffusion.cpp's SDXL naming). */
  second: boolean;
  /** A loaded model whose first encoder came from OpenCLIP names. */
  openClip: boolean;
  /** The UNet takes a vector y (SDXL, the refiner); false without a UNet. */
  unetTakesY: boolean;
}
interface LdmEncoder {
  prefix: string;
  widths: ReadonlyArray<readonly [string, number]>;
  what: string;
  /** The slot and families a width means here; undefined for a width this place never has. */
  read(width: number, ctx: EncoderContext): { slot: Slot; fits: ReadonlySet<Family>; why?: string } | undefined;
  /**
   * Where the key layout alone names the family, a width no released model has (a scaled-down
   * generated model) still counts, by structure; the note says so. Absent: it does not.
   */
  layout?(ctx: EncoderContext): { slot: Slot; family: Family | readonly Family[] };
}
const SDCPP_SECOND_ENCODER = 'cond_stage_model.1.transformer.';
const LDM_ENCODERS: readonly LdmEncoder[] = [
  {
    prefix: 'cond_stage_model.transformer.', widths: HF_WIDTH, what: 'CLIP ViT-L/14',
    // stable-diffusion.cpp's naming also puts SD2.x's OpenCLIP ViT-H here, with HF names (1024).
    read: (w, ctx) => w === 768 ? { slot: 'textEncoder', fits: fits(ctx.second || ctx.unetTakesY ? 'sdxl' : 'sd1') }
      : w === 1024 ? { slot: 'textEncoder', fits: fits('sd2') }
      : undefined,
    // SD1.x's place; SDXL's first encoder beside a second or a UNet that takes a vector y (an
    // SDXL file without its bigG); SD2.x's when a loaded model's file named it as OpenCLIP (the
    // loaded names no longer say which tower it was).
    layout: (ctx) => ({ slot: 'textEncoder', family: ctx.second || ctx.unetTakesY ? 'sdxl' : ctx.openClip ? 'sd2' : 'sd1' }),
  },
  {
    prefix: SDCPP_SECOND_ENCODER, widths: HF_WIDTH, what: 'OpenCLIP ViT-bigG/14 (SDXL second encoder, or the refiner\'s only one)',
    read: (w) => (w === 1280 ? { slot: 'textEncoder2', fits: fits('sdxl', 'sdxl-refiner') } : undefined),
    layout: () => ({ slot: 'textEncoder2', family: ['sdxl', 'sdxl-refiner'] }),
  },
  {
    prefix: 'cond_stage_model.model.', widths: OPENCLIP_WIDTH, what: 'OpenCLIP ViT-H/14',
    read: (w) => (w === 1024 ? { slot: 'textEncoder', fits: fits('sd2') } : undefined),
    layout: () => ({ slot: 'textEncoder', family: 'sd2' }),
  },
  {
    prefix: 'conditioner.embedders.0.transformer.', widths: HF_WIDTH, what: 'CLIP ViT-L/14 (SDXL first encoder)',
    read: (w) => (w === 768 ? { slot: 'textEncoder', fits: fits('sdxl') } : undefined),
    layout: () => ({ slot: 'textEncoder', family: 'sdxl' }),
  },
  {
    prefix: 'conditioner.embedders.0.model.', widths: OPENCLIP_WIDTH, what: 'OpenCLIP',
    read: (w) => w === 1024 ? { slot: 'textEncoder', fits: fits('sd2') }
      : w === 1280 ? { slot: 'textEncoder2', fits: fits('sdxl-refiner'), why: 'OpenCLIP bigG alone at embedders.0: the SDXL refiner layout' }
      : undefined,
    // SD2.x in the sgm layout, or (beside a UNet that takes a vector y) the refiner's bigG.
    layout: (ctx) => (ctx.unetTakesY ? { slot: 'textEncoder2', family: 'sdxl-refiner' } : { slot: 'textEncoder', family: 'sd2' }),
  },
  {
    prefix: 'conditioner.embedders.1.model.', widths: OPENCLIP_WIDTH, what: 'OpenCLIP ViT-bigG/14 (SDXL second encoder)',
    read: (w) => (w === 1280 ? { slot: 'textEncoder2', fits: fits('sdxl') } : undefined),
    layout: () => ({ slot: 'textEncoder2', family: 'sdxl' }),
  },
];

function scaledDown(e: LdmEncoder, width: number, ctx: EncoderContext): { slot: Slot; fits: ReadonlySet<Family>; why: string } | undefined {
  if (!e.layout || [768, 1024, 1280].includes(width)) return undefined;
  const { slot, family } = e.layout(ctx);
  const families = typeof family === 'string' ? [family] : family;
  return { slot, fits: fits(...families), why: `non-standard width ${width} (a scaled-down model?): ${families.join(' or ')} by key layout` };
}

// Diffusers / transformers CLIPTextModel files: `text_encoder/` (CLIP ViT-L 768 for SD1.x and
// SDXL, OpenCLIP ViT-H 1024 converted to HF names for SD2.x) and SDXL's `text_encoder_2/`
// (CLIPTextModelWithProjection, bigG 1280). A ViT-L file alone fits SD1.x and SDXL alike.
const TEXT_ROOTS = new Set(['text_model', 'text_projection', 'logit_scale']);
const DIFFUSERS_ENCODERS: ReadonlyArray<{ prefix: string; slot?: Slot }> = [
  { prefix: 'text_encoder.' },
  { prefix: 'text_encoder_2.', slot: 'textEncoder2' },
  { prefix: '' },
];
const DIFFUSERS_WIDTHS: ReadonlyMap<number, { what: string; fits: ReadonlySet<Family> }> = new Map([
  [768, { what: "CLIP ViT-L/14 (SD1.x, and SDXL's first encoder)", fits: fits('sd1', 'sdxl') }],
  [1024, { what: 'OpenCLIP ViT-H/14 (SD2.x)', fits: fits('sd2') }],
  [1280, { what: 'OpenCLIP ViT-bigG/14 (SDXL second encoder, or the refiner\'s only one)', fits: fits('sdxl', 'sdxl-refiner') }],
]);
const slotName = (slot: Slot) => (slot === 'textEncoder' ? 'text encoder' : 'second text encoder');

function detectEncoders(idx: Index, notes: string[], openClip: boolean, unetTakesY: boolean): EncoderFound[] {
  const found: EncoderFound[] = [];
  const ctx: EncoderContext = { second: idx.names(SDCPP_SECOND_ENCODER).length > 0, openClip, unetTakesY };
  for (const e of LDM_ENCODERS) {
    const names = idx.names(e.prefix);
    if (names.length === 0) continue;
    idx.claim(names);
    const w = firstDim(idx, e.prefix, e.widths);
    const r = w ? e.read(w.value, ctx) ?? scaledDown(e, w.value, ctx) : undefined;
    if (!w || !r) {
      const why = w ? `width ${w.value} from ${w.key} is not ${e.what}'s` : 'no embedding or final norm to read the width from';
      notes.push(`${e.prefix}* (${names.length} tensors): ${why}; not counted`);
      continue;
    }
    found.push({ convention: 'ldm', slot: r.slot, fits: r.fits });
    notes.push(`${slotName(r.slot)} (ldm names, ${e.prefix}*): ${e.what}, width ${w.value} from ${fmt(idx, w.key)}` +
      (r.why ? ` — ${r.why}` : ''));
  }
  for (const e of DIFFUSERS_ENCODERS) {
    if (idx.names(`${e.prefix}text_model.`).length === 0) continue;
    const names = idx.scope(e.prefix, TEXT_ROOTS);
    idx.claim(names);
    const where = e.prefix ? `${e.prefix}*` : 'unprefixed keys';
    const w = firstDim(idx, e.prefix, HF_WIDTH);
    if (!w) {
      notes.push(`text_model.* (${where}, ${names.length} tensors): no embedding or final norm to read the width from; not counted`);
      continue;
    }
    const slot: Slot = e.slot ?? (w.value === 1280 ? 'textEncoder2' : 'textEncoder');
    const known = DIFFUSERS_WIDTHS.get(w.value);
    found.push({ convention: 'diffusers', slot, fits: known?.fits ?? NONE });
    notes.push(`${slotName(slot)} (diffusers names, ${where}): ${known?.what ?? 'a CLIP text model of no supported width'}, ` +
      `width ${w.value} from ${fmt(idx, w.key)}`);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Prediction type

// Metadata keys:
//  - `modelspec.prediction_type`: Stability's ModelSpec; "epsilon" or "v" (kohya-ss sd-scripts
//    sai_model_spec.py writes PRED_TYPE_EPSILON = "epsilon", PRED_TYPE_V = "v").
//  - `prediction_type`: the diffusers scheduler config field: "epsilon", "v_prediction", "sample".
//  - `ss_v_parameterization`: kohya-ss training metadata, "True" / "False".
// Marker keys (empty tensors some checkpoints carry): `v_pred` → v-prediction (ComfyUI SDXL
// model_type; stable-diffusion.cpp "used to detect SDXL vpred models"), `edm_vpred.sigma_max` →
// v-prediction on an EDM σ schedule (ComfyUI V_PREDICTION_EDM; CosXL), `ztsnr` → zero terminal
// SNR schedule alongside v_pred.
const PREDICTION_KEYS = ['modelspec.prediction_type', 'prediction_type'] as const;
const MARKER_KEYS = new Set(['v_pred', 'ztsnr', 'edm_vpred.sigma_max', 'edm_vpred.sigma_min', 'edm_mean', 'edm_std']);
const V_NAMES = new Set(['v', 'v_prediction', 'v-prediction', 'vpred', 'v_pred']);

function readPrediction(value: string): Prediction | undefined {
  const v = value.trim().toLowerCase();
  if (v === 'epsilon' || v === 'eps') return 'epsilon';
  if (V_NAMES.has(v)) return 'v';
  return undefined;
}

function detectPrediction(
  idx: Index,
  metadata: Record<string, string> | undefined,
  notes: string[],
): Prediction | 'unknown' {
  const votes: Array<{ value: Prediction; why: string }> = [];
  for (const key of PREDICTION_KEYS) {
    const raw = metadata?.[key];
    if (typeof raw !== 'string') continue;
    const p = readPrediction(raw);
    if (p) votes.push({ value: p, why: `metadata ${key} = "${raw}"` });
    else notes.push(`metadata ${key} = "${raw}": not epsilon or v; ignored`);
  }
  const kohya = metadata?.['ss_v_parameterization'];
  if (typeof kohya === 'string') {
    const k = kohya.trim().toLowerCase();
    const why = `metadata ss_v_parameterization = "${kohya}"`;
    if (k === 'true' || k === 'false') votes.push({ value: k === 'true' ? 'v' : 'epsilon', why });
  }
  if (idx.has('v_pred')) votes.push({ value: 'v', why: 'marker tensor v_pred' });
  if (idx.has('edm_vpred.sigma_max')) {
    votes.push({ value: 'v', why: 'marker tensor edm_vpred.sigma_max' });
    notes.push('edm_vpred.sigma_max: v-prediction on an EDM σ schedule whose range is stored in tensor values');
  }
  if (idx.has('ztsnr')) notes.push('marker tensor ztsnr: trained with a zero-terminal-SNR schedule');
  if (idx.has('edm_mean') && idx.has('edm_std'))
    notes.push('edm_mean/edm_std: an EDM-trained model (Playground v2.5 style) that needs its own sampling setup');
  idx.claim([...idx.shapes.keys()].filter((n) => MARKER_KEYS.has(n)));

  if (votes.length === 0) return 'unknown';
  const values = new Set(votes.map((v) => v.value));
  if (values.size > 1) {
    const said = votes.map((v) => `${v.why} → ${v.value}`).join('; ');
    notes.push(`prediction: the file disagrees with itself (${said}); unknown`);
    return 'unknown';
  }
  const value = votes[0]!.value;
  notes.push(`prediction: ${value} from ${votes.map((v) => v.why).join(', ')}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Everything else

// LDM checkpoints also carry the DDPM schedule buffers, EMA copies and training leftovers that
// inference ignores (stable-diffusion.cpp's unused_tensors list).
const LDM_HOUSEKEEPING = new Set([
  'betas', 'alphas_cumprod', 'alphas_cumprod_prev', 'sqrt_alphas_cumprod', 'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod', 'sqrt_recip_alphas_cumprod', 'sqrt_recipm1_alphas_cumprod', 'posterior_variance',
  'posterior_log_variance_clipped', 'posterior_mean_coef1', 'posterior_mean_coef2', 'logvar', 'lvlb_weights',
  'denoiser.sigmas',
]);
const LDM_HOUSEKEEPING_PREFIXES = ['model_ema.', 'embedding_manager.'];

function describeForeign(names: string[], metadata: Record<string, string> | undefined): string {
  const arch = metadata?.['general.architecture'];
  // llama.cpp's GGUF tensor names: token_embd.weight, blk.N.attn_q.weight, output_norm.weight.
  const archNote = arch ? `; general.architecture = "${arch}"` : '';
  if (names.some((n) => /^blk\.\d+\./.test(n) || n === 'token_embd.weight'))
    return `llama.cpp-style tensor names (blk.N.*, token_embd.weight)${archNote}: a language model, not Stable Diffusion`;
  // Tiny autoencoders: madebyollin's TAESD .pth files are an nn.Sequential (0.weight,
  // 1.conv.0.weight, …); diffusers AutoencoderTiny nests the same under encoder.layers.
  if (names.every((n) => /^\d+\./.test(n)))
    return 'names are bare layer indices (0.weight, 1.conv.0.weight, …): an nn.Sequential checkpoint such as ' +
      'a tiny autoencoder (TAESD), not a Stable Diffusion component';
  if (names.some((n) => /^(encoder|decoder)\.layers\.\d+\./.test(n)))
    return 'encoder.layers.* / decoder.layers.*: a tiny autoencoder (diffusers AutoencoderTiny), not the KL VAE';
  return `no Stable Diffusion component keys (first names: ${names.slice(0, 3).join(', ')})${archNote}`;
}

/**
 * What a model file holds, from its tensor index and metadata only. Shapes are PyTorch order
 * (outermost first), as `inspectModel` reports them for every format.
 */
export function detectModel(
  tensors: ReadonlyArray<{ name: string; shape: number[] }>,
  metadata?: Record<string, string>,
  /** A loaded model: its first text encoder came from OpenCLIP names (the load's source conventions). */
  loaded?: { openClipTextEncoder: boolean },
): ModelDetection {
  const notes: string[] = [];
  const idx = new Index(tensors);
  if (idx.shapes.size === 0) {
    return {
      family: 'unknown', inpaint: false, convention: 'unknown', prediction: 'unknown',
      components: { unet: false, vae: false, textEncoder: false, textEncoder2: false },
      notes: ['no tensors'],
    };
  }

  const unet = detectUnet(idx, notes);
  const vae = detectVae(idx, notes);
  const encoders = detectEncoders(idx, notes, loaded?.openClipTextEncoder ?? false, unet?.takesY ?? false);
  const components = {
    unet: unet !== undefined,
    vae: vae !== undefined,
    textEncoder: encoders.some((e) => e.slot === 'textEncoder'),
    textEncoder2: encoders.some((e) => e.slot === 'textEncoder2'),
  };

  // Family: every component that constrains it must agree. The VAE does not: SD1.x, SD2.x and
  // SDXL autoencoders have the same names and shapes (only their weights and scale differ).
  const evidence: Array<ReadonlySet<Family>> = [];
  if (unet) evidence.push(unet.fits);
  for (const e of encoders) evidence.push(e.fits);
  let family: ModelFamily = 'unknown';
  if (evidence.length > 0) {
    const common = [...ALL].filter((f) => evidence.every((s) => s.has(f)));
    if (common.length === 1) family = common[0]!;
    else if (common.length > 1)
      notes.push(`family: the components fit ${common.join(' or ')}; nothing here tells them apart`);
    else if (evidence.every((s) => s.size > 0)) notes.push('family: the components belong to different families');
    else notes.push('family: a component matches no supported family');
  } else if (vae) {
    notes.push('family: a VAE alone does not tell it; SD1.x, SD2.x and SDXL VAEs have the same shapes');
  }
  if (family !== 'unknown') notes.push(`family: ${family}`);

  const conventions = new Set<Convention>([
    ...(unet ? [unet.convention] : []),
    ...(vae ? [vae.convention] : []),
    ...encoders.map((e) => e.convention),
  ]);
  if (conventions.size > 1) notes.push(`key naming is mixed: ${[...conventions].join(' and ')}`);
  const convention = conventions.size === 1 ? [...conventions][0]! : 'unknown';

  const any = components.unet || components.vae || components.textEncoder || components.textEncoder2;
  const prediction = detectPrediction(idx, metadata, notes);
  if (prediction === 'unknown' && any) {
    notes.push('prediction: unknown (no prediction_type metadata and no v_pred marker tensor)');
    // v2-1_768 (v-prediction) and v2-1_512 (epsilon) share every name and shape; ComfyUI
    // resorts to the spread of one bias's values (output_blocks.11.1.transformer_blocks.0.
    // norm1.bias std > 0.09), which needs tensor data, not the index.
    if (family === 'sd2')
      notes.push('SD2.x 768-v (v-prediction) and 512-base (epsilon) checkpoints cannot be told apart from names ' +
        'and shapes; only metadata or the user can say which');
  }

  const isHouseKeeping = (n: string) =>
    LDM_HOUSEKEEPING.has(n) || LDM_HOUSEKEEPING_PREFIXES.some((p) => n.startsWith(p)) ||
    n.endsWith('.position_ids') || n.endsWith('.logit_scale');
  const houseKeeping = [...idx.shapes.keys()].filter((n) => !idx.claimed.has(n) && isHouseKeeping(n));
  idx.claim(houseKeeping);
  if (houseKeeping.some((n) => n.startsWith('model_ema.'))) notes.push('model_ema.*: EMA weights or counters, ignored');
  const rest = [...idx.shapes.keys()].filter((n) => !idx.claimed.has(n));
  if (!any) notes.push(rest.length > 0 ? describeForeign(rest, metadata) : 'no Stable Diffusion component found');
  else if (rest.length > 0)
    notes.push(`${rest.length} tensor(s) outside the recognised components, e.g. ${rest.slice(0, 3).join(', ')}`);

  const out: ModelDetection = {
    family,
    inpaint: unet?.inChannels === 9,
    convention,
    components,
    prediction,
    notes,
  };
  if (unet?.inChannels !== undefined) out.unetInChannels = unet.inChannels;
  if (unet?.contextDim !== undefined) out.contextDim = unet.contextDim;
  if (vae?.latentChannels !== undefined) out.vaeLatentChannels = vae.latentChannels;
  return out;
}
