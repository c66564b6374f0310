// Finished images, newest first. Each PNG is shown and offered for download as the server sent
// it, byte for byte, so the file keeps its `parameters` text chunk (the webui's infotext).

function pngBlob(base64) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type: 'image/png' });
}

function element(tag, props = {}, children = []) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

/**
 * Adds a job's images (its JobResult) to the gallery; `useSeed(seed)` is called when the user
 * asks to run again with an image's seed.
 */
export function addResult(gallery, result, useSeed) {
  const { width, height } = result.settings;
  result.images.forEach((png, i) => {
    const seed = result.seeds[i];
    const url = URL.createObjectURL(pngBlob(png));
    const figure = element('figure', { className: 'result' }, [
      element('img', { src: url, width, height, alt: result.settings.prompt || 'generated image' }),
      element('figcaption', {}, [
        element('span', { textContent: `seed ${seed} · ${width}×${height}` }),
        element('a', { href: url, download: `sdnode-${seed}.png`, textContent: 'Download PNG', className: 'download' }),
        element('button', { type: 'button', textContent: 'Use seed', onclick: () => useSeed(seed) }),
        element('details', {}, [element('summary', { textContent: 'parameters' }), element('pre', { textContent: result.infotexts[i] })]),
      ]),
    ]);
    gallery.prepend(figure);
  });
}
