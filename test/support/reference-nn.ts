// Plain-JS reference implementations of the layers the networks use, written from the papers'
// and PyTorch's definitions, in float64, for checking the engine's graphs on tiny models.
// Tensors are planar Float32Array/Float64Array with explicit shapes, outermost first, as PyTorch's.

export type Vec = Float64Array;

/** LDM's timestep_embedding of one number t: [cos(t·f_j) | sin(t·f_j)], f_j = 10000^(−j/half), half = width / 2. */
export function timestepEmbedding(t: number, width: number): Vec {
  const half = width / 2;
  const out = new Float64Array(width);
  for (let j = 0; j < half; j++) {
    const f = Math.exp((-Math.log(10000) * j) / half);
    out[j] = Math.cos(t * f);
    out[j + half] = Math.sin(t * f);
  }
  return out;
}

/** y[o] = b[o] + Σ_i W[o][i] x[i] for each row of x [rows][in]; W is [out][in] (nn.Linear). */
export function linear(x: ArrayLike<number>, rows: number, w: ArrayLike<number>, b: ArrayLike<number> | undefined, inF: number, outF: number): Vec {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      const wo = o * inF, xr = r * inF;
      for (let i = 0; i < inF; i++) s += w[wo + i]! * x[xr + i]!;
      y[r * outF + o] = s;
    }
  }
  return y;
}

/** nn.Conv2d on x [C][H][W] with W [OC][C][K][K], padding `pad`, stride `stride`. */
export function conv2d(
  x: ArrayLike<number>, c: number, h: number, wd: number,
  w: ArrayLike<number>, b: ArrayLike<number> | undefined, oc: number, k: number, stride = 1, pad = Math.floor(k / 2),
): { data: Vec; h: number; w: number } {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1, ow = Math.floor((wd + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(oc * oh * ow);
  for (let o = 0; o < oc; o++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let s = b ? b[o]! : 0;
        for (let i = 0; i < c; i++) {
          for (let ky = 0; ky < k; ky++) {
            const iy = oy * stride + ky - pad;
            if (iy < 0 || iy >= h) continue;
            for (let kx = 0; kx < k; kx++) {
              const ix = ox * stride + kx - pad;
              if (ix < 0 || ix >= wd) continue;
              s += w[((o * c + i) * k + ky) * k + kx]! * x[(i * h + iy) * wd + ix]!;
            }
          }
        }
        y[(o * oh + oy) * ow + ox] = s;
      }
    }
  }
  return { data: y, h: oh, w: ow };
}

/** nn.GroupNorm over x [C][N] (N = H·W): per group of C/groups channels, biased variance. */
export function groupNorm(x: ArrayLike<number>, c: number, n: number, groups: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Vec {
  const y = new Float64Array(c * n);
  const per = c / groups;
  for (let g = 0; g < groups; g++) {
    let mean = 0, sq = 0;
    const count = per * n;
    for (let i = g * per * n; i < (g + 1) * per * n; i++) mean += x[i]!;
    mean /= count;
    for (let i = g * per * n; i < (g + 1) * per * n; i++) sq += (x[i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(sq / count + eps);
    for (let ch = g * per; ch < (g + 1) * per; ch++) {
      for (let j = 0; j < n; j++) y[ch * n + j] = (x[ch * n + j]! - mean) * inv * gamma[ch]! + beta[ch]!;
    }
  }
  return y;
}

/** nn.LayerNorm over the last dimension of x [rows][d]. */
export function layerNorm(x: ArrayLike<number>, rows: number, d: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Vec {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let mean = 0, sq = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]!;
    mean /= d;
    for (let i = 0; i < d; i++) sq += (x[r * d + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(sq / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - mean) * inv * gamma[i]! + beta[i]!;
  }
  return y;
}

export const silu = (v: number) => v / (1 + Math.exp(-v));
export const quickGelu = (v: number) => v / (1 + Math.exp(-1.702 * v));
/** GELU with erf, as torch's default (approximate='none'). */
export const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));

/** erf to ~1e-13 (series near 0, continued fraction beyond), enough for float comparisons. */
export function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  if (a < 3) {
    let sum = a, term = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return sign * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz), for |x| ≥ 3.
  let f = a, c = a, d = 0;
  for (let n = 1; n < 100; n++) {
    const an = n / 2;
    d = a + an * d; d = 1 / d;
    c = a + an / c;
    f *= c * d;
  }
  return sign * (1 - Math.exp(-a * a) / (f * Math.sqrt(Math.PI)));
}

export function map(x: ArrayLike<number>, fn: (v: number) => number): Vec {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = fn(x[i]!);
  return y;
}

export function add(a: ArrayLike<number>, b: ArrayLike<number>): Vec {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!;
  return y;
}

/**
 * Scaled dot-product attention for one head: q [n][d], k [m][d], v [m][d] → [n][d], with an
 * optional causal mask (query i sees keys ≤ i).
 */
export function attention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, n: number, m: number, d: number, causal = false): Vec {
  const y = new Float64Array(n * d);
  const scale = 1 / Math.sqrt(d);
  const s = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    const last = causal ? Math.min(i, m - 1) : m - 1;
    for (let j = 0; j <= last; j++) {
      let dot = 0;
      for (let t = 0; t < d; t++) dot += q[i * d + t]! * k[j * d + t]!;
      s[j] = dot * scale;
      max = Math.max(max, s[j]!);
    }
    let sum = 0;
    for (let j = 0; j <= last; j++) sum += (s[j] = Math.exp(s[j]! - max));
    for (let j = 0; j <= last; j++) {
      const p = s[j]! / sum;
      for (let t = 0; t < d; t++) y[i * d + t] = y[i * d + t]! + p * v[j * d + t]!;
    }
  }
  return y;
}

/** Max |a−b| / (max |b| + tiny): one number to compare an engine output with its reference. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / (scale + 1e-30);
}
