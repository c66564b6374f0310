/**
 * `sdnode generate`: text-to-image, image-to-image (-i) and inpainting (-i with --mask) from
 * flags named as stable-diffusion.cpp's CLI names them, writing PNGs that carry the webui's
 * `parameters` chunk.
 */
import { basename } from 'node:path';

import { Command, InvalidArgumentError, Option } from 'commander';

import {
  PREVIEW_INTERVAL,
  SAMPLERS,
  SCHEDULERS,
  UPSCALE_TILE,
  WEIGHT_TYPES,
  loadModel,
  readImage,
  type GenerateOptions,
  type GenerateResult,
  type Image,
  type Model,
  type ModelComponents,
  type Progress,
  type Sampler,
  type Scheduler,
  type Upscaler,
} from '../index.js';
import { defaultScheduler } from '../samplers.js';
import { jsonSeed, number, seed as parseSeed } from './args.js';
import { EXIT, EXIT_CODES_HELP, UsageError, classify, reportFailure } from './exit.js';
import { hiresInfotext, infotext } from './infotext.js';
import { loraHashesField } from '../lora-hash.js';
import { taggedLoras } from './loras.js';
import { Interrupt } from './interrupt.js';
import { checkNumericFlags } from './generate-checks.js';
import { checkHiresFlags, cliHires, type HiresFlags } from './hires.js';
import { CLI_CONTROL_STRENGTH, checkControlNetFlags, cliControlNets, controlNetSettings, type ControlNetFlags } from './controlnet.js';
import { TEMPLATE_HELP, encodeImage, imageFormat, outputPaths, prepareOutputs, writeAll } from './output.js';
import { PreviewWriter } from './preview.js';
import { ProgressReporter, progressMode } from './progress.js';
import { checkUpscaleFlags, loadCliUpscaler, parseMode, runUpscale, upscaleSettings, type UpscaleFlags } from './upscale.js';
import { packageVersion } from './version.js';

/** The CLI's defaults, passed to the library explicitly so that the PNG states what was used. */
export const DEFAULTS = {
  output: 'output.png',
  steps: 20,
  cfgScale: 7,
  sampler: 'euler_a' as Sampler,
  // stable-diffusion.cpp's default: the same command gives the same image; -s -1 for a random seed.
  seed: 42,
  batchCount: 1,
  rng: 'cuda' as const,
  strength: 0.75,
  maskBlur: 4,
  previewPath: 'preview.png',
};

/** Library option (and model component) names → the flags that set them, for error messages. */
export const GENERATE_FLAGS: Record<string, string> = {
  prompt: '--prompt',
  negativePrompt: '--negative-prompt',
  width: '--width',
  height: '--height',
  steps: '--steps',
  cfgScale: '--cfg-scale',
  sampler: '--sampling-method',
  scheduler: '--scheduler',
  seed: '--seed',
  rng: '--rng',
  batchCount: '--batch-count',
  clipSkip: '--clip-skip',
  prediction: '--prediction',
  initImage: '--init-img',
  strength: '--strength',
  mask: '--mask',
  maskBlur: '--mask-blur',
  preview: '--preview',
  previewInterval: '--preview-interval',
  vaeTiling: '--vae-tiling',
  threads: '--threads',
  weightType: '--type',
  model: '--model',
  unet: '--diffusion-model',
  textEncoder: '--clip_l',
  vae: '--vae',
  tae: '--taesd',
  embeddingDir: '--embd-dir',
  loraDir: '--lora-model-dir',
  upscale: '--upscale-model',
  hires: '--hires',
};

interface Flags extends UpscaleFlags, ControlNetFlags, HiresFlags {
  model?: string;
  diffusionModel?: string;
  clip_l?: string;
  vae?: string;
  taesd?: string;
  taesdPreviewOnly?: boolean;
  embdDir?: string;
  loraModelDir?: string;
  prompt: string;
  negativePrompt: string;
  output: string;
  width?: number;
  height?: number;
  steps: number;
  cfgScale: number;
  samplingMethod: Sampler;
  scheduler?: Scheduler;
  seed: number | bigint;
  batchCount: number;
  initImg?: string;
  mask?: string;
  strength?: number;
  maskBlur?: number;
  type?: (typeof WEIGHT_TYPES)[number];
  rng: 'cuda' | 'cpu';
  clipSkip?: number;
  prediction?: 'epsilon' | 'v';
  preview: 'none' | 'latent2rgb' | 'tae';
  previewPath: string;
  previewInterval?: number;
  vaeTiling?: boolean;
  threads?: number;
  device?: string;
  json?: boolean;
}


