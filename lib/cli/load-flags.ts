/**
 * The flags of the commands that load models for a long-running process (serve, worker): the
 * weight type, the device and the CPU threads, as loadModel takes them.
 */
import { Option, type Command } from 'commander';

import { WEIGHT_TYPES } from '../index.js';
import { number } from './args.js';

export interface LoadFlags {
  type?: (typeof WEIGHT_TYPES)[number];
  device: string;
  threads?: number;
}

/** Adds --type, --device and -t/--threads to `command`. */
export function withLoadFlags(command: Command): Command {
  return command
    .addOption(new Option('--type <type>', `weight type on load (default: as stored): ${WEIGHT_TYPES.join(', ')}`).choices(WEIGHT_TYPES))
    .option('--device <id>', "device: auto, cpu, cuda:0, vulkan:0, metal (see 'sdnode devices')", 'auto')
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', number);
}
