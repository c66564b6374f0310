#!/usr/bin/env node
// TAEF2 encode/decode benchmark: time per job, event-loop lag while jobs run, peak RSS,
// and PSNR, for f32 and f16 weights. Run after `npm install`: `npm run bench`.
// Options: --image NAME (in ../shared/data/images), --repeat N, --device ID.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadAutoencoder, readImage, systemInfo } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    image: { type: 'string', default: 'astronaut.png' },
    repeat: { type: 'string', default: '3' },
    device: { type: 'string', default: 'cpu' },
    data: { type: 'string', default: process.env.SDNODE_SHARED_DATA ?? resolve(here, '..', '..', 'shared', 'data') },
  },
});
const repeat = Number(values.repeat);

function crop8(img) {
  const w = img.width - (img.width % 8), h = img.height - (img.height % 8);
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) data.set(img.data.subarray(y * img.width * 3, (y * img.width + w) * 3), y * w * 3);
  return { width: w, height: h, channels: 3, data };
}
function psnr(a, b) {
  let se = 0;
  for (let i = 0; i < a.data.length; i++) { const d = a.data[i] - b.data[i]; se += d * d; }
  return 10 * Math.log10((255 * 255) / (se / a.data.length));
}
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

const info = systemInfo();
console.log(`sdnode bench: ggml ${info.ggmlVersion}, backends ${info.backends.join(',')}, device ${values.device}`);
console.log(`cpu features: ${Object.keys(info.cpuFeatures).join(' ')}`);
const image = crop8(await readImage(join(values.data, 'images', values.image)));
console.log(`image ${values.image} cropped to ${image.width}x${image.height}, ${repeat} runs each\n`);

let peakRss = process.memoryUsage().rss;
const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 5);

for (const weightType of ['f32', 'f16']) {
  const tae = await loadAutoencoder(
    { encoder: join(values.data, 'tae', 'taef2_encoder.pth'), decoder: join(values.data, 'tae', 'taef2_decoder.pth') },
    { device: values.device, weightType },
  );
  const enc = [], dec = [];
  const lag = monitorEventLoopDelay({ resolution: 1 });
  let out, latent;
  lag.enable();
  for (let i = 0; i < repeat; i++) {
    let t = performance.now();
    latent = await tae.encode(image);
    enc.push(performance.now() - t);
    t = performance.now();
    out = await tae.decode(latent);
    dec.push(performance.now() - t);
  }
  lag.disable();
  await tae.dispose();
  console.log(`${weightType}: encode ${median(enc).toFixed(0)} ms, decode ${median(dec).toFixed(0)} ms (median), ` +
    `PSNR ${psnr(image, out).toFixed(2)} dB, event-loop lag max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`);
}
clearInterval(rssTimer);
console.log(`peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
