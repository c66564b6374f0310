/**
 * stable-diffusion-webui's prompt syntax: attention weights — `(word)` ×1.1, `[word]` ÷1.1,
 * `(word:1.3)`, escapes `\(` `\)` `\[` `\]` `\\` — and `BREAK`; then webui's chunking of the
 * tokens into 77-position windows for the text encoder, each token carrying its weight.
 */
import type { ClipTokenizer } from './clip-tokenizer.js';

/** `(…)` multiplies the weight by this, `[…]` divides by it. */
const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;

/** The text encoder sees 77 positions: BOS, 75 prompt tokens, EOS. */
export const CHUNK_TOKENS = 75;
export const CHUNK_WINDOW = CHUNK_TOKENS + 2;
/** webui's `comma_padding_backtrack` default: how far back a full chunk looks for a comma. */
const COMMA_BACKTRACK = 20;

/**
 * Brackets open at once, at most. webui has no limit, but each close rescales every run since
 * its opening, so a prompt of thousands of unclosed `(` costs seconds of the caller's thread
 * (and weights of 1.1^depth mean nothing past a few levels). Deeper is a RangeError.
 */
export const MAX_BRACKET_DEPTH = 100;

/** webui's marker entry for BREAK in `parse_prompt_attention`'s result. */
const BREAK_WEIGHT = -1;

/**
 * The attention syntax's lexical tokens, in webui's order of preference (its regex `\\\(|\\\)|
 * \\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:`): escapes, a lone
 * backslash, brackets, `:weight)`, closers, plain text (a run without `\()[]:`), a lone colon.
 * Scanned by hand (parseSpans): a regex match per token cost the thread tens of ms on prompts of
 * thousands of brackets.
 */
const WEIGHT = /:\s*([+-]?[.\d]+)\s*\)/uy;
const SYNTAX_CHAR = /[\\()[\]:]/g;
/**
 * `BREAK` as a whole word (Python's `\b`, with Unicode word characters). webui splits on
 * `\s*BREAK\s*`; the spaces around it are trimmed off the parts instead, since a leading `\s*`
 * retried at every position of a long run of spaces is quadratic.
 */
const BREAK = /(?<![\p{L}\p{N}_])BREAK(?![\p{L}\p{N}_])/u;

interface Span {
  text: string;
  weight: number;
  /** A BREAK: starts a new chunk; carries no text and takes no weight. */
  isBreak: boolean;
}

/**
 * webui's `parse_prompt_attention`, with BREAK kept apart from the weights (see below).
 * `tooManyBreaks` is thrown as soon as the prompt has more than `maxBreaks` BREAKs. Runs are kept
 * in parallel arrays and tokens scanned in place: a prompt of ten thousand brackets made as many
 * objects per token, and their garbage held the caller's thread.
 */
