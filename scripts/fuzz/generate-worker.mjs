// Child process of scripts/fuzz/generate.mjs: for each mutant path it is sent, loadModel + one
// tiny generate() on the CPU, and replies how it ended. A native crash ends this process; the
// driver sees the exit, records the mutant in flight and forks a new worker.
import { pathToFileURL } from 'node:url';

const { loadModel } = await import(pathToFileURL(process.env.SDNODE_FUZZ_ENTRY).href);
const size = Number(process.env.SDNODE_FUZZ_SIZE ?? 32);

process.on('message', async ({ path, weightType }) => {
  const started = Date.now();
  let stage = 'load';
  let model;
  try {
    model = await loadModel(path, { device: 'cpu', threads: 1, ...(weightType ? { weightType } : {}) });
    stage = 'generate';
    await model.generate({ prompt: 'a red cube', width: size, height: size, steps: 1, seed: 1 });
    process.send({ outcome: 'generated', ms: Date.now() - started });
  } catch (err) {
    const e = /** @type {Error & { code?: unknown }} */ (err);
    process.send({ outcome: 'error', stage, code: typeof e?.code === 'string' ? e.code : null, name: e?.name, message: String(e?.message).slice(0, 300), ms: Date.now() - started });
  } finally {
    await model?.dispose().catch(() => {});
  }
});
process.send({ ready: true });
