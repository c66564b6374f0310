// stable-diffusion-webui's prompt attention syntax and its chunking into 77-token windows.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { CHUNK_WINDOW, encodePrompt, parsePromptAttention } from '../lib/text/prompt-weights.js';
import { dataDir } from './support/data.js';

const BOS = 49406;
const EOS = 49407;
const COMMA = 267;
const CAT = 2368; // 'cat</w>'
const DOG = 1929; // 'dog</w>'

describe('parsePromptAttention (webui parse_prompt_attention)', () => {
  // The examples of webui's docstring.
  it.each([
    ['normal text', [['normal text', 1.0]]],
    ['an (important) word', [['an ', 1.0], ['important', 1.1], [' word', 1.0]]],
    ['(unbalanced', [['unbalanced', 1.1]]],
    ['\\(literal\\]', [['(literal]', 1.0]]],
    ['(unnecessary)(parens)', [['unnecessaryparens', 1.1]]],
    [
      'a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).',
      [
        ['a ', 1.0],
        ['house', 1.5730000000000004],
        [' ', 1.1],
        ['on', 1.0],
        [' a ', 1.1],
        ['hill', 0.55],
        [', sun, ', 1.1],
        ['sky', 1.4641000000000006],
        ['.', 1.1],
      ],
    ],
  ] as Array<[string, Array<[string, number]>]>)('%s', (prompt, expected) => {
    expect(parsePromptAttention(prompt)).toEqual(expected);
  });

  it('nests, divides, and takes explicit weights', () => {
    expect(parsePromptAttention('((word))')).toEqual([['word', 1.1 * 1.1]]);
    expect(parsePromptAttention('[word]')).toEqual([['word', 1 / 1.1]]);
    expect(parsePromptAttention('[[word]]')).toEqual([['word', 1 / 1.1 / 1.1]]);
    expect(parsePromptAttention('a (word:1.3) b')).toEqual([['a ', 1], ['word', 1.3], [' b', 1]]);
    expect(parsePromptAttention('(word: 0.5 )')).toEqual([['word', 0.5]]);
    expect(parsePromptAttention('(word:-1)')).toEqual([['word', -1]]);
    expect(parsePromptAttention('(word:.5)')).toEqual([['word', 0.5]]);
    expect(parsePromptAttention('((a:2) b)')).toEqual([['a', 2 * 1.1], [' b', 1.1]]);
  });

  it('escapes, and drops a backslash before anything else', () => {
    expect(parsePromptAttention('\\\\ \\( \\) \\[ \\]')).toEqual([['\\ ( ) [ ]', 1]]);
    expect(parsePromptAttention('(\\(x\\))')).toEqual([['(x)', 1.1]]);
    expect(parsePromptAttention('a\\b')).toEqual([['ab', 1]]);
  });

  it('treats unmatched closers and stray colons as text', () => {
    expect(parsePromptAttention('a ]b) c')).toEqual([['a ]b) c', 1]]);
    expect(parsePromptAttention('time: 5:30')).toEqual([['time: 5:30', 1]]);
    expect(parsePromptAttention('x:1.5)')).toEqual([['x:1.5)', 1]]);
    expect(parsePromptAttention('(a:1.2')).toEqual([['a:1.2', 1.1]]);
    expect(parsePromptAttention('[a (b')).toEqual([['a ', 1 / 1.1], ['b', 1.1 * (1 / 1.1)]]);
  });

  it('rejects a weight that is not a number, as webui fails on it', () => {
    expect(() => parsePromptAttention('(a:1.2.3)')).toThrow(RangeError);
    expect(() => parsePromptAttention('(a:.)')).toThrow(RangeError);
  });

  it('takes brackets 100 deep and refuses a 101st open one (each close rescales all since its opening)', () => {
    const deep = parsePromptAttention(`${'('.repeat(60)}${'['.repeat(40)}x`);
    expect(deep).toHaveLength(1);
    expect(deep[0]![1]).toBeCloseTo(1.1 ** 20, 10);
    expect(() => parsePromptAttention(`(${'('.repeat(60)}${'['.repeat(40)}x`)).toThrow(/opens more than 100 brackets without closing them \(at character 100\)/);
    // Closed brackets do not count: 10,000 pairs in a row are fine.
    expect(parsePromptAttention('(a) '.repeat(10_000))).toHaveLength(20_000);
  });

  it('marks BREAK as a whole upper-case word', () => {
    expect(parsePromptAttention('a cat BREAK a dog')).toEqual([['a cat', 1], ['BREAK', -1], ['a dog', 1]]);
    expect(parsePromptAttention('a break BREAKfast BREAK_')).toEqual([['a break BREAKfast BREAK_', 1]]);
    expect(parsePromptAttention('éBREAK')).toEqual([['éBREAK', 1]]);
    expect(parsePromptAttention('(a BREAK b)')).toEqual([['a', 1.1], ['BREAK', -1], ['b', 1.1]]);
  });

  it('gives one empty run for an empty prompt', () => {
    expect(parsePromptAttention('')).toEqual([['', 1]]);
    expect(parsePromptAttention('()')).toEqual([['', 1]]);
  });
});

