/**
 * What one prompt may hold, checked on the caller's thread before its words are merged: the
 * limits generate() and tokenize() share, and the checked ways both turn text into ids.
 */
import type { ClipTokenizer } from './clip-tokenizer.js';
import { CHUNK_TOKENS, encodePrompt, type EmbeddingMatcher, type EncodedPrompt } from './prompt-weights.js';

/** 75-token windows per prompt: 2400 tokens, far past what any UI lets users type. */
export const MAX_PROMPT_WINDOWS = 32;
/** Tokens per prompt, BOS and EOS aside: what MAX_PROMPT_WINDOWS windows hold at most. */
export const MAX_PROMPT_TOKENS = MAX_PROMPT_WINDOWS * CHUNK_TOKENS;
/**
 * UTF-8 bytes in a prompt's words (what BPE merges), at most: three times what 2400 tokens of
 * ordinary text hold (English or CJK: 3–5 bytes a token). Bounds the merging on the caller's
 * thread, which a few long repeated runs (emoji, punctuation) could otherwise take to 77 KB.
 */
export const MAX_PROMPT_WORD_BYTES = 32 * 1024;
/**
 * Characters per prompt (and per tokenize() call): ten times what 2400 tokens of ordinary text
 * take. Prompts are tokenized on the caller's thread, so this bounds the time it is held.
 */
export const MAX_PROMPT_CHARS = 100_000;

/** A prompt's text: TypeError unless a string, RangeError past MAX_PROMPT_CHARS. */
export function checkPromptText(what: string, text: unknown): string {
  if (typeof text !== 'string') throw new TypeError(`${what} must be a string, got ${typeof text}`);
  if (text.length > MAX_PROMPT_CHARS) throw new RangeError(`${what} has ${text.length} characters; at most ${MAX_PROMPT_CHARS} are taken`);
  return text;
}

/** The prompt's windows, with the option named in any error of its syntax. */
export function encodePromptOption(what: string, tokenizer: ClipTokenizer, text: string, padId: number, embeddings?: EmbeddingMatcher): EncodedPrompt {
  try {
    return encodePrompt(tokenizer, text, { maxChunks: MAX_PROMPT_WINDOWS, maxWordBytes: MAX_PROMPT_WORD_BYTES, padId, ...(embeddings ? { embeddings } : {}) });
  } catch (err) {
    if (err instanceof RangeError) throw new RangeError(err.message.replace(/^prompt /, `${what} `));
    throw err;
  }
}

/**
 * model.tokenize(): the text's ids with BOS and EOS, no prompt syntax; an embedding's name
 * becomes its placeholder ids (one per vector). As generate() does, a text past what the
 * windows take is refused before its words are all merged.
 */
export function tokenizeWithinLimits(tokenizer: ClipTokenizer, text: unknown, embeddings?: EmbeddingMatcher): number[] {
  const encoded = tokenizer.encodeWithin(checkPromptText('text', text), { maxTokens: MAX_PROMPT_TOKENS, maxWordBytes: MAX_PROMPT_WORD_BYTES });
  if (encoded.exceeded === 'bytes')
    throw new RangeError(`text has more than ${MAX_PROMPT_WORD_BYTES} bytes of text in its words; at most ${MAX_PROMPT_WORD_BYTES} are taken`);
  if (!encoded.ids)
    throw new RangeError(`text has more than ${MAX_PROMPT_TOKENS} tokens (${MAX_PROMPT_WINDOWS} windows of ${CHUNK_TOKENS}); at most ${MAX_PROMPT_TOKENS} are counted`);
  if (!embeddings) return [tokenizer.bos, ...encoded.ids, tokenizer.eos];
  const ids = [tokenizer.bos];
  for (let at = 0; at < encoded.ids.length; ) {
    const m = embeddings.matchAt(encoded.ids, at);
    if (m) ids.push(...m.ids);
    else ids.push(encoded.ids[at]!);
    at += m ? m.length : 1;
  }
  ids.push(tokenizer.eos);
  return ids;
}
