// The page: a form that becomes a native-API job (POST /sdnode/v1/jobs), whose events drive
// the progress bar and live preview, and whose result lands in the gallery.
import { api, ApiError, jobEvents, setCredentials } from './api.js';
import { addResult } from './gallery.js';
import { MaskEditor } from './mask.js';

const $ = (id) => document.getElementById(id);
const CREDENTIALS_KEY = 'sdnode.credentials';

const status = $('status');
const editor = new MaskEditor($('mask-canvas'));
/** The init image as a data: URL of the file's own bytes (the server decodes it). */
let initImage;
/** The job running now: its id and the controller that closes its event stream. */
let running;

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle('error', isError);
}

function explain(err) {
  if (err instanceof ApiError) return `${err.message}${err.status === 401 ? ' — enter the credentials above' : ''}`;
  return err instanceof Error ? err.message : String(err);
}

function options(select, items) {
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value)));
}

// ---- credentials: only asked for when the server wants them; kept for this tab's session only.

function setupCredentials(wanted) {
  const form = $('credentials');
  const scheme = wanted.apiKey ? 'apiKey' : wanted.apiAuth ? 'apiAuth' : undefined;
  if (!scheme) return true;
  form.hidden = false;
  for (const label of form.querySelectorAll('[data-scheme]')) label.hidden = label.dataset.scheme !== scheme;
  const saved = JSON.parse(sessionStorage.getItem(CREDENTIALS_KEY) ?? 'null');
  if (saved) {
    $('api-key').value = saved.apiKey ?? '';
    $('api-user').value = saved.user ?? '';
    $('api-pass').value = saved.pass ?? '';
  }
  const apply = () => {
    const given = scheme === 'apiKey' ? { apiKey: $('api-key').value } : { user: $('api-user').value, pass: $('api-pass').value };
    setCredentials(given);
    sessionStorage.setItem(CREDENTIALS_KEY, JSON.stringify(given));
    return Object.values(given)[0] !== '';
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (apply()) void loadLists();
  });
  return saved ? apply() : false;
}

// ---- what the server offers

async function loadLists() {
  try {
    const [models, loras] = await Promise.all([api('/sdnode/v1/models'), api('/sdnode/v1/loras')]);
    options($('model'), models.models.map((m) => [m.name, m.name]));
    if (models.current) $('model').value = models.current;
    $('model-field').hidden = models.models.length < 2;
    options($('lora-name'), loras.loras.map((l) => [l.name, l.name]));
    $('lora-picker').disabled = loras.loras.length === 0;
    if (loras.loras.length === 0) options($('lora-name'), [['', 'no LoRAs (--lora-model-dir)']]);
    say('Ready.');
  } catch (err) {
    say(explain(err), true);
  }
}

function addLora() {
  const name = $('lora-name').value;
  if (!name) return;
  const weight = $('lora-weight').valueAsNumber;
  const prompt = $('prompt');
  const tag = `<lora:${name}:${Number.isFinite(weight) ? weight : 1}>`;
  prompt.value = prompt.value.trim() === '' ? tag : `${prompt.value.trimEnd()} ${tag}`;
}

// ---- image to image and inpainting

function readDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function setInitImage(file) {
  const preview = $('init-preview');
  const shown = !!file;
  $('editor').hidden = $('mask-tools').hidden = $('mask-hint').hidden = !shown;
  $('init-clear').disabled = !shown;
  initImage = undefined;
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute('src');
  if (!file) return;
  try {
    const bitmap = await createImageBitmap(file);
    editor.reset(bitmap.width, bitmap.height);
    bitmap.close();
    preview.src = URL.createObjectURL(file);
    initImage = await readDataURL(file);
  } catch {
    say(`${file.name} is not an image this browser can read`, true);
    $('init-image').value = '';
    await setInitImage(undefined);
  }
}

// ---- a job

/** A number input's value, or undefined when left empty. */
function numberOf(id) {
  const v = $(id).valueAsNumber;
  return Number.isFinite(v) ? v : undefined;
}