/** A commander parser accepting `allowed` (and `aliases` → their meaning), case-insensitively. */
function oneOf<T extends string>(allowed: readonly T[], aliases: Record<string, T> = {}): (value: string) => T {
  return (value) => {
    const v = value.trim().toLowerCase();
    if ((allowed as readonly string[]).includes(v)) return v as T;
    const alias = aliases[v];
    if (alias) return alias;
    throw new InvalidArgumentError(`Allowed choices are ${[...allowed, ...Object.keys(aliases)].join(', ')}.`);
  };
}

/** Seed of image i of a batch: seed + i, as the library assigns them. */
function seedOf(seed: number | bigint, i: number): number | bigint {
  const s = BigInt(seed) + BigInt(i);
  return typeof seed === 'number' && s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

/** The webui's "Model": the checkpoint file's (or diffusers folder's) name without its extension. */
function modelName(path: string): string {
  return basename(path.replace(/[/\\]+$/, '')).replace(/\.(safetensors|ckpt|pt|pth|bin|gguf)$/i, '');
}

export function generateCommand(): Command {
  const d = DEFAULTS;
  return new Command('generate')
    .description('text-to-image, image-to-image (-i) and inpainting (-i with --mask); writes PNGs with the webui\'s parameters')
    .option('-m, --model <path>', 'model: a checkpoint (.safetensors, .ckpt, .gguf) or a diffusers folder')
    .option('--diffusion-model <path>', 'a standalone UNet file (replaces the model\'s)')
    .option('--clip_l <path>', 'a standalone CLIP text encoder file (replaces the model\'s)')
    .option('--vae <path>', 'a standalone VAE file (replaces the model\'s)')
    .option('--taesd <path>', 'a TAESD decoder (taesd_decoder.pth): decode with it, fast and approximate')
    .option('--taesd-preview-only', 'use --taesd for --preview tae only, not for the final decode')
    .option('--embd-dir <path>', 'textual-inversion embeddings: a prompt word equal to a file name there (without extension) uses it')
    .option('--lora-model-dir <path>', 'LoRAs (.safetensors, .gguf, .pt, .ckpt) that <lora:name:weight> in the prompt names, by file name without extension')
    .option('-p, --prompt <text>', 'prompt (webui syntax: (word:1.2), [word], BREAK, <lora:name:weight>)', '')
    .option('-n, --negative-prompt <text>', 'negative prompt', '')
    .option('-o, --output <path>', `output file (.png, .jpg, .webp); a batch writes name_1.png, name_2.png, …, or fills a template: ${TEMPLATE_HELP}`, d.output)
    .option('-W, --width <px>', 'image width, a multiple of the model\'s size step: 64 for SD1.x (default: 512, or the init image\'s)', number)
    .option('-H, --height <px>', 'image height, a multiple of the model\'s size step (default: 512, or the init image\'s)', number)
    .option('--steps <n>', 'sampling steps', number, d.steps)
    .option('--cfg-scale <x>', 'classifier-free guidance scale (1 skips the unconditional pass)', number, d.cfgScale)
    .addOption(new Option('--sampling-method <name>', `sampler: ${SAMPLERS.join(', ')}`).argParser(oneOf(SAMPLERS)).default(d.sampler))
    .addOption(
      new Option('--scheduler <name>', `sigma schedule: ${SCHEDULERS.join(', ')} (normal = discrete; default: the sampler's own, discrete for most)`)
        .argParser(oneOf(SCHEDULERS, { normal: 'discrete' })),
    )
    .option('-s, --seed <n>', 'seed, 0 … 2^64−1; negative: a random one', parseSeed, d.seed)
    .option('-b, --batch-count <n>', 'images to make; image i uses seed + i', number, d.batchCount)
    .option('-i, --init-img <path>', 'image-to-image: the image to start from')
    .option('--mask <path>', 'inpainting: white = repaint, black = keep (needs -i)')
    .option('--strength <x>', `image-to-image: how much is redrawn, 0–1 (default: ${d.strength})`, number)
    .option('--mask-blur <px>', `inpainting: softening of the mask's edge, 0–64 pixels (default: ${d.maskBlur})`, number)
    .addOption(new Option('--type <type>', `weight type on load (default: as stored): ${WEIGHT_TYPES.join(', ')}`).argParser(oneOf(WEIGHT_TYPES)))
    .addOption(new Option('--rng <name>', 'noise generator: cuda (the webui\'s GPU seeds), cpu (ComfyUI\'s)').argParser(oneOf(['cuda', 'cpu'] as const)).default(d.rng))
    .option('--clip-skip <n>', 'text encoder layers to skip from the end: 1 none, 2 the last (default: 1 for SD1.x, 2 for SD2.x; ≤ 0 the default)', number)
    .addOption(new Option('--prediction <type>', 'what the UNet predicts: eps, v (default: detected)').argParser(oneOf(['epsilon', 'v'] as const, { eps: 'epsilon' })))
    .addOption(
      new Option('--preview <method>', 'live previews: none, proj (latent projection, nearly free), tae (needs --taesd)')
        .argParser(oneOf(['none', 'latent2rgb', 'tae'] as const, { proj: 'latent2rgb' }))
        .default('none'),
    )
    .option('--preview-path <path>', 'where previews are written', d.previewPath)
    .option('--preview-interval <n>', `steps between previews (default: ${PREVIEW_INTERVAL.latent2rgb} for proj, ${PREVIEW_INTERVAL.tae} for tae)`, number)
    .option('--vae-tiling', 'run the VAE in tiles (less memory); default: only when an untiled pass would not fit')
    .option('--no-vae-tiling', 'never tile the VAE')
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', number)
    .option('--device <id>', "device: auto, cpu, cuda:0, vulkan:0, metal (see 'sdnode devices')", 'auto')
    .addOption(new Option('-M, --mode <mode>', 'img_gen (default): make images; upscale: only upscale -i with --upscale-model').argParser(parseMode).default('img_gen'))
    .option('--upscale-model <path>', 'ESRGAN (RRDBNet) weights, .pth/.safetensors/.gguf: upscale every image after decoding (or -i with -M upscale)')
    .option('--upscale-repeats <n>', 'run the ESRGAN upscaler this many times, 1–4', number, 1)
    .option('--upscale-tile-size <px>', `tile size for ESRGAN upscaling, 16–4096 (0: untiled)`, number, UPSCALE_TILE)
    .option('--control-net <path>', 'ControlNet weights (.pth/.safetensors/.gguf or a diffusers controlnet/ folder) for the model')
    .option('--control-image <path>', 'the ControlNet\'s hint image (stretched to the output size), with --control-net')
    .option('--control-strength <x>', `the ControlNet's strength, 0–2 (default: ${CLI_CONTROL_STRENGTH})`, number)
    .option('--canny', 'use the Canny edges of --control-image as the hint (sdnode\'s OpenCV-style Canny)')
    .option('--hires', 'hires fix: make the image at -W × -H, enlarge it, then refine it with an image-to-image pass')
    .option('--hires-scale <x>', 'hires fix: target = size × this, > 1 (default: 2)', number)
    .option('--hires-width <px>', 'hires fix: target width (0: from --hires-scale)', number)
    .option('--hires-height <px>', 'hires fix: target height (0: from --hires-scale)', number)
    .option('--hires-steps <n>', 'hires fix: second-pass steps (0: --steps)', number)
    .option('--hires-denoising-strength <x>', 'hires fix: second-pass strength, (0, 1] (default: 0.7)', number)
    .option('--hires-upscaler <name>', 'hires fix: Latent (default), Latent (nearest), Latent (nearest-exact), Latent (antialiased), Latent (bicubic), Latent (bicubic antialiased), Lanczos, Nearest, or an ESRGAN file')
    .option('--json', 'print one JSON summary on stdout, no progress')
    .addHelpText('after', `
Examples:
  sdnode generate -m v1-5-pruned-emaonly.safetensors -p "a lovely cat" -o cat.png
  sdnode generate -m model.safetensors -p "a castle" -i photo.png --strength 0.6
  sdnode generate -m model.safetensors -p "a red hat" -i photo.png --mask mask.png -b 4 -o hat.png
  sdnode generate -m model.safetensors -p "a castle <lora:watercolor:0.8>" --lora-model-dir loras/
  sdnode generate -m model.safetensors -p "a harbour" --upscale-model RealESRGAN_x4plus.pth
  sdnode generate -M upscale --upscale-model RealESRGAN_x4plus.pth -i photo.png -o photo_x4.png
  sdnode generate -m model.safetensors -p "a house" --control-net control_v11p_sd15_canny.pth --control-image photo.png --canny
  sdnode generate -m model.safetensors -p "a lighthouse" --hires --hires-scale 2 --hires-steps 10

Progress goes to stderr: a bar on a terminal, one line per step otherwise, none with --json.
Ctrl-C stops the job; no output file is written.

Output files: -o and --preview-path are checked before the model loads. Each must be a regular
file or not exist yet: a directory, FIFO, socket or device (/dev/null) is refused and never
replaced (ERR_OUTPUT_PATH), as is a symlink pointing out of its folder; a symlink to a file in
its own folder writes that file. Files are written whole or not at all (a temporary file beside
them, renamed into place). In -o, %d (or %02d … %09d: at most 9 digits) is the image number and
%% a literal %; any other % sequence is refused.

${EXIT_CODES_HELP}`)
    .action(async (flags: Flags) => {
      process.exitCode = await runGenerate(flags);
    });
}

async function runGenerate(f: Flags): Promise<number> {
  if (f.mode === 'upscale') return runUpscale(f);
  const json = Boolean(f.json);
  const mode = progressMode(json);
  const interrupt = new Interrupt();
  const loading = new ProgressReporter(mode, 'loading', { unit: 'tensor' });
  const sampling = new ProgressReporter(mode, 'sampling');
  interrupt.onInterrupt(() => {
    loading.done();
    sampling.done();
  });
  const started = performance.now();
  let model: Model | undefined;
  let upscaler: Upscaler | undefined;
  let hiresUpscaler: Upscaler | undefined;
  try {
    if (!f.model && !f.diffusionModel) throw new UsageError('give the model with -m/--model <file or folder>');
    const format = imageFormat(f.output);
    if (f.mask && !f.initImg) throw new UsageError('--mask needs -i/--init-img (the image to inpaint)');
    if (f.strength !== undefined && !f.initImg) throw new UsageError('--strength applies to image-to-image: give -i/--init-img');
    if (f.maskBlur !== undefined && !f.mask) throw new UsageError('--mask-blur applies to inpainting: give --mask');
    if (f.preview === 'tae' && !f.taesd) throw new UsageError('--preview tae needs a TAESD decoder: --taesd <file>');
    if (f.taesdPreviewOnly && !f.taesd) throw new UsageError('--taesd-preview-only needs --taesd <file>');
    // Everything that can be refused is refused here, before any file is read or the model loads.
    checkNumericFlags(f);
    if (f.upscaleModel) checkUpscaleFlags(f);
    checkControlNetFlags(f);
    checkHiresFlags(f);
    const paths = outputPaths(f.output, f.batchCount);
    for (const path of paths) imageFormat(path);
    if (f.preview !== 'none') imageFormat(f.previewPath, '--preview-path');
    const targets = await prepareOutputs(paths);
    const previews = f.preview === 'none' ? undefined : new PreviewWriter(f.previewPath, (await prepareOutputs([f.previewPath], '--preview-path'))[0]);

    const initImage: Image | undefined = f.initImg ? await readImage(f.initImg) : undefined;
    const mask: Image | undefined = f.mask ? await readImage(f.mask) : undefined;
    const workflow = mask ? 'inpaint' : initImage ? 'img2img' : 'txt2img';
    // Found now, so that a misspelt name fails before the model loads; hashed while it loads.
    const tagged = taggedLoras(f.prompt, f.loraModelDir);
    const loraHashes = loraHashesField(tagged);
    loraHashes.catch(() => {});  // a failure reaches the catch below when awaited

    const source: ModelComponents = {
      ...(f.model ? { model: f.model } : {}),
      ...(f.diffusionModel ? { unet: f.diffusionModel } : {}),
      ...(f.clip_l ? { textEncoder: f.clip_l } : {}),
      ...(f.vae ? { vae: f.vae } : {}),
      ...(f.taesd ? { tae: f.taesd } : {}),
    };
    model = await loadModel(source, {
      device: f.device,
      ...(f.threads !== undefined ? { threads: f.threads } : {}),
      ...(f.type ? { weightType: f.type } : {}),
      ...(f.embdDir ? { embeddingDir: f.embdDir } : {}),
      ...(f.loraModelDir ? { loraDir: f.loraModelDir } : {}),
      signal: interrupt.signal,
      onProgress: loading.report,
    });
    if (f.upscaleModel) upscaler = await loadCliUpscaler(f, interrupt.signal);
    const controlNets = await cliControlNets(model, f, interrupt.signal);
    const hires = await cliHires(f, interrupt.signal);
    hiresUpscaler = hires.upscaler;
    const loadMs = performance.now() - started;
    loading.done();

    const taesd = Boolean(f.taesd) && !f.taesdPreviewOnly;
    const clipSkip = f.clipSkip !== undefined && f.clipSkip > 0 ? f.clipSkip : undefined;
    // Passed explicitly, so that the PNG states what ran.
    const scheduler = f.scheduler ?? defaultScheduler(f.samplingMethod);
    const options: GenerateOptions = {
      prompt: f.prompt,
      negativePrompt: f.negativePrompt,
      ...(f.width !== undefined ? { width: f.width } : {}),
      ...(f.height !== undefined ? { height: f.height } : {}),
      steps: f.steps,
      cfgScale: f.cfgScale,
      sampler: f.samplingMethod,
      scheduler,
      seed: f.seed,
      rng: f.rng,
      batchCount: f.batchCount,
      ...(clipSkip !== undefined ? { clipSkip } : {}),
      ...(f.prediction ? { prediction: f.prediction } : {}),
      vae: taesd ? 'tae' : 'full',
      ...(f.vaeTiling !== undefined ? { vaeTiling: f.vaeTiling } : {}),
      ...(initImage ? { initImage, strength: f.strength ?? DEFAULTS.strength } : {}),
      ...(mask ? { mask, maskBlur: f.maskBlur ?? DEFAULTS.maskBlur } : {}),
      ...(previews ? { preview: f.preview, ...(f.previewInterval !== undefined ? { previewInterval: f.previewInterval } : {}) } : {}),
      ...(upscaler ? { upscale: { upscaler, ...upscaleSettings(f) } } : {}),
      ...controlNets,
      ...hires.option,
      signal: interrupt.signal,
      onProgress: (p: Progress) => {
        sampling.report(p);
        if (p.preview) previews?.offer(p.preview);
      },
    };
    const result = await model.generate(options);
    sampling.done();
    await previews?.settle();

    const writeStart = performance.now();
    if (result.images.length !== paths.length) throw new Error(`expected ${paths.length} images, got ${result.images.length}`);
    const name = modelName(f.model ?? f.diffusionModel!);
    const version = packageVersion();
    const loraHashesValue = await loraHashes;
    const images = result.images.map((image, i) => ({ image, path: paths[i]!, target: targets[i]!, seed: seedOf(result.seed, i) }));
    const files = await Promise.all(
      images.map(async ({ image, path, target, seed }) => ({
        path,
        target,
        data: await encodeImage(
          image,
          format,
          infotext({
            prompt: f.prompt,
            negativePrompt: f.negativePrompt,
            steps: f.steps,
            sampler: f.samplingMethod,
            scheduler,
            cfgScale: f.cfgScale,
            seed,
            // With the hires fix the webui's Size is the first pass's.
            width: hires.option.hires ? f.width ?? 512 : image.width,
            height: hires.option.hires ? f.height ?? 512 : image.height,
            model: name,
            ...(f.vae ? { vae: basename(f.vae) } : {}),
            taesd,
            ...(options.strength !== undefined ? { strength: options.strength } : {}),
            ...hiresInfotext(hires.option.hires, image, f.hiresUpscaler),
            ...(clipSkip !== undefined ? { clipSkip } : {}),
            rng: f.rng,
            ...(options.maskBlur !== undefined ? { maskBlur: options.maskBlur } : {}),
            ...(loraHashesValue !== undefined ? { loraHashes: loraHashesValue } : {}),
            version,
          }),
        ),
      })),
    );
    await writeAll(files, interrupt);
    const writeMs = performance.now() - writeStart;
    const totalMs = performance.now() - started;

    if (json) {
      const timings = { loadMs, ...result.timings, writeMs, totalMs };
      const summary = jsonSummary(f, { workflow, source, options, model, images, seed: result.seed, loras: result.loras, previews, timings });
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    } else {
      // What the webui would only log: a LoRA made for another model changes nothing, silently.
      for (const l of result.loras) {
        const { unmatched, incompatible, tensors } = l.report;
        if (unmatched.length + incompatible.length > 0)
          sampling.note(`LoRA ${l.name}: ${unmatched.length} of ${tensors} tensors name no weight of this model, ${incompatible.length} module(s) do not fit; those parts were left out`);
      }
      for (const i of images) process.stdout.write(`${i.path}  (seed ${String(i.seed)}, ${i.image.width}x${i.image.height})\n`);
      sampling.note(
        `${workflow}: ${images.length} image${images.length === 1 ? '' : 's'} in ${(totalMs / 1000).toFixed(1)} s ` +
          `(load ${(loadMs / 1000).toFixed(1)} s, sampling ${(result.timings.samplingMs / 1000).toFixed(1)} s, ` +
          `decode ${(result.timings.decodeMs / 1000).toFixed(1)} s) on ${model.info.device}`,
      );
    }
    return EXIT.ok;
  } catch (err) {
    loading.done();
    sampling.done();
    return reportFailure('generate', classify(err, GENERATE_FLAGS), json);
  } finally {
    await model?.dispose().catch(() => undefined);
    await upscaler?.dispose().catch(() => undefined);
    await hiresUpscaler?.dispose().catch(() => undefined);
    interrupt.removeTemporary();
    interrupt.dispose();
  }
}

/** The --json summary of a generation. */
function jsonSummary(
  f: Flags,
  run: {
    workflow: string;
    source: ModelComponents;
    options: GenerateOptions;
    model: Model;
    images: Array<{ image: Image; path: string; seed: number | bigint }>;
    seed: number | bigint;
    loras: GenerateResult['loras'];
    previews: PreviewWriter | undefined;
    timings: Record<string, number>;
  },
) {
  const { options, model, images } = run;
  return {
    ok: true,
    command: 'generate',
    mode: run.workflow,
    files: images.map((i) => i.path),
    seed: jsonSeed(run.seed),
    seeds: images.map((i) => jsonSeed(i.seed)),
    images: images.map((i) => ({ file: i.path, seed: jsonSeed(i.seed), width: i.image.width, height: i.image.height })),
    // The prompt's LoRAs: file, weight and what of each fits the model (the library's report).
    loras: run.loras,
    ...(run.previews ? { preview: { file: f.previewPath, written: run.previews.written } } : {}),
    settings: {
      prompt: f.prompt,
      negativePrompt: f.negativePrompt,
      width: images[0]!.image.width,
      height: images[0]!.image.height,
      steps: f.steps,
      cfgScale: f.cfgScale,
      sampler: f.samplingMethod,
      scheduler: options.scheduler,
      rng: f.rng,
      batchCount: f.batchCount,
      clipSkip: options.clipSkip ?? null,
      // The library's default: the detected prediction, else epsilon.
      prediction: f.prediction ?? (model.info.prediction === 'v' ? 'v' : 'epsilon'),
      vae: options.vae,
      ...(options.initImage ? { initImage: f.initImg, strength: options.strength } : {}),
      ...(options.mask ? { mask: f.mask, maskBlur: options.maskBlur } : {}),
      ...controlNetSettings(f),
      ...(options.hires ? { hires: { ...options.hires, upscaler: f.hiresUpscaler ?? 'Latent' } } : {}),
      preview: f.preview,
      model: run.source,
      family: model.info.family,
      device: model.info.device,
      weightType: f.type ?? null,
      threads: f.threads ?? null,
    },
    timings: Object.fromEntries(Object.entries(run.timings).map(([k, ms]) => [k, Math.round(ms * 10) / 10])),
  };
}
