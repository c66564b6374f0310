#!/usr/bin/env node
/**
 * `sdnode`: Stable Diffusion from the command line. Commands: generate, convert, inspect,
 * devices, serve, worker. Flags follow stable-diffusion.cpp's CLI where it has them.
 */
import { Command, CommanderError } from 'commander';

import { convertCommand } from './convert.js';
import { devicesCommand } from './devices.js';
import { EXIT, EXIT_CODES_HELP } from './exit.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { serveCommand } from './serve.js';
import { workerCommand } from './worker.js';
import { packageVersion } from './version.js';

/** Commander's own parse errors (unknown flag, missing value, bad choice) exit 2, its help and version 0. */
function usageExits(command: Command): Command {
  command.exitOverride((err: CommanderError) => {
    throw new CommanderError(err.exitCode === 0 ? EXIT.ok : EXIT.usage, err.code, err.message);
  });
  const name = command.name() === 'sdnode' ? 'sdnode' : `sdnode ${command.name()}`;
  command.configureOutput({ outputError: (text, write) => write(`${name}: ${text}`) });
  command.showHelpAfterError(`(run '${name} --help' for usage)`);
  command.showSuggestionAfterError(true);
  return command;
}

async function main(argv: string[]): Promise<number> {
  const program = usageExits(
    new Command('sdnode')
      .description('Stable Diffusion on your own machine: txt2img, img2img and inpainting, model conversion and inspection')
      .version(packageVersion(), '-V, --version')
      .addHelpText('after', `\nRun 'sdnode <command> --help' for a command's flags.\n\n${EXIT_CODES_HELP}`),
  );
  for (const command of [generateCommand(), convertCommand(), inspectCommand(), devicesCommand(), serveCommand(), workerCommand()]) program.addCommand(usageExits(command));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
}

process.exitCode = await main(process.argv);