function parseSpans(text: string, maxBreaks = Infinity, tooManyBreaks?: () => Error): Span[] {
  const texts: string[] = [];
  // At most one run per character, and one more for BREAK's trimmed parts and the empty prompt.
  const weights = new Float64Array(text.length + 2);
  const isBreak = new Uint8Array(text.length + 2);
  let breaks = 0;
  const round: number[] = [];
  const square: number[] = [];
  const push = (t: string, brk = false) => {
    weights[texts.length] = brk ? BREAK_WEIGHT : 1;
    isBreak[texts.length] = brk ? 1 : 0;
    texts.push(t);
  };
  const scaleFrom = (start: number, by: number) => {
    for (let i = start; i < texts.length; i++) if (!isBreak[i]) weights[i]! *= by;
  };
  const addText = (s: string) => {
    if (!s.includes('BREAK')) return push(s);
    const parts = s.split(BREAK);
    parts.forEach((part, i) => {
      if (i > 0 && ++breaks > maxBreaks) throw tooManyBreaks?.() ?? new RangeError('too many BREAKs');
      if (i > 0) push('BREAK', true);
      const trimmed = i === 0 ? part : part.trimStart();
      push(i === parts.length - 1 ? trimmed : trimmed.trimEnd());
    });
  };

  for (let at = 0; at < text.length; ) {
    const c = text[at]!;
    if (c === '\\') {
      // An escape gives its character; a backslash before anything else vanishes (as in webui).
      const next = text[at + 1];
      const escape = next !== undefined && '()[]\\'.includes(next);
      push(escape ? next : '');
      at += escape ? 2 : 1;
    } else if (c === '(' || c === '[') {
      if (round.length + square.length === MAX_BRACKET_DEPTH)
        throw new RangeError(`prompt opens more than ${MAX_BRACKET_DEPTH} brackets without closing them (at character ${at})`);
      (c === '(' ? round : square).push(texts.length);
      at++;
    } else if (c === ':') {
      WEIGHT.lastIndex = at;
      const m = WEIGHT.exec(text);
      if (m && round.length > 0) {
        const value = Number(m[1]);
        // webui's float() raises on "1.2.3" or "."; say so rather than guess.
        if (Number.isNaN(value)) throw new RangeError(`prompt weight ${JSON.stringify(m[1])} is not a number`);
        scaleFrom(round.pop()!, value);
      } else {
        addText(m ? m[0] : c);
      }
      at += m ? m[0].length : 1;
    } else if (c === ')' || c === ']') {
      const open = c === ')' ? round : square;
      if (open.length > 0) scaleFrom(open.pop()!, c === ')' ? ROUND_MULTIPLIER : SQUARE_MULTIPLIER);
      else addText(c);
      at++;
    } else {
      SYNTAX_CHAR.lastIndex = at;
      const end = SYNTAX_CHAR.exec(text)?.index ?? text.length;
      addText(text.slice(at, end));
      at = end;
    }
  }
  // Brackets left open apply to the end of the prompt.
  for (const start of round) scaleFrom(start, ROUND_MULTIPLIER);
  for (const start of square) scaleFrom(start, SQUARE_MULTIPLIER);

  if (texts.length === 0) push('');
  // Neighbouring runs of one weight become one run (joined once, not one concatenation each).
  const merged: Span[] = [];
  for (let i = 0; i < texts.length; ) {
    let end = i + 1;
    if (!isBreak[i]) while (end < texts.length && !isBreak[end] && weights[end] === weights[i]) end++;
    merged.push({ text: end - i === 1 ? texts[i]! : texts.slice(i, end).join(''), weight: weights[i]!, isBreak: isBreak[i] === 1 });
    i = end;
  }
  return merged;
}

/**
 * The prompt as runs of text and weight, as webui's `parse_prompt_attention` returns them:
 * `'an (important) word'` → `[['an ', 1], ['important', 1.1], [' word', 1]]`. A BREAK appears as
 * `['BREAK', -1]`, webui's marker.
 */
export function parsePromptAttention(text: string): Array<[string, number]> {
  if (typeof text !== 'string') throw new TypeError('prompt must be a string');
  return parseSpans(text).map((s) => [s.text, s.weight]);
}

export interface EncodePromptOptions {
  /**
   * The id after EOS in each window. Default: EOS (CLIP ViT-L, SD1.x). OpenCLIP text encoders
   * (SD2.x, SDXL's second) were trained with 0 there.
   */
  padId?: number;
  /** How many tokens back from a full chunk's end a comma may be to move the rest on. Default 20; 0 = never. */
  commaBacktrack?: number;
  /**
   * Windows taken at most (RangeError beyond). Checked while tokenizing, so that a prompt far
   * too long is refused before its words are merged. Default: no limit.
   */
  maxChunks?: number;
  /**
   * UTF-8 bytes in the prompt's words (what BPE merges), at most (RangeError beyond): bounds the
   * merging work, since a window's worth of long tokens can be hundreds of bytes. Default: no limit.
   */
  maxWordBytes?: number;
  /**
   * Textual-inversion embeddings (lib/embeddings.ts EmbeddingUse): where the tokens from `at` on
   * name one, the `length` ids of its name become its placeholder `ids`, one per vector, with the
   * run's weight. Default: none.
   */
  embeddings?: EmbeddingMatcher;
}

/** Finds embedding names in a run's token ids (lib/embeddings.ts). */
export interface EmbeddingMatcher {
  matchAt(ids: readonly number[], at: number): { length: number; ids: readonly number[] } | undefined;
}

/**
 * The prompt as the text encoder's input: `chunkCount` windows of 77 ids, flat (window i is
 * `ids.subarray(i * 77, (i + 1) * 77)`), and one weight per id (1 for BOS, EOS and padding).
 * Flat typed arrays pass to the native engine in one call.
 */
export interface EncodedPrompt {
  chunkCount: number;
  ids: Int32Array;
  weights: Float32Array;
}

/**
 * Tokenizes a prompt the way webui's `tokenize_line` does: each weighted run on its own, tokens
 * into chunks of 75; a full chunk whose last comma is at most `commaBacktrack` tokens back moves
 * the tokens after that comma to the next chunk; BREAK closes the chunk; an empty prompt gives
 * one chunk. Each chunk becomes [BOS, tokens, EOS padding…, EOS]. An embedding's vectors are
 * never split between two chunks: one that does not fit in what is left of a chunk starts the
 * next (webui; stable-diffusion.cpp splits them, as it splits any run of tokens).
 */
