// The CommonJS side of the package: `require('sdnode')` gets dist/index.d.cts. Type-checked only.
import sdnode = require('sdnode');

export async function correctUses(): Promise<void> {
  const model = await sdnode.loadModel('sd15.safetensors');
  const { images, seed } = await model.generate({ prompt: 'a cat', steps: 20, sampler: 'euler' });
  await sdnode.writeImage(`cat-${seed}.png`, images[0]!);
  const err: sdnode.SdnodeError = new sdnode.AbortError();
  console.log(err.code, sdnode.SAMPLERS.length);
  await model.dispose();
}

export async function misuses(model: sdnode.Model): Promise<void> {
  // @ts-expect-error: prompt is required
  await model.generate({ negativePrompt: 'x' });
  // @ts-expect-error: no such sampler
  await model.generate({ prompt: 'x', sampler: 'k_euler' });
  // @ts-expect-error: not an export of the package
  sdnode.generate({ prompt: 'x' });
}
