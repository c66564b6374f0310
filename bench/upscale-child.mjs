// One sdnode upscale in its own process, for bench/upscale-common.mjs' timings and peak RSS:
//   node bench/upscale-child.mjs MODEL IN.png OUT.png TILE OVERLAP THREADS f32|f16
import { loadUpscaler, readImage, writeImage } from '../dist/index.js';

const [model, input, output, tile, overlap, threads, weightType] = process.argv.slice(2);
const upscaler = await loadUpscaler(model, { device: 'cpu', threads: Number(threads), weightType });
const t0 = performance.now();
const image = await upscaler.upscale(await readImage(input), { tile: Number(tile), tileOverlap: Number(overlap) });
console.log(JSON.stringify({ upscaleMs: performance.now() - t0 }));
await writeImage(output, image);
await upscaler.dispose();
