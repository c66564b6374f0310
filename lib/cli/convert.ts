/** `sdnode convert`: any model file sdnode reads → a GGUF file in one weight type. */
import { Command, Option } from 'commander';

import { WEIGHT_TYPES, convertModel, type WeightType } from '../index.js';
import { lower } from './args.js';
import { EXIT, EXIT_CODES_HELP, UsageError, classify, reportFailure } from './exit.js';
import { Interrupt } from './interrupt.js';
import { ProgressReporter, progressMode } from './progress.js';

const FLAGS = { weightType: '--type' };

interface Flags {
  model?: string;
  output?: string;
  type: string;
  json?: boolean;
}

export function convertCommand(): Command {
  return new Command('convert')
    .description('write a model file (safetensors, .ckpt, GGUF, diffusers folder) as GGUF in one weight type')
    .option('-m, --model <path>', 'the model to convert')
    .option('-o, --output <path>', 'the GGUF file to write (written only when complete)')
    .addOption(new Option('--type <type>', `weight type: ${WEIGHT_TYPES.join(', ')}`).argParser(lower).default('f16'))
    .option('--json', 'print one JSON summary on stdout, no progress')
    .addHelpText('after', `
Quantized types apply to the 2-D linear weights that take them; conv kernels, embeddings and
the timestep MLP stay f16, biases and norms f32 (see the README's convertModel).

Example:
  sdnode convert -m v1-5-pruned-emaonly.safetensors -o v1-5-q8_0.gguf --type q8_0

${EXIT_CODES_HELP}`)
    .action(async (flags: Flags) => {
      process.exitCode = await runConvert(flags);
    });
}

async function runConvert(f: Flags): Promise<number> {
  const json = Boolean(f.json);
  const interrupt = new Interrupt();
  const progress = new ProgressReporter(progressMode(json), 'converting', { unit: 'tensor' });
  interrupt.onInterrupt(() => progress.done());
  const started = performance.now();
  try {
    if (!f.model) throw new UsageError('give the model to convert with -m/--model <path>');
    if (!f.output) throw new UsageError('give the GGUF file to write with -o/--output <path>');
    const result = await convertModel(f.model, f.output, {
      weightType: f.type as WeightType,
      signal: interrupt.signal,
      onProgress: progress.report,
    });
    progress.done();
    const ms = performance.now() - started;
    const types: Record<string, number> = {};
    for (const t of result.tensors) types[t.to] = (types[t.to] ?? 0) + 1;
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ ok: true, command: 'convert', file: result.path, source: f.model, weightType: f.type, types, tensors: result.tensors, dropped: result.dropped, ms: Math.round(ms) }, null, 2)}\n`,
      );
    } else {
      const counts = Object.entries(types).map(([t, n]) => `${n} ${t}`).join(', ');
      process.stdout.write(`${result.path}  (${result.tensors.length} tensors: ${counts}${result.dropped.length ? `; ${result.dropped.length} unused left out` : ''})\n`);
      progress.note(`converted in ${(ms / 1000).toFixed(1)} s`);
    }
    return EXIT.ok;
  } catch (err) {
    progress.done();
    return reportFailure('convert', classify(err, FLAGS), json);
  } finally {
    interrupt.dispose();
  }
}
