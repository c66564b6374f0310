// transformers' CLIPTextModel (and OpenCLIP's text tower, read by its own names) in float64: the
// reference the engine's text encoder is measured against (test/clip-text.test.ts,
// test/embeddings.test.ts).
import { add, attention, gelu, layerNorm, linear, map, quickGelu, type Vec } from './reference-nn.js';

export const EPS = 1e-5;

export interface ClipConfig {
  width: number;
  layers: number;
  heads: number;
  vocab: number;
  positions: number;
  intermediate: number;
  projectionDim?: number;
}

// ---------------------------------------------------------------------------------------------
// Weights as the engine sees them, by the names of the file (transformers' CLIPTextModel or
// OpenCLIP's text tower)

export type Weights = (name: string) => Vec;
export type Affine = { w: Vec; b: Vec };

export interface LayerWeights {
  norm1: Affine;
  q: Affine;
  k: Affine;
  v: Affine;
  out: Affine;
  norm2: Affine;
  fc1: Affine;
  fc2: Affine;
}

export interface TextWeights {
  config: ClipConfig;
  token: Vec; // [vocab][width]
  position: Vec; // [positions][width]
  layer(l: number): LayerWeights;
  finalNorm: Affine;
  /** OpenCLIP's [width][proj], applied as x @ P. */
  projection?: Vec;
}

export function hfTextWeights(w: Weights, config: ClipConfig): TextWeights {
  const affine = (name: string): Affine => ({ w: w(`${name}.weight`), b: w(`${name}.bias`) });
  return {
    config,
    token: w('embeddings.token_embedding.weight'),
    position: w('embeddings.position_embedding.weight'),
    layer: (l) => {
      const b = `encoder.layers.${l}.`;
      return {
        norm1: affine(`${b}layer_norm1`), q: affine(`${b}self_attn.q_proj`), k: affine(`${b}self_attn.k_proj`),
        v: affine(`${b}self_attn.v_proj`), out: affine(`${b}self_attn.out_proj`), norm2: affine(`${b}layer_norm2`),
        fc1: affine(`${b}mlp.fc1`), fc2: affine(`${b}mlp.fc2`),
      };
    },
    finalNorm: affine('final_layer_norm'),
  };
}

/** OpenCLIP: nn.MultiheadAttention's in_proj packs q; k; v as row blocks of [3·width][width]. */
export function openClipTextWeights(w: Weights, config: ClipConfig): TextWeights {
  const affine = (name: string): Affine => ({ w: w(`${name}.weight`), b: w(`${name}.bias`) });
  const d = config.width;
  return {
    config,
    token: w('token_embedding.weight'),
    position: w('positional_embedding'),
    layer: (l) => {
      const b = `transformer.resblocks.${l}.`;
      const inW = w(`${b}attn.in_proj_weight`), inB = w(`${b}attn.in_proj_bias`);
      const part = (i: number): Affine => ({ w: inW.subarray(i * d * d, (i + 1) * d * d), b: inB.subarray(i * d, (i + 1) * d) });
      return {
        norm1: affine(`${b}ln_1`), q: part(0), k: part(1), v: part(2), out: affine(`${b}attn.out_proj`),
        norm2: affine(`${b}ln_2`), fc1: affine(`${b}mlp.c_fc`), fc2: affine(`${b}mlp.c_proj`),
      };
    },
    finalNorm: affine('ln_final'),
    projection: w('text_projection'),
  };
}

// ---------------------------------------------------------------------------------------------
// The text transformer in float64: embeddings, pre-LN layers with causal attention, final layer norm.

export interface RefOptions {
  heads: number;
  quickGelu: boolean;
  clipSkip: number;
  /** false: the clip-skip layer's output without the final layer norm (SDXL). Default true. */
  finalNorm?: boolean;
}

/** One window of `positions` ids → every layer's output, each [positions][width]. */
export function layerOutputs(t: TextWeights, ids: ArrayLike<number>, heads: number, useQuickGelu: boolean): Vec[] {
  const { width: d, positions: n, intermediate: inter, layers } = t.config;
  const dh = d / heads;
  let x: Vec = new Float64Array(n * d);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < d; c++) x[p * d + c] = t.token[ids[p]! * d + c]! + t.position[p * d + c]!;
  }
  const outs: Vec[] = [];
  for (let l = 0; l < layers; l++) {
    const lw = t.layer(l);
    const lin = (input: ArrayLike<number>, a: Affine, inF: number, outF: number) => linear(input, n, a.w, a.b, inF, outF);

    let h = layerNorm(x, n, d, lw.norm1.w, lw.norm1.b, EPS);
    const q = lin(h, lw.q, d, d);
    const k = lin(h, lw.k, d, d);
    const v = lin(h, lw.v, d, d);
    const merged = new Float64Array(n * d);
    for (let head = 0; head < heads; head++) {
      const slice = (m: Vec) => {
        const s = new Float64Array(n * dh);
        for (let p = 0; p < n; p++) s.set(m.subarray(p * d + head * dh, p * d + (head + 1) * dh), p * dh);
        return s;
      };
      const a = attention(slice(q), slice(k), slice(v), n, n, dh, true);
      for (let p = 0; p < n; p++) merged.set(a.subarray(p * dh, (p + 1) * dh), p * d + head * dh);
    }
    x = add(x, lin(merged, lw.out, d, d));

    h = layerNorm(x, n, d, lw.norm2.w, lw.norm2.b, EPS);
    h = map(lin(h, lw.fc1, d, inter), useQuickGelu ? quickGelu : gelu);
    x = add(x, lin(h, lw.fc2, inter, d));
    outs.push(x);
  }
  return outs;
}

/** One window → [positions][width]: last_hidden_state, or the webui clip-skip output (optionally without the final norm). */
export function referenceWindow(t: TextWeights, ids: ArrayLike<number>, o: RefOptions): Vec {
  const { width: d, positions: n, layers } = t.config;
  const x = layerOutputs(t, ids, o.heads, o.quickGelu)[layers - o.clipSkip]!;
  return o.finalNorm === false ? x : layerNorm(x, n, d, t.finalNorm.w, t.finalNorm.b, EPS);
}

export function reference(t: TextWeights, ids: ArrayLike<number>, windows: number, o: RefOptions): Float64Array {
  const { positions, width } = t.config;
  const per = positions * width;
  const out = new Float64Array(windows * per);
  for (let i = 0; i < windows; i++) {
    out.set(referenceWindow(t, Array.from(ids).slice(i * positions, (i + 1) * positions), o), i * per);
  }
  return out;
}

/**
 * OpenCLIP's pooled output per window → [windows][proj]: ln_final of the last layer's output at
 * the window's first EOS, times text_projection (x @ P, P [width][proj] as stored).
 */
export function referencePooled(t: TextWeights, ids: ArrayLike<number>, windows: number, heads: number, eos: number): Float64Array {
  const { positions: n, width: d, layers } = t.config;
  const P = t.projection!;
  const proj = P.length / d;
  const out = new Float64Array(windows * proj);
  for (let i = 0; i < windows; i++) {
    const window = Array.from(ids).slice(i * n, (i + 1) * n);
    const at = window.indexOf(eos);
    if (at < 0) throw new RangeError(`window ${i} has no EOS`);
    const last = layerOutputs(t, window, heads, false)[layers - 1]!;
    const row = layerNorm(last.subarray(at * d, (at + 1) * d), 1, d, t.finalNorm.w, t.finalNorm.b, EPS);
    for (let j = 0; j < proj; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += row[c]! * P[c * proj + j]!;
      out[i * proj + j] = s;
    }
  }
  return out;
}
