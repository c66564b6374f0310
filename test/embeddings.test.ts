// Textual-inversion embeddings (lib/embeddings.ts, the text encoder's substituted rows): files
// from our generator in each layout read back exactly; their vectors reach the text encoder
// (against the float64 reference with the rows substituted, SD1 and SDXL's two encoders incl.
// bigG's pooled vector); window placement and weights; an embedding made of a word's own token
// rows generates the very image of that word; bad files are coded errors and the model goes on.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EmbeddingLibrary, fitEmbedding, listEmbeddings, readEmbedding, type EmbeddingTarget } from '../lib/embeddings.js';
import { ModelCompatibilityError, ModelFormatError } from '../lib/errors.js';
import { loadModel, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { CHUNK_TOKENS, CHUNK_WINDOW, encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, componentPrefixes, generateModel, tensorSpecs } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateEmbedding } from '../scripts/generator/embeddings.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PickleWriter, op, writeTorchPickle } from '../scripts/generator/torch-checkpoint.mjs';
import { hfTextWeights, openClipTextWeights, reference, referencePooled, type ClipConfig, type TextWeights } from './support/clip-text-reference.js';
import { generatedWeights } from './support/generated-weights.js';
import { relativeError } from './support/reference-nn.js';

type Spec = { name: string; shape: number[] };
interface Generated {
  path: string;
  tables: Float32Array[];
}
const gen = (o: Record<string, unknown>) => generateEmbedding(o) as Promise<Generated>;

const seed = 7;
const dir = mkdtempSync(join(tmpdir(), 'sdnode-embd-'));
const embd = join(dir, 'embeddings');
const words = join(dir, 'words');
const sd1 = PRESETS.tiny as { clip: ClipConfig };
const xl = PRESETS['tiny-sdxl'] as { clip: ClipConfig; clip2: ClipConfig };
const W1 = sd1.clip.width;
const [WL, WG] = [xl.clip.width, xl.clip2.width];
const VOCAB = sd1.clip.vocab;
const tokenizer = ClipTokenizer.default();
const cpu = { device: 'cpu', threads: 2 } as const;
const small = { width: 64, height: 64, steps: 2, sampler: 'euler', cfgScale: 5, seed: 11 } as const;

/** The text encoder's float64 weights with `table` ([rows][width]) appended to the token rows: ids vocab + r read row r. */
function withRows(t: TextWeights, table: Float32Array): TextWeights {
  const token = new Float64Array(t.token.length + table.length);
  token.set(t.token);
  token.set(Float64Array.from(table), t.token.length);
  return { ...t, token };
}

/** The rows of `words`' tokens in a float64 token table, as f32 (an embedding that says exactly those words). */
function wordRows(t: TextWeights, words: string): Float32Array {
  const d = t.config.width;
  const ids = tokenizer.encode(words);
  const out = new Float32Array(ids.length * d);
  ids.forEach((id, i) => out.set(t.token.subarray(id * d, (id + 1) * d), i * d));
  return out;
}