function jobRequest() {
  const request = {
    prompt: $('prompt').value,
    negativePrompt: $('negative-prompt').value,
    steps: numberOf('steps'),
    cfgScale: numberOf('cfg-scale'),
    sampler: $('sampler').value,
    seed: numberOf('seed'),
    batchCount: numberOf('batch-count'),
    width: numberOf('width'),
    height: numberOf('height'),
  };
  if ($('model').value) request.model = $('model').value;
  if ($('scheduler').value) request.scheduler = $('scheduler').value;
  if ($('live-preview').checked) request.preview = 'latent2rgb';
  if (initImage) {
    request.initImage = initImage;
    request.strength = numberOf('strength');
    if (!editor.isEmpty()) {
      request.mask = editor.toDataURL();
      request.maskBlur = numberOf('mask-blur');
    }
  }
  for (const key of Object.keys(request)) if (request[key] === undefined) delete request[key];
  return request;
}

function showProgress(step, steps, text) {
  const bar = $('progress');
  bar.max = Math.max(steps, 1);
  bar.value = step;
  $('progress-text').textContent = text;
}

async function generate() {
  const controller = new AbortController();
  const preview = $('preview');
  preview.hidden = true;
  showProgress(0, 1, '');
  $('generate').disabled = true;
  try {
    const { id, events } = await api('/sdnode/v1/jobs', { method: 'POST', body: jobRequest() });
    running = { id, controller };
    $('cancel').disabled = false;
    say('Queued.');
    for await (const event of jobEvents(events, controller.signal)) {
      if (event.type === 'queued') say(event.position === 0 ? 'Starting next.' : `Queued: ${event.position} ahead.`);
      else if (event.type === 'started') say('Generating…');
      else if (event.type === 'progress') {
        showProgress(event.step, event.steps, `step ${event.step} of ${event.steps} · ${(event.elapsedMs / 1000).toFixed(1)} s`);
        if (event.preview) {
          preview.src = `data:image/png;base64,${event.preview}`;
          preview.hidden = false;
        }
      } else if (event.type === 'done') {
        const r = event.result;
        showProgress(1, 1, `done in ${(r.timings.totalMs / 1000).toFixed(1)} s`);
        addResult($('gallery'), r, (seed) => ($('seed').value = String(seed)));
        preview.hidden = true;
        say(`Done: ${r.images.length} image${r.images.length === 1 ? '' : 's'}, seed ${r.seeds.join(', ')}.`);
      } else if (event.type === 'error') say(`Failed: ${event.error.message}`, true);
      else if (event.type === 'cancelled') say(`Cancelled (${event.reason}).`);
    }
  } catch (err) {
    if (!controller.signal.aborted) say(explain(err), true);
  } finally {
    running = undefined;
    $('generate').disabled = false;
    $('cancel').disabled = true;
  }
}

async function cancel() {
  if (!running) return;
  $('cancel').disabled = true;
  try {
    await api(`/sdnode/v1/jobs/${encodeURIComponent(running.id)}`, { method: 'DELETE' });
  } catch (err) {
    // It ended meanwhile (404): the stream says how.
    if (!(err instanceof ApiError && err.status === 404)) say(explain(err), true);
  }
}

// ---- start

async function start() {
  $('job').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!running) void generate();
  });
  $('cancel').addEventListener('click', () => void cancel());
  $('lora-add').addEventListener('click', addLora);
  $('init-image').addEventListener('change', (e) => void setInitImage(e.target.files[0]));
  $('init-clear').addEventListener('click', () => {
    $('init-image').value = '';
    void setInitImage(undefined);
  });
  $('mask-image').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (file) await editor.load(file).catch(() => say(`${file.name} is not an image this browser can read`, true));
  });
  $('mask-clear').addEventListener('click', () => {
    $('mask-image').value = '';
    editor.clear();
  });
  $('brush').addEventListener('input', (e) => (editor.brush = e.target.valueAsNumber));
  $('erase').addEventListener('change', (e) => (editor.erase = e.target.checked));
  editor.brush = $('brush').valueAsNumber;

  const config = await api('/ui/config.json');
  options($('sampler'), config.samplers.map((s) => [s.name, s.label]));
  $('scheduler').append(...config.schedulers.map((s) => new Option(s, s)));
  $('steps').max = String(config.limits.steps);
  $('batch-count').max = String(config.limits.batch);
  if (setupCredentials(config.credentials)) await loadLists();
  else say('This server needs credentials: enter them above.');
  document.body.dataset.ready = 'true';
}

start().catch((err) => say(explain(err), true));
