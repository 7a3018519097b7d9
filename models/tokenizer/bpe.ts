/**
 * Byte-pair-encoding merge loop with the semantics of HuggingFace `tokenizers`' BPE model
 * (`end_of_word_suffix = "</w>"`, no dropout): repeatedly merge the adjacent pair with the lowest
 * merge rank, the leftmost one on ties, until no adjacent pair has a rank. A binary heap keeps this
 * O(n log n) in the word length, so a pathological 10k-character "word" cannot stall the worker.
 */

/** Ranks of merges, keyed `left + " " + right` (byte-level symbols never contain a space). */
export type MergeRanks = ReadonlyMap<string, number>;

export const END_OF_WORD = '</w>';

/** Splits one pre-tokenized, byte-level-mapped word into BPE symbols. */
export function bpeWord(word: string, ranks: MergeRanks): string[] {
  const chars = Array.from(word); // code points: byte-level chars are all in the BMP, but be safe
  const n = chars.length;
  if (n === 0) return [];
  chars[n - 1] += END_OF_WORD;
  if (n === 1) return chars;

  const sym = chars;
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  const version = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new PairHeap();
  const pushPair = (left: number): void => {
    const right = next[left]!;
    if (right < 0) return;
    const rank = ranks.get(sym[left] + ' ' + sym[right]);
    if (rank !== undefined) heap.push(rank, left, right, version[left]!, version[right]!);
  };
  for (let i = 0; i + 1 < n; i++) pushPair(i);

  while (heap.size > 0) {
    const top = heap.pop();
    const left = top.left;
    const right = top.right;
    // Stale entry: one side changed since it was queued.
    if (version[left] !== top.versionLeft || version[right] !== top.versionRight) continue;
    sym[left] = sym[left]! + sym[right]!;
    const after = next[right]!;
    next[left] = after;
    if (after >= 0) prev[after] = left;
    version[left]! += 1;
    version[right]! += 1;
    next[right] = -2; // dead
    const before = prev[left]!;
    if (before >= 0) pushPair(before);
    pushPair(left);
  }

  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!);
  return out;
}

interface PairEntry {
  rank: number;
  left: number;
  right: number;
  versionLeft: number;
  versionRight: number;
}

/** Min-heap ordered by (rank, left position): lowest rank first, leftmost on ties. */
class PairHeap {
  private readonly items: PairEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(rank: number, left: number, right: number, versionLeft: number, versionRight: number): void {
    const items = this.items;
    items.push({ rank, left, right, versionLeft, versionRight });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(items[i]!, items[parent]!)) break;
      swap(items, i, parent);
      i = parent;
    }
  }

  pop(): PairEntry {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < items.length && less(items[l]!, items[smallest]!)) smallest = l;
        if (r < items.length && less(items[r]!, items[smallest]!)) smallest = r;
        if (smallest === i) break;
        swap(items, i, smallest);
        i = smallest;
      }
    }
    return top;
  }
}

function less(a: PairEntry, b: PairEntry): boolean {
  return a.rank < b.rank || (a.rank === b.rank && a.left < b.left);
}

function swap(items: PairEntry[], i: number, j: number): void {
  const t = items[i]!;
  items[i] = items[j]!;
  items[j] = t;
}