describe('encodePrompt (webui tokenize_line)', () => {
  let tok: ClipTokenizer;
  beforeAll(() => {
    tok = ClipTokenizer.fromBpeFile(join(dataDir, 'clip', 'bpe_simple_vocab_16e6.txt.gz'));
  });

  const chunk = (e: { ids: Int32Array; weights: Float32Array }, i: number) => ({
    ids: Array.from(e.ids.subarray(i * CHUNK_WINDOW, (i + 1) * CHUNK_WINDOW)),
    weights: Array.from(e.weights.subarray(i * CHUNK_WINDOW, (i + 1) * CHUNK_WINDOW)),
  });
  const padded = (ids: number[]) => [BOS, ...ids, ...new Array<number>(CHUNK_WINDOW - 1 - ids.length).fill(EOS)];
  const repeat = (word: string, n: number) => new Array<string>(n).fill(word).join(' ');
  const count = (ids: number[], id: number) => ids.filter((x) => x === id).length;

  it('a short prompt: one window of BOS, tokens, EOS padding; weights 1', () => {
    const e = encodePrompt(tok, 'a lovely cat');
    expect(e.chunkCount).toBe(1);
    expect(e.ids.length).toBe(77);
    expect(e.weights.length).toBe(77);
    expect(chunk(e, 0).ids).toEqual(padded([320, 2165, CAT]));
    expect(chunk(e, 0).weights).toEqual(new Array(77).fill(1));
  });

  it('an empty prompt gives one window', () => {
    const e = encodePrompt(tok, '');
    expect(e.chunkCount).toBe(1);
    expect(chunk(e, 0).ids).toEqual(padded([]));
    expect(chunk(e, 0).weights).toEqual(new Array(77).fill(1));
  });

  it('carries a weight to every token of a weighted word', () => {
    // 'photorealistic' is two tokens (1153, 16157).
    const e = encodePrompt(tok, 'a (photorealistic:1.4) [cat]');
    const c = chunk(e, 0);
    expect(c.ids.slice(0, 6)).toEqual([BOS, 320, 1153, 16157, CAT, EOS]);
    expect(c.weights.slice(0, 6)).toEqual([1, 1, Math.fround(1.4), Math.fround(1.4), Math.fround(1 / 1.1), 1]);
    expect(c.weights.slice(6)).toEqual(new Array(71).fill(1));
  });

  it('a 200-token prompt → 3 windows of 75, 75 and 50 tokens', () => {
    const e = encodePrompt(tok, repeat('cat', 200));
    expect(e.chunkCount).toBe(3);
    expect(e.ids.length).toBe(3 * 77);
    const [a, b, c] = [0, 1, 2].map((i) => chunk(e, i).ids);
    expect(a).toEqual([BOS, ...new Array(75).fill(CAT), EOS]);
    expect(b).toEqual([BOS, ...new Array(75).fill(CAT), EOS]);
    expect(c).toEqual(padded(new Array(50).fill(CAT)));
    expect(encodePrompt(tok, repeat('cat', 150)).chunkCount).toBe(2);
    expect(encodePrompt(tok, repeat('cat', 151)).chunkCount).toBe(3);
  });

  it('moves the words after a comma near a full window to the next one', () => {
    // 70 cats, a comma (position 70), 10 dogs: the window fills at the 4th dog.
    const prompt = `${repeat('cat', 70)}, ${repeat('dog', 10)}`;
    const e = encodePrompt(tok, prompt);
    expect(e.chunkCount).toBe(2);
    expect(chunk(e, 0).ids).toEqual(padded([...new Array(70).fill(CAT), COMMA]));
    expect(chunk(e, 1).ids).toEqual(padded(new Array(10).fill(DOG)));

    const off = encodePrompt(tok, prompt, { commaBacktrack: 0 });
    expect(chunk(off, 0).ids).toEqual([BOS, ...new Array(70).fill(CAT), COMMA, DOG, DOG, DOG, DOG, EOS]);
    expect(count(chunk(off, 1).ids, DOG)).toBe(6);
  });

  it('keeps a full window when its last comma is more than 20 tokens back', () => {
    const e = encodePrompt(tok, `${repeat('cat', 54)}, ${repeat('dog', 30)}`);
    expect(e.chunkCount).toBe(2);
    // Comma at position 54: 75 - 54 = 21 > 20.
    expect(count(chunk(e, 0).ids, DOG)).toBe(20);
    expect(count(chunk(e, 1).ids, DOG)).toBe(10);
    const near = encodePrompt(tok, `${repeat('cat', 55)}, ${repeat('dog', 30)}`);
    expect(count(chunk(near, 0).ids, DOG)).toBe(0);
    expect(count(chunk(near, 1).ids, DOG)).toBe(30);
  });

  it('moves the weights with the moved tokens', () => {
    const e = encodePrompt(tok, `${repeat('cat', 70)}, (${repeat('dog', 10)}:1.5)`);
    expect(chunk(e, 1).weights.slice(0, 12)).toEqual([1, ...new Array(10).fill(1.5), 1]);
    expect(chunk(e, 0).weights).toEqual(new Array(77).fill(1));
  });

  it('BREAK starts a new window', () => {
    const e = encodePrompt(tok, 'a cat BREAK a dog');
    expect(e.chunkCount).toBe(2);
    expect(chunk(e, 0).ids).toEqual(padded([320, CAT]));
    expect(chunk(e, 1).ids).toEqual(padded([320, DOG]));
    expect(encodePrompt(tok, 'a cat BREAK BREAK a dog').chunkCount).toBe(3);
    expect(encodePrompt(tok, 'a cat break a dog').chunkCount).toBe(1);
    // A BREAK at the end closes the window; nothing follows it.
    expect(encodePrompt(tok, 'a cat BREAK').chunkCount).toBe(1);
    expect(encodePrompt(tok, 'BREAK a cat').chunkCount).toBe(2);
  });

  it('pads after EOS with padId (OpenCLIP) when asked', () => {
    const e = encodePrompt(tok, 'a cat', { padId: 0 });
    expect(chunk(e, 0).ids).toEqual([BOS, 320, CAT, EOS, ...new Array(73).fill(0)]);
    expect(() => encodePrompt(tok, 'a', { padId: 49408 })).toThrow(RangeError);
    expect(() => encodePrompt(tok, 'a', { commaBacktrack: -1 })).toThrow(RangeError);
  });
});
