/**
 * Byte-pair merging in O(n log n) of a word's length: symbols as ids in a linked list, candidate
 * pairs in a min-heap keyed by (merge rank, position). CLIP's reference loop rescans the whole
 * word after every merge, which held the JS thread for seconds on one long word.
 */

/** Symbol ids are below this, so a pair packs into 32 bits. CLIP's vocabularies have 49,408. */
export const MAX_SYMBOLS = 65536;

/**
 * Merge rank of each pair of symbol ids, and the id each merge gives: an open-addressing hash
 * table in one typed array. The merge loop looks up a pair for every symbol it touches, at
 * random over the table, so its size in cache is what the loop waits for: 8 bytes a slot.
 */
export class MergeTable {
  /** Slot k at 2k: `left * MAX_SYMBOLS + right`, rank + 1 (0 = empty slot). */
  readonly #slots: Uint32Array;
  readonly #bits: number;
  /** By rank: the pair it merges (left -1 = no merge of this rank) and the symbol it gives. */
  readonly #lefts: Int32Array;
  readonly #rights: Int32Array;
  readonly #merged: Int32Array;

  /** For merges of ranks 0 … rankCount − 1. */
  constructor(rankCount: number) {
    let bits = 4;
    while (1 << bits < rankCount * 2) bits++;
    this.#bits = bits;
    this.#slots = new Uint32Array(2 << bits);
    this.#lefts = new Int32Array(rankCount).fill(-1);
    this.#rights = new Int32Array(rankCount);
    this.#merged = new Int32Array(rankCount);
  }

