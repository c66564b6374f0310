// The inpainting mask, painted over the init image or uploaded (or both: an uploaded mask is
// painted on). The mask lives in an offscreen canvas of the init image's size as white with
// alpha (alpha = how much to repaint); what the user sees is that alpha tinted over the image.
// Sent as the library takes it: an opaque PNG, white = repaint, black = keep.

const TINT = 'rgba(255, 40, 90, 0.55)';

export class MaskEditor {
  /** @param {HTMLCanvasElement} canvas  the visible layer over the init image */
  constructor(canvas) {
    this.canvas = canvas;
    this.view = canvas.getContext('2d');
    this.mask = document.createElement('canvas');
    this.paint = this.mask.getContext('2d', { willReadFrequently: true });
    this.brush = 24;
    this.erase = false;
    this.empty = true;
    this.#listen();
  }

  /** Starts over on an image of `width` × `height` pixels, unpainted. */
  reset(width, height) {
    for (const c of [this.canvas, this.mask]) {
      c.width = width;
      c.height = height;
    }
    this.clear();
  }

  clear() {
    this.paint.clearRect(0, 0, this.mask.width, this.mask.height);
    this.empty = true;
    this.#show();
  }

  /** An uploaded mask (luminance = repaint), stretched to the init image's size, replacing what was painted. */
  async load(file) {
    const bitmap = await createImageBitmap(file);
    const { width, height } = this.mask;
    const scratch = document.createElement('canvas');
    scratch.width = width;
    scratch.height = height;
    const s = scratch.getContext('2d', { willReadFrequently: true });
    s.drawImage(bitmap, 0, 0, width, height);
    bitmap.close();
    const pixels = s.getImageData(0, 0, width, height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      // Rec. 601 luma, as a gray conversion of the mask; alpha in the upload scales it.
      const luma = Math.round((0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]) * (d[i + 3] / 255));
      d[i] = d[i + 1] = d[i + 2] = 255;
      d[i + 3] = luma;
    }
    this.paint.putImageData(pixels, 0, 0);
    this.empty = !d.some((v, i) => i % 4 === 3 && v > 0);
    this.#show();
  }

  /** Whether anything is to be repainted: without a mask the job is plain image to image. */
  isEmpty() {
    if (this.empty) return true;
    const d = this.paint.getImageData(0, 0, this.mask.width, this.mask.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return false;
    return true;
  }

  /** The mask as a PNG data: URL, white on black, the init image's size. */
  toDataURL() {
    const out = document.createElement('canvas');
    out.width = this.mask.width;
    out.height = this.mask.height;
    const o = out.getContext('2d');
    o.fillStyle = '#000';
    o.fillRect(0, 0, out.width, out.height);
    o.drawImage(this.mask, 0, 0);
    return out.toDataURL('image/png');
  }

  #show() {
    const v = this.view;
    v.globalCompositeOperation = 'copy';
    v.drawImage(this.mask, 0, 0);
    v.globalCompositeOperation = 'source-in';
    v.fillStyle = TINT;
    v.fillRect(0, 0, this.canvas.width, this.canvas.height);
    v.globalCompositeOperation = 'source-over';
  }

  /** A pointer's position in image pixels (the canvas is shown scaled). */
  #at(event) {
    const r = this.canvas.getBoundingClientRect();
    return [((event.clientX - r.left) * this.canvas.width) / r.width, ((event.clientY - r.top) * this.canvas.height) / r.height];
  }

  #stroke(from, to) {
    const p = this.paint;
    p.globalCompositeOperation = this.erase ? 'destination-out' : 'source-over';
    p.strokeStyle = '#fff';
    p.lineWidth = this.brush;
    p.lineCap = 'round';
    p.lineJoin = 'round';
    p.beginPath();
    p.moveTo(...from);
    p.lineTo(...to);
    p.stroke();
    if (!this.erase) this.empty = false;
    this.#show();
  }

  #listen() {
    let last;
    this.canvas.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      this.canvas.setPointerCapture(e.pointerId);
      last = this.#at(e);
      this.#stroke(last, last);
    });
    this.canvas.addEventListener('pointermove', (e) => {
      if (!last) return;
      const next = this.#at(e);
      this.#stroke(last, next);
      last = next;
    });
    const end = () => (last = undefined);
    this.canvas.addEventListener('pointerup', end);
    this.canvas.addEventListener('pointercancel', end);
  }
}
