/** How long work holds the JS thread, seen from the event loop (scripts/event-loop-hold.mjs, shared with the bench). */
// @ts-expect-error: plain JavaScript module with JSDoc types
import { longestHold as hold } from '../../scripts/event-loop-hold.mjs';

/** The longest gap between event-loop turns while `work` runs, and its result. */
export const longestHold: <T>(work: () => Promise<T>) => Promise<{ ms: number; result: T }> = hold;
