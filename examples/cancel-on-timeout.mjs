// @ts-check
// Give up on a generation that takes too long: AbortSignal.timeout() cancels the job, queued or
// running, and the promise rejects with sdnode's AbortError (code 'ABORT_ERR'). The engine
// stops within a fraction of a step, and the model stays ready for the next job.
//
//   node examples/cancel-on-timeout.mjs [model.safetensors] [milliseconds]
//
// Without a model, a tiny random-weight one is used, with a job far too big for the time
// limit even on a fast GPU (1024 × 1024, 1000 steps), so the timeout fires.
import { AbortError, loadModel, writeImage } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [given, limit = '2000'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);
const ms = Number(limit);

const model = await loadModel(path);
const started = performance.now();
let stepsDone = 0;
try {
  const { images } = await model.generate({
    prompt: 'an intricate clockwork city, highly detailed',
    width: tiny ? 1024 : 512,
    height: tiny ? 1024 : 512,
    steps: tiny ? 1000 : 20,
    signal: AbortSignal.timeout(ms),
    onProgress: ({ step, steps }) => {
      stepsDone = step;
      console.log(`step ${step}/${steps}`);
    },
  });
  await writeImage('in-time.png', images[0]);
  console.log(`done within ${ms} ms: in-time.png`);
} catch (err) {
  // Anything else (a bad file, out of memory) is a real failure: let it propagate.
  if (!(err instanceof AbortError)) throw err;
  const elapsed = performance.now() - started;
  console.log(`cancelled after ${Math.round(elapsed)} ms (limit ${ms} ms, ${stepsDone} steps done): ${err.message} [${err.code}]`);
}

// The model is still usable after a cancelled job.
const { images } = await model.generate({ prompt: 'a quick sketch', width: 64, height: 64, steps: 2 });
console.log(`next job: ${images[0].width}×${images[0].height}`);
await model.dispose();
