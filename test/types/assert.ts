// Compile-time assertions for the type tests: `check<Equal<A, B>>(true)` compiles only when A
// and B are the same type (not merely assignable either way).
export type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

export function check<T extends true>(value: T): T {
  return value;
}
