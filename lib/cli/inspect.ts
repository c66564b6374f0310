/** `sdnode inspect <file>`: what a model file holds, without loading its weights. */
import { Command } from 'commander';

import { inspectModel, type ModelInspection } from '../index.js';
import { EXIT, EXIT_CODES_HELP, classify, reportFailure } from './exit.js';
import { Interrupt } from './interrupt.js';

interface Flags {
  json?: boolean;
  tensors?: boolean;
  checksums?: boolean;
}

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('what a model file holds: format, tensors, types, metadata, and what model it is')
    .argument('<file>', 'a .safetensors, .gguf, .ckpt/.pt file')
    .option('--json', 'print the whole inspection as JSON (every tensor included)')
    .option('--tensors', 'list every tensor (name, type, shape)')
    .option('--checksums', 'read every tensor and give it a checksum (reads the whole file)')
    .addHelpText('after', `\n${EXIT_CODES_HELP}`)
    .action(async (file: string, flags: Flags) => {
      process.exitCode = await runInspect(file, flags);
    });
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function summary(r: ModelInspection, withTensors: boolean): string {
  const d = r.detection;
  const components = Object.entries(d.components).filter(([, present]) => present).map(([name]) => name);
  const lines = [
    `${r.path}`,
    `  format       ${r.format}, ${bytes(r.fileSize)}`,
    `  tensors      ${r.tensorCount} (${Object.entries(r.dtypes).map(([t, n]) => `${n} ${t}`).join(', ')})`,
    `  parameters   ${r.parameterCount.toLocaleString('en-US')}`,
    `  family       ${d.family}${d.inpaint ? ' (inpainting)' : ''}`,
    `  components   ${components.join(', ') || 'none recognised'}`,
    `  naming       ${d.convention}`,
    `  prediction   ${d.prediction}`,
    `  metadata     ${Object.keys(r.metadata).length} keys`,
  ];
  if (d.notes.length) lines.push('  notes', ...d.notes.map((n) => `    - ${n}`));
  if (withTensors) {
    lines.push('  tensor list');
    for (const t of r.tensors) lines.push(`    ${t.name}  ${t.dtype}  [${t.shape.join(', ')}]${t.checksum ? `  ${t.checksum}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

async function runInspect(file: string, f: Flags): Promise<number> {
  const json = Boolean(f.json);
  const interrupt = new Interrupt();
  try {
    const r = await inspectModel(file, { signal: interrupt.signal, checksums: Boolean(f.checksums) });
    process.stdout.write(json ? `${JSON.stringify({ ok: true, command: 'inspect', ...r }, null, 2)}\n` : summary(r, Boolean(f.tensors)));
    return EXIT.ok;
  } catch (err) {
    return reportFailure('inspect', classify(err), json);
  } finally {
    interrupt.dispose();
  }
}
