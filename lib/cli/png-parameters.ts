/**
 * stable-diffusion-webui's generation parameters ("infotext") in PNG text chunks: written by
 * `sdnode generate`, read back by anything that reads the webui's (the webui's PNG Info tab,
 * ComfyUI's loaders, civitai, sd.cpp's metadata mode) and by `readPngParameters` here.
 *
 * The PNG bytes come from sharp, which has no way to add arbitrary text chunks; the chunks are
 * split and re-joined with png-chunks-extract / png-chunks-encode (tiny, dependency-light, and
 * they recompute each chunk's CRC), and a Latin-1 text becomes a tEXt chunk with png-chunk-text.
 * A text outside Latin-1 goes into an uncompressed iTXt chunk (UTF-8), as the webui's writer
 * (PIL's PngInfo.add_text) does; png-chunk-text has no iTXt, so that chunk is built here.
 */
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';

import encodeChunks from 'png-chunks-encode';
import extractChunks from 'png-chunks-extract';
import { encode as encodeText } from 'png-chunk-text';

/** The webui's key for the infotext chunk. */
export const PARAMETERS_KEY = 'parameters';

export interface GenerationParameters {
  prompt: string;
  /** '' when the infotext has no "Negative prompt:" line. */
  negativePrompt: string;
  /** The last line's `Key: value` pairs, in order, values unquoted (e.g. { Steps: '20', Size: '512x512' }). */
  fields: Record<string, string>;
}

/** The webui's quoting (infotext_utils.quote): a value holding `,`, `:` or a newline becomes a JSON string. */
function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

/**
 * The infotext exactly as the webui's create_infotext lays it out: the prompt, a "Negative
 * prompt:" line when there is one, then `Key: value` pairs joined by ", " in the order given
 * (undefined values left out), the whole trimmed.
 */
export function formatParameters(prompt: string, negativePrompt: string, fields: Array<[string, string | number | undefined]>): string {
  const pairs = fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${quote(String(v))}`);
  const negative = negativePrompt ? `\nNegative prompt: ${negativePrompt}` : '';
  return `${prompt}${negative}\n${pairs.join(', ')}`.trim();
}

// One `Key: value` pair of the last line, as the webui's parser (re_param) matches them: a key
// of word characters, spaces, '-' and '/', then a quoted string or anything up to the next comma.
const PAIR = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

/** Parses an infotext as the webui's parse_generation_parameters does (prompt lines, negative prompt lines, last-line fields). */
export function parseParameters(text: string): GenerationParameters {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  // A last line with fewer than 3 pairs is part of the prompt (the webui's rule).
  if ([...last.matchAll(PAIR)].length < 3) {
    lines.push(last);
    last = '';
  }
  let prompt = '', negativePrompt = '', inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice('Negative prompt:'.length).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt ? '\n' : '') + line;
    else prompt += (prompt ? '\n' : '') + line;
  }
  const fields: Record<string, string> = {};
  for (const [, key, raw] of last.matchAll(PAIR)) {
    let value = raw!;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // Not valid JSON: keep it as written, as the webui does when unquoting fails.
      }
    }
    fields[key!] = value;
  }
  return { prompt, negativePrompt, fields };
}

const LATIN1 = /^[\x01-\xff]*$/;

/** An uncompressed iTXt chunk: keyword, NUL, compression flag 0, method 0, empty language tag and translated keyword, UTF-8 text. */
function internationalText(keyword: string, text: string): { name: string; data: Uint8Array } {
  const head = Buffer.from(`${keyword}\0\0\0\0\0`, 'latin1');
  return { name: 'iTXt', data: Buffer.concat([head, Buffer.from(text, 'utf8')]) };
}

/**
 * Returns `png` with a text chunk `keyword` = `text` inserted before the first IDAT (where
 * readers that stop at the image data still see it): tEXt when the text is Latin-1 without
 * NULs, otherwise iTXt. Throws on a buffer that is not a PNG.
 */
export function addPngText(png: Uint8Array, keyword: string, text: string): Uint8Array {
  const chunks = extractChunks(png);
  const chunk = LATIN1.test(text) ? encodeText(keyword, text) : internationalText(keyword, text);
  const at = chunks.findIndex((c) => c.name === 'IDAT');
  chunks.splice(at < 0 ? chunks.length - 1 : at, 0, chunk);
  return encodeChunks(chunks);
}

/** Every tEXt, zTXt and iTXt chunk of a PNG as keyword → text (a later chunk with the same keyword wins). */
export function pngTextChunks(png: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { name, data } of extractChunks(png)) {
    if (name !== 'tEXt' && name !== 'zTXt' && name !== 'iTXt') continue;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
    const nul = bytes.indexOf(0);
    if (nul <= 0) continue;
    const keyword = bytes.toString('latin1', 0, nul);
    try {
      if (name === 'tEXt') {
        out[keyword] = bytes.toString('latin1', nul + 1);
      } else if (name === 'zTXt') {
        // keyword NUL method(0 = deflate) compressed-text
        out[keyword] = inflateSync(bytes.subarray(nul + 2)).toString('latin1');
      } else {
        // keyword NUL flag method language NUL translated-keyword NUL text
        const compressed = bytes[nul + 1] === 1;
        const language = bytes.indexOf(0, nul + 3);
        const translated = language < 0 ? -1 : bytes.indexOf(0, language + 1);
        if (translated < 0) continue;
        const body = bytes.subarray(translated + 1);
        out[keyword] = (compressed ? inflateSync(body) : body).toString('utf8');
      }
    } catch {
      // A damaged text chunk is skipped, as image viewers do.
    }
  }
  return out;
}

/**
 * The webui `parameters` of a PNG file, parsed; undefined when it has none. Rejects when the
 * file cannot be read or is not a PNG.
 */
export async function readPngParameters(path: string): Promise<GenerationParameters | undefined> {
  const text = pngTextChunks(await readFile(path))[PARAMETERS_KEY];
  return text === undefined ? undefined : parseParameters(text);
}
