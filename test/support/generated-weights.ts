/** A generated model's weights as the engine sees them, decoded to float64 for the JS references. */
// @ts-expect-error: plain JavaScript module with JSDoc types
import { halfToNumber, tensorBytes } from '../../scripts/generate-model.mjs';

/** IEEE half bits → number (the generator's own decoder). */
export const halfToFloat: (h: number) => number = halfToNumber;

export interface GeneratedWeights {
  /** The tensor `prefix + name`, decoded (cached). */
  get(name: string): Float64Array;
  shape(name: string): number[];
}

/** The tensors under `prefix` of a model the generator writes with `seed` and `dtype`. */
export function generatedWeights(
  specs: ReadonlyArray<{ name: string; shape: number[] }>,
  seed: number,
  dtype: 'f32' | 'f16',
  prefix: string,
): GeneratedWeights {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const cache = new Map<string, Float64Array>();
  const spec = (name: string) => {
    const s = byName.get(prefix + name);
    if (!s) throw new Error(`no tensor ${prefix + name}`);
    return s;
  };
  return {
    get(name) {
      let w = cache.get(name);
      if (!w) {
        const copy = (tensorBytes(spec(name), seed, dtype) as Uint8Array).slice().buffer;
        w = dtype === 'f32' ? Float64Array.from(new Float32Array(copy)) : Float64Array.from(new Uint16Array(copy), halfToFloat);
        cache.set(name, w);
      }
      return w;
    },
    shape: (name) => spec(name).shape,
  };
}
