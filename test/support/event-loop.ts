/** How long work holds the JS thread, seen from the event loop. */

/** The longest gap between event-loop turns while `work` runs, and its result. */
export async function longestHold<T>(work: () => Promise<T>): Promise<{ ms: number; result: T }> {
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
