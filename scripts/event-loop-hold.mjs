// How long work holds the JS thread, seen from the event loop: shared by the tests
// (test/support/event-loop.ts) and bench/event-loop.mjs.

/**
 * The longest gap between event-loop turns while `work` runs, and its result.
 * @template T
 * @param {() => Promise<T>} work
 * @returns {Promise<{ ms: number, result: T }>}
 */
export async function longestHold(work) {
  let last = performance.now();
  let worst = 0;
  let ticking = true;
  const tick = () => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    const result = await work();
    return { ms: Math.max(worst, performance.now() - last), result };
  } finally {
    ticking = false;
  }
}
