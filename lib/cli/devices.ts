/** `sdnode devices`: the compute devices and backends this machine offers. */
import { Command } from 'commander';

import { listDevices, systemInfo } from '../index.js';
import { EXIT, EXIT_CODES_HELP, classify, reportFailure } from './exit.js';

export function devicesCommand(): Command {
  return new Command('devices')
    .description("compute devices (ids for generate's --device), ggml's version and backends")
    .option('--json', 'print { devices, system } as JSON')
    .addHelpText('after', `\n${EXIT_CODES_HELP}`)
    .action((flags: { json?: boolean }) => {
      process.exitCode = runDevices(Boolean(flags.json));
    });
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;

function runDevices(json: boolean): number {
  try {
    const devices = listDevices();
    const system = systemInfo();
    if (json) {
      process.stdout.write(`${JSON.stringify({ ok: true, command: 'devices', devices, system }, null, 2)}\n`);
      return EXIT.ok;
    }
    const width = Math.max(...devices.map((d) => d.id.length));
    for (const d of devices) {
      const memory = d.memoryTotal > 0 ? `, ${gib(d.memoryFree)} free of ${gib(d.memoryTotal)}` : '';
      process.stdout.write(`${d.id.padEnd(width)}  ${d.type}  ${d.description || d.name}${memory}\n`);
    }
    process.stdout.write(
      `\nggml ${system.ggmlVersion} (${system.ggmlCommit}), backends: ${system.backends.join(', ')}${system.forceCpu ? ' (SDNODE_FORCE_CPU set)' : ''}\n` +
        `addon: ${system.addonPath}\n`,
    );
    return EXIT.ok;
  } catch (err) {
    return reportFailure('devices', classify(err), json);
  }
}
