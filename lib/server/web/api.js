// sdnode's native API from the page. Credentials travel in the Authorization header, never in
// a URL (URLs end up in logs and history). EventSource cannot send headers, so a job's event
// stream is read with fetch() and parsed here; closing it (the AbortSignal) cancels nothing by
// itself on the page's side, but the server cancels a job whose stream closes before its end.

/** An answer other than 2xx: the server's JSON error, `{ error: { code, message, field? } }`. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === 'object' && body.error ? body.error : {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? 'http_error';
    this.field = error.field;
  }
}

let authorization = '';

/** Bearer for an API key (--api-key); Basic for a user and password (--api-auth); neither: none. */
export function setCredentials({ apiKey = '', user = '', pass = '' } = {}) {
  if (apiKey !== '') authorization = `Bearer ${apiKey}`;
  else if (user !== '') authorization = `Basic ${base64Utf8(`${user}:${pass}`)}`;
  else authorization = '';
}

function base64Utf8(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function headers(json) {
  const h = {};
  if (authorization !== '') h.authorization = authorization;
  if (json) h['content-type'] = 'application/json';
  return h;
}

/** A JSON request to the API; the parsed answer, or ApiError. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/** The events of a job's Server-Sent Events stream, `{ type, … }` as the server sends them, until the stream ends. */
export async function* jobEvents(path, signal) {
  const res = await fetch(path, { headers: { ...headers(false), accept: 'text/event-stream' }, signal, cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      // One event per blank-line-terminated block; its data lines joined (the server sends one).
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        if (data !== '') yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
