/** Weight types a model can be loaded in or converted to (the ones ggml quantizes without an importance matrix). */
export const WEIGHT_TYPES = [
  'f32',
  'f16',
  'q8_0',
  'q5_0',
  'q5_1',
  'q4_0',
  'q4_1',
  'q2_k',
  'q3_k',
  'q4_k',
  'q5_k',
  'q6_k',
] as const;
/** One of WEIGHT_TYPES: 'f32', 'f16', 'q8_0', … 'q6_k'. */
export type WeightType = (typeof WEIGHT_TYPES)[number];
