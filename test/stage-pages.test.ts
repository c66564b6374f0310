// Weights used in place from the file's memory map (the CPU, stored types) leave the process's
// resident set as each stage of a job is done with its network: while the UNet samples, the
// text encoder's pages are gone and the UNet's are in; after the job none of the three
// networks' pages are resident (they stay in the page cache); the next job faults them back in
// and makes the same image. Read from /proc/self/smaps (Linux).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-stage-pages-'));
const path = join(dir, 'model.safetensors');
let model: Model;

/** Resident bytes of this process's mappings of `file`. */
function residentBytes(file: string): number {
  let total = 0, inFile = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) inFile = mapping[1] === file;
    else if (inFile && line.startsWith('Rss:')) total += Number(/(\d+) kB/.exec(line)![1]) * 1024;
  }
  return total;
}

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  model = await loadModel(path, { device: 'cpu', threads: 2 });
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux')('network pages per stage', () => {
  it('in while their network runs, out once it is done; the next job makes the same image', async () => {
    const bytes = (prefix: string) => model.weights().filter((w) => w.name.startsWith(prefix) && w.mapped).reduce((s, w) => s + w.bytes, 0);
    const unet = bytes('model.diffusion_model.'), text = bytes('cond_stage_model.'), vae = bytes('first_stage_model.');
    expect(unet).toBeGreaterThan(0);
    expect(text).toBeGreaterThan(0);
    // The file's header (53 KB here) and pages a weight outside the networks shares stay.
    const slack = 256 * 1024;
    const job = { prompt: 'a lovely cat', width: 128, height: 128, steps: 12, seed: 1, sampler: 'euler' as const };
    const duringSampling: number[] = [];
    const first = await model.generate({ ...job, onProgress: (p) => { if (p.step < p.steps) duringSampling.push(residentBytes(path)); } });
    // Progress events arrive while the job goes on (most while the next step runs, the UNet's
    // pages in and the text encoder's out; a late one may see sampling over): some saw that.
    const sampling = duringSampling.filter((r) => r > 0.9 * unet);
    expect(sampling.length).toBeGreaterThan(0);
    for (const r of sampling) expect(r).toBeLessThan(unet + vae + slack);
    expect(residentBytes(path)).toBeLessThan(slack);
    const second = await model.generate(job);
    expect(Buffer.compare(Buffer.from(second.images[0]!.data), Buffer.from(first.images[0]!.data))).toBe(0);
    expect(residentBytes(path)).toBeLessThan(slack);
  });
});