  #find(key: number): number {
    const slots = this.#slots;
    const mask = (1 << this.#bits) - 1;
    // Multiplicative hashing: the product's high bits depend on all of the key's bits.
    let k = Math.imul(key, 0x9e3779b1) >>> (32 - this.#bits);
    while (slots[2 * k + 1] !== 0 && slots[2 * k] !== key) k = (k + 1) & mask;
    return 2 * k;
  }

  /** A repeated pair keeps the last rank it is given, as CLIP's `dict(zip(merges, ranks))` does. */
  add(left: number, right: number, merged: number, rank: number): void {
    for (const id of [left, right, merged]) {
      if (!Number.isInteger(id) || id < 0 || id >= MAX_SYMBOLS) throw new RangeError(`symbol id ${id} is not below ${MAX_SYMBOLS}`);
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.#merged.length) throw new RangeError(`merge rank ${rank} is out of range`);
    const at = this.#find(left * MAX_SYMBOLS + right);
    if (this.#slots[at + 1] !== 0) this.#lefts[this.#slots[at + 1]! - 1] = -1;
    this.#slots[at] = left * MAX_SYMBOLS + right;
    this.#slots[at + 1] = rank + 1;
    this.#lefts[rank] = left;
    this.#rights[rank] = right;
    this.#merged[rank] = merged;
  }

  /** The pair's rank, or -1 when the pair is never merged. */
  rank(left: number, right: number): number {
    return this.#slots[this.#find(left * MAX_SYMBOLS + right) + 1]! - 1;
  }

  /** Whether `rank` merges exactly this pair (cheaper than rank(): no hashing). */
  merges(rank: number, left: number, right: number): boolean {
    return this.#lefts[rank] === left && this.#rights[rank] === right;
  }

  get rankCount(): number {
    return this.#merged.length;
  }

  /** The symbol a merge of `rank` gives. */
  merged(rank: number): number {
    return this.#merged[rank]!;
  }
}

/**
 * Pairs waiting to merge, handed out one rank at a time: `nextRound` moves every queued
 * position of the lowest rank into `out`, ascending, and returns that rank (-1 when empty).
 */
interface PairQueue {
  push(rank: number, position: number): void;
  nextRound(out: Int32Array): { rank: number; count: number };
}

/** A binary min-heap of `rank * n + position`: cheap for the short words of ordinary text. */
class HeapQueue implements PairQueue {
  #items = new Float64Array(16);
  #size = 0;
  readonly #n: number;

  constructor(n: number) {
    this.#n = n;
  }

  push(rank: number, position: number): void {
    if (this.#size === this.#items.length) {
      const grown = new Float64Array(this.#items.length * 2);
      grown.set(this.#items);
      this.#items = grown;
    }
    const items = this.#items;
    const value = rank * this.#n + position;
    let i = this.#size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  nextRound(out: Int32Array): { rank: number; count: number } {
    if (this.#size === 0) return { rank: -1, count: 0 };
    const n = this.#n;
    const rank = Math.floor(this.#items[0]! / n);
    let count = 0;
    while (this.#size > 0 && this.#items[0]! < (rank + 1) * n) out[count++] = this.#pop() - rank * n;
    return { rank, count };
  }

  #pop(): number {
    const items = this.#items;
    const top = items[0]!;
    const last = items[--this.#size]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.#size) break;
      if (child + 1 < this.#size && items[child + 1]! < items[child]!) child++;
      if (items[child]! >= last) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

/**
 * One bucket per rank, linked lists in typed arrays: O(1) a push, one sweep over the ranks per
 * word. For long words, where a heap's log n per pair is what the JS thread waits for.
 */
class BucketQueue implements PairQueue {
  readonly #head: Int32Array;
  readonly #position: Int32Array;
  readonly #link: Int32Array;
  #used = 0;
  /** No bucket below this one holds anything. */
  #lowest: number;

  /** `head` holds -1 for every rank; it is left so. `position` and `link` hold every push (3n). */
  constructor(head: Int32Array, position: Int32Array, link: Int32Array) {
    this.#head = head;
    this.#position = position;
    this.#link = link;
    this.#lowest = head.length;
  }

  push(rank: number, position: number): void {
    const e = this.#used++;
    this.#position[e] = position;
    this.#link[e] = this.#head[rank]!;
    this.#head[rank] = e;
    if (rank < this.#lowest) this.#lowest = rank;
  }

  nextRound(out: Int32Array): { rank: number; count: number } {
    const head = this.#head;
    let rank = this.#lowest;
    while (rank < head.length && head[rank] === -1) rank++;
    if (rank === head.length) {
      this.#lowest = rank;
      return { rank: -1, count: 0 };
    }
    let count = 0;
    for (let e = head[rank]!; e !== -1; e = this.#link[e]!) out[count++] = this.#position[e]!;
    head[rank] = -1;
    this.#lowest = rank + 1;
    out.subarray(0, count).sort();
    return { rank, count };
  }
}

/** Words from this many symbols on go through the bucket queue. */
const BUCKET_WORD = 1024;

/**
 * The word's symbols after merging, as CLIP's `bpe()` merges them: the lowest-ranked adjacent
 * pair, every occurrence left to right (not overlapping), until no pair has a rank.
 *
 * Symbols are a linked list; a node keeps its first symbol's position. Each round takes every
 * queued pair of the lowest rank, left to right, skipping those a merge has since changed; the
 * pairs a merge forms go to the queue for later rounds (a merge never forms another pair of its
 * own rank: the new symbol is longer than either half), so a round sees exactly the occurrences
 * CLIP's rescan of the word would.
 */
export function mergeWord(symbols: ArrayLike<number>, table: MergeTable): number[] {
  const n = symbols.length;
  if (n < 2) return Array.from(symbols);
  const { symbol, next, prev, round, head, position, link } = scratch.reserve(n, table.rankCount);
  for (let i = 0; i < n; i++) {
    symbol[i] = symbols[i]!;
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const queue: PairQueue = n >= BUCKET_WORD ? new BucketQueue(head, position, link) : new HeapQueue(n);
  const offer = (left: number) => {
    if (left < 0) return;
    const right = next[left]!;
    if (right < 0) return;
    const rank = table.rank(symbol[left]!, symbol[right]!);
    if (rank >= 0) queue.push(rank, left);
  };
  for (let i = 0; i + 1 < n; i++) offer(i);

  for (;;) {
    const { rank, count } = queue.nextRound(round);
    if (rank < 0) break;
    const merged = table.merged(rank);
    for (let k = 0; k < count; k++) {
      const left = round[k]!;
      const right = next[left]!;
      // Stale: the node was merged into its left neighbour, or its pair has changed since.
      if (right < 0 || !table.merges(rank, symbol[left]!, symbol[right]!)) continue;
      symbol[left] = merged;
      symbol[right] = -1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      offer(prev[left]!);
      offer(left);
    }
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(symbol[i]!);
  return out;
}

/**
 * mergeWord's arrays, kept from call to call: a long word's are megabytes, and allocating them
 * each time costs the JS thread garbage collections. (mergeWord never re-enters itself.)
 */
const scratch = {
  symbol: new Int32Array(0),
  next: new Int32Array(0),
  prev: new Int32Array(0),
  round: new Int32Array(0),
  /** The bucket queue's: one list head per rank (all -1 between calls), 3 entries per symbol. */
  head: new Int32Array(0),
  position: new Int32Array(0),
  link: new Int32Array(0),

  reserve(n: number, rankCount: number) {
    if (this.symbol.length < n) {
      const size = Math.max(n, 2 * this.symbol.length);
      for (const key of ['symbol', 'next', 'prev', 'round'] as const) this[key] = new Int32Array(size);
      this.position = new Int32Array(3 * size);
      this.link = new Int32Array(3 * size);
    }
    if (this.head.length !== rankCount) this.head = new Int32Array(rankCount).fill(-1);
    return this;
  },
};