export function encodePrompt(tokenizer: ClipTokenizer, text: string, options: EncodePromptOptions = {}): EncodedPrompt {
  const padId = options.padId ?? tokenizer.eos;
  const backtrack = options.commaBacktrack ?? COMMA_BACKTRACK;
  if (!Number.isInteger(padId) || padId < 0 || padId >= tokenizer.vocabSize) {
    throw new RangeError(`padId must be a token id below ${tokenizer.vocabSize}`);
  }
  if (!Number.isInteger(backtrack) || backtrack < 0) throw new RangeError('commaBacktrack must be an integer ≥ 0');
  const maxChunks = options.maxChunks ?? Infinity;
  if (maxChunks !== Infinity && (!Number.isInteger(maxChunks) || maxChunks < 1)) throw new RangeError('maxChunks must be an integer ≥ 1');
  const tooLong = () => new RangeError(`prompt has more than ${maxChunks} windows of ${CHUNK_TOKENS} tokens; at most ${maxChunks} are taken`);
  let wordBytesLeft = options.maxWordBytes ?? Infinity;
  if (wordBytesLeft !== Infinity && (!Number.isInteger(wordBytesLeft) || wordBytesLeft < 0)) throw new RangeError('maxWordBytes must be an integer ≥ 0');
  const comma = tokenizer.tokenId(',</w>');

  const windows: Array<{ ids: number[]; weights: number[] }> = [];
  let ids: number[] = [];
  let weights: number[] = [];
  let lastComma = -1;
  const closeChunk = () => {
    if (windows.length === maxChunks) throw tooLong();
    const fill = CHUNK_TOKENS - ids.length;
    windows.push({
      ids: [tokenizer.bos, ...ids, ...new Array<number>(fill).fill(tokenizer.eos), tokenizer.eos],
      weights: [1, ...weights, ...new Array<number>(fill).fill(1), 1],
    });
    ids = [];
    weights = [];
    lastComma = -1;
  };

  // Each BREAK closes a window.
  for (const span of parseSpans(text, maxChunks, tooLong)) {
    if (span.isBreak) {
      closeChunk();
      continue;
    }
    // Tokens past the room left in whole windows would need more windows, however they are chunked.
    const room = (maxChunks - windows.length) * CHUNK_TOKENS - ids.length;
    const encoded = tokenizer.encodeWithin(span.text, { maxTokens: room, maxWordBytes: wordBytesLeft });
    if (encoded.exceeded === 'bytes') {
      throw new RangeError(`prompt has more than ${options.maxWordBytes} bytes of text in its words; at most ${options.maxWordBytes} are taken`);
    }
    if (!encoded.ids) throw tooLong();
    wordBytesLeft -= encoded.wordBytes!;
    const tokens = encoded.ids;
    for (let position = 0; position < tokens.length; ) {
      const id = tokens[position]!;
      if (id === comma) {
        lastComma = ids.length;
      } else if (backtrack > 0 && ids.length === CHUNK_TOKENS && lastComma !== -1 && ids.length - lastComma <= backtrack) {
        // Keep the phrase after the comma whole: it starts the next chunk.
        const movedIds = ids.splice(lastComma + 1);
        const movedWeights = weights.splice(lastComma + 1);
        closeChunk();
        ids = movedIds;
        weights = movedWeights;
      }
      if (ids.length === CHUNK_TOKENS) closeChunk();
      const embedding = options.embeddings?.matchAt(tokens, position);
      if (!embedding) {
        ids.push(id);
        weights.push(span.weight);
        position++;
        continue;
      }
      if (ids.length + embedding.ids.length > CHUNK_TOKENS) closeChunk();
      for (const placeholder of embedding.ids) {
        ids.push(placeholder);
        weights.push(span.weight);
      }
      position += embedding.length;
    }
  }
  if (ids.length > 0 || windows.length === 0) closeChunk();

  const out: EncodedPrompt = {
    chunkCount: windows.length,
    ids: new Int32Array(windows.length * CHUNK_WINDOW),
    weights: new Float32Array(windows.length * CHUNK_WINDOW),
  };
  windows.forEach((w, i) => {
    // As webui does for OpenCLIP: everything after the first EOS becomes padding.
    const end = w.ids.indexOf(tokenizer.eos, 1);
    for (let j = end + 1; j < CHUNK_WINDOW; j++) w.ids[j] = padId;
    out.ids.set(w.ids, i * CHUNK_WINDOW);
    out.weights.set(w.weights, i * CHUNK_WINDOW);
  });
  return out;
}
