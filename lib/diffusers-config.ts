/**
 * What a diffusers folder's config.json files say that tensor shapes cannot: the attention
 * heads of the UNet and the text encoder. Read off the JS thread (fs/promises), small files
 * only, and every value checked: a hostile config is ignored where it is not needed and an
 * error with a code where it is.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { ModelFormatError } from './errors.js';

/** Attention heads as the engine takes them (the `sdnode.attention_heads` metadata's shape). */
export interface AttentionHeads {
  unet?: { numHeads?: number; headDim?: number };
  clip?: { numHeads?: number };
  /** SDXL's second text encoder (OpenCLIP bigG). */
  clip2?: { numHeads?: number };
}

/** A config.json is a few KB; anything far larger is not one. */
const MAX_CONFIG_BYTES = 1 << 20;

async function readConfig(path: string): Promise<Record<string, unknown> | undefined> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return undefined; // no config: the family defaults apply
  }
  if (size > MAX_CONFIG_BYTES) throw new ModelFormatError(`${path}: ${size} bytes is too large for a config.json`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ModelFormatError(`${path}: not JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ModelFormatError(`${path}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** A head count or width: an integer 1 … 4096. */
export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 4096;

/**
 * UNet2DConditionModel: `num_attention_heads` when set, else `attention_head_dim`, which for
 * SD1.x/SD2.x configs is the head count (an int, or one per level: SD2.x's [5, 10, 20, 20] are
 * heads of 64 channels over `block_out_channels`).
 */
function unetHeads(path: string, c: Record<string, unknown>): AttentionHeads['unet'] {
  const bad = (why: string) => new ModelFormatError(`${path}: ${why}`);
  const heads = c.num_attention_heads ?? c.attention_head_dim;
  if (heads === undefined || heads === null) return undefined;
  if (isCount(heads)) return { numHeads: heads };
  const channels = c.block_out_channels;
  if (!Array.isArray(heads) || !heads.every(isCount)) throw bad(`attention_head_dim ${JSON.stringify(heads).slice(0, 80)} is not a head count or a list of them`);
  if (heads.every((h) => h === heads[0])) return { numHeads: heads[0] as number };
  if (!Array.isArray(channels) || channels.length !== heads.length || !channels.every(isCount))
    throw bad('a list of head counts needs block_out_channels of the same length');
  const dims = channels.map((ch, i) => (ch as number) / (heads[i] as number));
  if (!dims.every((d) => Number.isInteger(d) && d === dims[0])) throw bad(`heads ${JSON.stringify(heads)} over channels ${JSON.stringify(channels)} are not of one width`);
  return { headDim: dims[0]! };
}

/**
 * The heads the config.json files beside a diffusers folder's UNet and text encoder give (each
 * `path` a component file such as unet/diffusion_pytorch_model.safetensors); undefined where
 * there is none.
 */
export async function diffusersAttentionHeads(sources: ReadonlyArray<{ path: string; convention: string }>): Promise<AttentionHeads | undefined> {
  const out: AttentionHeads = {};
  for (const s of sources) {
    if (s.convention !== 'diffusers') continue;
    const folder = dirname(s.path);
    const configPath = join(folder, 'config.json');
    if (basename(folder) === 'unet') {
      const c = await readConfig(configPath);
      const unet = c && unetHeads(configPath, c);
      if (unet) out.unet = unet;
    } else if (basename(folder) === 'text_encoder' || basename(folder) === 'text_encoder_2') {
      const c = await readConfig(configPath);
      if (c && c.num_attention_heads !== undefined) {
        if (!isCount(c.num_attention_heads)) throw new ModelFormatError(`${configPath}: num_attention_heads is not a head count`);
        out[basename(folder) === 'text_encoder' ? 'clip' : 'clip2'] = { numHeads: c.num_attention_heads };
      }
    }
  }
  return out.unet || out.clip || out.clip2 ? out : undefined;
}