async function writeSafetensors(path: string, tensors: Array<{ name: string; data: Float32Array; shape: number[] }>): Promise<void> {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

let sd1Path: string;
let xlPath: string;
let sd1Ref: TextWeights;
let xlRef: { clipL: TextWeights; bigG: TextWeights };
const files: Record<string, Generated> = {};

beforeAll(async () => {
  mkdirSync(embd);
  sd1Path = join(dir, 'tiny.safetensors');
  xlPath = join(dir, 'tiny-sdxl.safetensors');
  await generateModel({ out: sd1Path, preset: 'tiny', dtype: 'f32', seed });
  await generateModel({ out: xlPath, preset: 'tiny-sdxl', dtype: 'f32', seed });
  const s1 = generatedWeights(tensorSpecs(PRESETS.tiny) as Spec[], seed, 'f32', (componentPrefixes(PRESETS.tiny) as { clip: string }).clip);
  sd1Ref = hfTextWeights((n) => s1.get(n), sd1.clip);
  const xlSpecs = tensorSpecs(PRESETS['tiny-sdxl']) as Spec[];
  const px = componentPrefixes(PRESETS['tiny-sdxl']) as { clip: string; clip2: string };
  const l = generatedWeights(xlSpecs, seed, 'f32', px.clip);
  const g = generatedWeights(xlSpecs, seed, 'f32', px.clip2);
  xlRef = { clipL: hfTextWeights((n) => l.get(n), xl.clip), bigG: openClipTextWeights((n) => g.get(n), xl.clip2) };

  files.webui = await gen({ out: join(embd, 'webuistyle.pt'), format: 'pt', vectors: 3, widths: [W1], seed: 1, name: 'webuistyle' });
  files.half = await gen({ out: join(embd, 'halfstyle.pt'), format: 'pt', vectors: 2, widths: [W1], seed: 2, dtype: 'f16' });
  files.emb = await gen({ out: join(embd, 'embstyle.safetensors'), format: 'safetensors', vectors: 4, widths: [W1], seed: 3 });
  files.long = await gen({ out: join(embd, 'longstyle.safetensors'), format: 'safetensors', vectors: 8, widths: [W1], seed: 4 });
  files.xl = await gen({ out: join(embd, 'xlstyle.safetensors'), format: 'sdxl', vectors: 2, widths: [WL, WG], seed: 5 });
  files.wide = await gen({ out: join(embd, 'widestyle.safetensors'), format: 'safetensors', vectors: 1, widths: [768], seed: 6 });
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('embedding files from the generator', () => {
  it('each layout reads back as the values written (webui .pt f32 and f16, emb_params, SDXL clip_l + clip_g)', () => {
    const one = (name: string, file: string) => readEmbedding(name, join(embd, file), [W1]);
    expect(one('webuistyle', 'webuistyle.pt')).toMatchObject({ vectors: 3, tables: [files.webui!.tables[0]] });
    expect(one('halfstyle', 'halfstyle.pt')).toMatchObject({ vectors: 2, tables: [files.half!.tables[0]] });
    expect(one('embstyle', 'embstyle.safetensors')).toMatchObject({ vectors: 4, tables: [files.emb!.tables[0]] });
    const x = readEmbedding('xlstyle', join(embd, 'xlstyle.safetensors'), [WL, WG]);
    expect(x.vectors).toBe(2);
    expect(x.tables).toEqual(files.xl!.tables);
    expect(x.tables[0]!.length).toBe(2 * WL);
    expect(x.tables[1]!.length).toBe(2 * WG);
  });

  it("the .pt is webui's layout: string_to_param and string_to_token, name and step beside them", () => {
    const t = native().readEmbeddingFile(join(embd, 'webuistyle.pt'));
    expect(t.format).toBe('torch');
    // Only the vectors are floating-point tensors; the token id and step are plain values.
    expect(t.tensors.map((x) => [x.name, x.shape])).toEqual([['string_to_param.*', [3, W1]]]);
    expect(readFileSync(join(embd, 'webuistyle.pt')).includes(Buffer.from('string_to_token'))).toBe(true);
  });

  it('the folder lists names by file name without extension; the preferred extension wins a shared name', async () => {
    const sub = join(dir, 'listing');
    mkdirSync(sub);
    for (const f of ['a.pt', 'a.safetensors', 'b.bin', 'notes.txt', 'c.gguf']) writeFileSync(join(sub, f), '');
    const folder = await listEmbeddings(sub);
    expect([...folder.files.entries()]).toEqual([
      ['a', join(sub, 'a.safetensors')],
      ['b', join(sub, 'b.bin')],
      ['c', join(sub, 'c.gguf')],
    ]);
    await expect(listEmbeddings(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ERR_FILE_ACCESS' });
  });
});

describe('prompt windows and weights', () => {
  let library: EmbeddingLibrary;
  const target: EmbeddingTarget = { widths: [W1], vocab: VOCAB };
  beforeAll(async () => {
    library = new EmbeddingLibrary(await listEmbeddings(embd), () => target);
  });

  it('a name becomes one placeholder id per vector (vocab + row), case-insensitive, each embedding numbered once', () => {
    const use = library.use(tokenizer);
    const p = encodePrompt(tokenizer, 'a WebuiStyle cat, embstyle and webuistyle', { embeddings: use });
    const ids = Array.from(p.ids.subarray(0, CHUNK_WINDOW));
    const [a, cat] = [tokenizer.encode('a')[0]!, tokenizer.encode('cat')[0]!];
    expect(ids.slice(0, 6)).toEqual([tokenizer.bos, a, VOCAB, VOCAB + 1, VOCAB + 2, cat]);
    // embstyle's 4 vectors after webuistyle's 3; webuistyle again reuses its ids.
    const comma = tokenizer.tokenId(',</w>')!;
    const and = tokenizer.encode('and')[0]!;
    expect(ids.slice(6, 15)).toEqual([comma, VOCAB + 3, VOCAB + 4, VOCAB + 5, VOCAB + 6, and, VOCAB, VOCAB + 1, VOCAB + 2]);
    expect(ids[15]).toBe(tokenizer.eos);
    const tables = use.tables(1)!;
    expect(tables[0]).toEqual(Float32Array.from([...files.webui!.tables[0]!, ...files.emb!.tables[0]!]));
    // A word that only contains a name is not the name.
    expect(Array.from(encodePrompt(tokenizer, 'webuistyles', { embeddings: library.use(tokenizer) }).ids).some((id) => id >= VOCAB)).toBe(false);
  });

  it('prompt weights apply to every vector of the embedding', () => {
    const p = encodePrompt(tokenizer, 'a (embstyle:1.5) [cat]', { embeddings: library.use(tokenizer) });
    expect(Array.from(p.weights.subarray(2, 6))).toEqual([1.5, 1.5, 1.5, 1.5]);
    expect(p.weights[1]).toBe(1);
    expect(p.weights[6]).toBeCloseTo(1 / 1.1, 6);
  });

  it('an embedding is not split across windows: one that does not fit starts the next window (webui)', () => {
    // 70 single-token words, then an 8-vector embedding: 5 positions left, so it opens window 2.
    const words = Array.from({ length: 70 }, () => 'cat').join(' ');
    const p = encodePrompt(tokenizer, `${words} longstyle dog`, { embeddings: library.use(tokenizer), commaBacktrack: 0 });
    expect(p.chunkCount).toBe(2);
    const first = Array.from(p.ids.subarray(0, CHUNK_WINDOW));
    expect(first.filter((id) => id >= VOCAB)).toEqual([]);
    expect(first[71]).toBe(tokenizer.eos); // the window closes after the 70 words, padded
    const second = Array.from(p.ids.subarray(CHUNK_WINDOW, 2 * CHUNK_WINDOW));
    expect(second.slice(1, 10)).toEqual([...Array.from({ length: 8 }, (_, i) => VOCAB + i), tokenizer.encode('dog')[0]]);
    // With room for it, it stays in the window.
    const fits = encodePrompt(tokenizer, `${words.split(' ').slice(0, 67).join(' ')} longstyle`, { embeddings: library.use(tokenizer) });
    expect(fits.chunkCount).toBe(1);
    expect(Array.from(fits.ids.subarray(68, 76))).toEqual(Array.from({ length: 8 }, (_, i) => VOCAB + i));
    expect(CHUNK_TOKENS).toBe(75);
  });
});

describe('the text encoder takes the vectors (tiny models, CPU, against the float64 reference)', () => {
  let sd1Native: NativeModel;
  let xlNative: NativeModel;
  const load = (model: string) => native().NativeModel.load({ model, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
  const measured: Record<string, number> = {};
  beforeAll(async () => {
    sd1Native = await load(sd1Path);
    xlNative = await load(xlPath);
  }, 60_000);
  afterAll(() => {
    console.log('embedding text-encoder relative errors:', measured);
    sd1Native?.dispose();
    xlNative?.dispose();
  });

  it('SD1: the rows replace the token embeddings at their positions', async () => {
    const library = new EmbeddingLibrary(await listEmbeddings(embd), () => ({ widths: [W1], vocab: VOCAB }));
    const use = library.use(tokenizer);
    const p = encodePrompt(tokenizer, 'a webuistyle cat with (embstyle:1.2)', { embeddings: use });
    const table = use.tables(1)![0]!;
    const out = await sd1Native.encodeTokens(p.ids, 1, { heads: sd1.clip.heads, quickGelu: true, clipSkip: 1, embeddings: table }).promise;
    measured.sd1 = relativeError(out.hidden, reference(withRows(sd1Ref, table), p.ids, 1, { heads: sd1.clip.heads, quickGelu: true, clipSkip: 1 }));
    expect(measured.sd1).toBeLessThan(1e-4);
    // Not what the plain prompt gives.
    const plain = encodePrompt(tokenizer, 'a cat with');
    expect(relativeError(out.hidden, reference(sd1Ref, plain.ids, 1, { heads: sd1.clip.heads, quickGelu: true, clipSkip: 1 }))).toBeGreaterThan(1e-2);
  });

  it('SDXL: clip_l rows to CLIP-L, clip_g rows to bigG, whose pooled vector stays at the EOS', async () => {
    const library = new EmbeddingLibrary(await listEmbeddings(embd), () => ({ widths: [WL, WG], vocab: VOCAB }));
    const use = library.use(tokenizer);
    const p = encodePrompt(tokenizer, 'a xlstyle house', { embeddings: use, padId: 0 });
    const [tl, tg] = use.tables(2)!;
    const l = await xlNative.encodeTokens(p.ids, 1, { heads: xl.clip.heads, quickGelu: true, clipSkip: 2, finalNorm: false, embeddings: tl }).promise;
    const g = await xlNative
      .encodeTokens(p.ids, 1, { prefix: 'cond_stage_model.1.transformer.text_model.', heads: xl.clip2.heads, quickGelu: false, clipSkip: 2, finalNorm: false, pooled: true, embeddings: tg })
      .promise;
    measured.sdxlClipL = relativeError(l.hidden, reference(withRows(xlRef.clipL, tl!), p.ids, 1, { heads: xl.clip.heads, quickGelu: true, clipSkip: 2, finalNorm: false }));
    measured.sdxlBigG = relativeError(g.hidden, reference(withRows(xlRef.bigG, tg!), p.ids, 1, { heads: xl.clip2.heads, quickGelu: false, clipSkip: 2, finalNorm: false }));
    measured.sdxlPooled = relativeError(g.pooled!, referencePooled(withRows(xlRef.bigG, tg!), p.ids, 1, xl.clip2.heads, tokenizer.eos));
    expect(measured.sdxlClipL).toBeLessThan(1e-4);
    expect(measured.sdxlBigG).toBeLessThan(1e-4);
    expect(measured.sdxlPooled).toBeLessThan(1e-4);
  });

  it('ids past the table, or a table that is not whole vectors, are refused before any compute', async () => {
    const ids = encodePrompt(tokenizer, 'a cat').ids;
    ids[2] = VOCAB + 1;
    const params = { heads: sd1.clip.heads, quickGelu: true, clipSkip: 1 };
    await expect(sd1Native.encodeTokens(ids, 1, params).promise).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(sd1Native.encodeTokens(ids, 1, { ...params, embeddings: new Float32Array(W1) }).promise).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringMatching(/embedding vectors/),
    });
    await expect(sd1Native.encodeTokens(ids, 1, { ...params, embeddings: new Float32Array(W1 + 1) }).promise).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    // And the encoder still works.
    ids[2] = VOCAB;
    await expect(sd1Native.encodeTokens(ids, 1, { ...params, embeddings: new Float32Array(W1) }).promise).resolves.toBeDefined();
  });
});

describe('loadModel({ embeddingDir }): tokenize and generate', () => {
  let model: Model;
  let xlModel: Model;
  const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
  beforeAll(async () => {
    // Embeddings made of words' own token rows: they must condition exactly as the words do.
    mkdirSync(words);
    await writeSafetensors(join(words, 'redcat.safetensors'), [{ name: 'emb_params', data: wordRows(sd1Ref, 'red cat'), shape: [2, W1] }]);
    await writeSafetensors(join(words, 'xlredcat.safetensors'), [
      { name: 'clip_l', data: wordRows(xlRef.clipL, 'red cat'), shape: [2, WL] },
      { name: 'clip_g', data: wordRows(xlRef.bigG, 'red cat'), shape: [2, WG] },
    ]);
    for (const f of ['webuistyle.pt', 'embstyle.safetensors', 'widestyle.safetensors', 'xlstyle.safetensors']) writeFileSync(join(words, f), readFileSync(join(embd, f)));
    model = await loadModel(sd1Path, { ...cpu, embeddingDir: words });
    xlModel = await loadModel(xlPath, { ...cpu, embeddingDir: words });
  }, 60_000);
  afterAll(async () => {
    await model?.dispose();
    await xlModel?.dispose();
  });

  it('embeddingDir is checked as a path before anything loads; a missing folder rejects the load', async () => {
    expect(() => loadModel(sd1Path, { ...cpu, embeddingDir: 5 as unknown as string })).toThrow(TypeError);
    await expect(loadModel(sd1Path, { ...cpu, embeddingDir: join(dir, 'nowhere') })).rejects.toMatchObject({ code: 'ERR_FILE_ACCESS' });
  });

  it('tokenize() gives the placeholder ids, and with withText the embedding names', () => {
    const ids = model.tokenize('a webuistyle cat');
    expect(ids).toEqual([tokenizer.bos, tokenizer.encode('a')[0], VOCAB, VOCAB + 1, VOCAB + 2, tokenizer.encode('cat')[0], tokenizer.eos]);
    expect(model.tokenize('a webuistyle', { withText: true }).map((t) => t.text)).toEqual(['<|startoftext|>', 'a ', 'webuistyle', 'webuistyle', 'webuistyle', '<|endoftext|>']);
  });

  it('SD1: an embedding of the token rows of "red cat" generates the image of "red cat"', async () => {
    const words = await model.generate({ prompt: 'a red cat', ...small });
    const embedded = await model.generate({ prompt: 'a redcat', ...small });
    const other = await model.generate({ prompt: 'a webuistyle', ...small });
    expect(same(embedded.images[0]!.data, words.images[0]!.data)).toBe(true);
    expect(same(other.images[0]!.data, words.images[0]!.data)).toBe(false);
  }, 60_000);

  it('SDXL: clip_l and clip_g rows of "red cat" generate the image of "red cat" (both tables, pooled vector included)', async () => {
    const words = await xlModel.generate({ prompt: 'a red cat', ...small });
    const embedded = await xlModel.generate({ prompt: 'a xlredcat', ...small });
    const other = await xlModel.generate({ prompt: 'a xlstyle', ...small });
    expect(same(embedded.images[0]!.data, words.images[0]!.data)).toBe(true);
    expect(same(other.images[0]!.data, words.images[0]!.data)).toBe(false);
  }, 120_000);

  it('the CLI: --embd-dir as stable-diffusion.cpp names it, the same image as the library', async () => {
    const root = resolve(import.meta.dirname, '..');
    execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'ignore' });
    const out = join(dir, 'cli.png');
    const args = ['-m', sd1Path, '-p', 'a redcat', '-W', '64', '-H', '64', '--steps', '2', '--sampling-method', 'euler', '--cfg-scale', '5', '-s', '11'];
    const r = spawnSync(process.execPath, [join(root, 'dist', 'cli.js'), 'generate', ...args, '--embd-dir', words, '-o', out, '--device', 'cpu', '-t', '2'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { data } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    const lib = await model.generate({ prompt: 'a red cat', ...small });
    expect(same(new Uint8Array(data), lib.images[0]!.data)).toBe(true);
    const missing = spawnSync(process.execPath, [join(root, 'dist', 'cli.js'), 'generate', ...args, '--embd-dir', join(dir, 'nowhere'), '-o', out, '--device', 'cpu'], { encoding: 'utf8' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/cannot read embeddingDir/);
  }, 120_000);

  it('an embedding that fits no encoder: ModelCompatibilityError naming both widths; the model goes on', async () => {
    await expect(model.generate({ prompt: 'a widestyle', ...small })).rejects.toThrow(ModelCompatibilityError);
    await expect(model.generate({ prompt: 'a widestyle', ...small })).rejects.toThrow(new RegExp(`768-wide vectors; this model's text encoder takes ${W1}`));
    expect(() => model.tokenize('widestyle')).toThrow(ModelCompatibilityError);
    await expect(model.generate({ prompt: 'a xlstyle', ...small })).rejects.toThrow(new RegExp(`clip_l ${WL} \\+ clip_g ${WG} wide\\); this model's text encoders take ${W1}`));
    await expect(xlModel.generate({ prompt: 'a webuistyle', ...small })).rejects.toThrow(new RegExp(`${W1}-wide vectors; this model's text encoders take ${WL} \\+ ${WG}`));
    const after = await model.generate({ prompt: 'a webuistyle', ...small });
    expect(after.images).toHaveLength(1);
  }, 60_000);
});

describe('bad embedding files: coded errors, no crash', () => {
  const target = [W1];
  const bad = join(dir, 'bad');
  beforeAll(() => mkdirSync(bad));

  it('a truncated file: ModelFormatError', () => {
    const whole = readFileSync(join(embd, 'embstyle.safetensors'));
    for (const [name, bytes] of [['cut', whole.subarray(0, whole.length - 10)], ['header', whole.subarray(0, 20)], ['empty', Buffer.alloc(0)]] as const) {
      writeFileSync(join(bad, `${name}.safetensors`), bytes);
      expect(() => readEmbedding(name, join(bad, `${name}.safetensors`), target)).toThrow(ModelFormatError);
    }
    const pt = readFileSync(join(embd, 'webuistyle.pt'));
    writeFileSync(join(bad, 'cut.pt'), pt.subarray(0, pt.length >> 1));
    expect(() => readEmbedding('cut', join(bad, 'cut.pt'), target)).toThrow(ModelFormatError);
  });

  it('a .pt whose pickle would run code (os.system): ModelFormatError, nothing run', async () => {
    const marker = join(bad, 'ran');
    const p = new PickleWriter().raw(op.PROTO, 2).global('os', 'system').raw(op.MARK).str(`touch ${marker}`).raw(op.TUPLE, op.REDUCE, op.STOP);
    await writeTorchPickle(join(bad, 'evil.pt'), Uint8Array.from(p.bytes), []);
    expect(() => readEmbedding('evil', join(bad, 'evil.pt'), target)).toThrow(ModelFormatError);
    expect(() => readFileSync(marker)).toThrow();
  });

  it('files that hold no embedding: several tensors, NaN, too many vectors, a 3-D tensor, one of clip_l/clip_g', () => {
    const t = (name: string, shape: number[], fill = 0.1) => ({ name, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill) });
    expect(() => fitEmbedding('x', 'x', [t('a', [1, W1]), t('b', [1, W1])], target)).toThrow(/needs one vector tensor/);
    expect(() => fitEmbedding('x', 'x', [], target)).toThrow(/no floating-point tensor/);
    expect(() => fitEmbedding('x', 'x', [t('emb_params', [1, W1], NaN)], target)).toThrow(/not finite/);
    expect(() => fitEmbedding('x', 'x', [t('emb_params', [76, W1])], target)).toThrow(/at most 75/);
    expect(() => fitEmbedding('x', 'x', [t('emb_params', [1, 2, W1])], target)).toThrow(ModelFormatError);
    expect(() => fitEmbedding('x', 'x', [t('clip_l', [1, WL])], [WL, WG])).toThrow(/needs both clip_l and clip_g/);
    expect(() => fitEmbedding('x', 'x', [t('clip_l', [1, WL]), t('clip_g', [2, WG])], [WL, WG])).toThrow(/clip_l holds 1 vectors, clip_g 2/);
    // One string_to_param entry wins over other tensors (webui).
    expect(fitEmbedding('x', 'x', [t('string_to_param.*', [2, W1]), t('other', [3])], target).vectors).toBe(2);
    // A single vector ([width]) is one vector.
    expect(fitEmbedding('x', 'x', [t('emb_params', [W1])], target).vectors).toBe(1);
  });

  it('a file past the size cap is refused before it is read', () => {
    const big = join(bad, 'big.safetensors');
    writeFileSync(big, Buffer.alloc(8 * 1024 * 1024 + 1));
    expect(() => readEmbedding('big', big, target)).toThrow(/an embedding file has at most/);
  });
});
