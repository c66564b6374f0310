/**
 * Errors from the library, as a JobError an HTTP client can act on: bad options are the
 * client's (400, naming the JobRequest field), broken files and exhausted memory the server's.
 */
import { SdnodeError } from '../errors.js';
import { JobError } from './job-queue.js';

/** The library's option name at the start of a TypeError / RangeError message ('options.width must …'). */
const OPTION_IN_MESSAGE = /^options\.([A-Za-z]+)(\[\d+\])?/;

/** The JobRequest field a library message is about, when it says (JobRequest fields are named as generate()'s options). */
export function fieldOfMessage(message: string): string | undefined {
  const m = OPTION_IN_MESSAGE.exec(message);
  if (m) return m[1]!;
  if (/^width and height|^width × height/.test(message)) return 'width';
  if (/^seed \+ batchCount/.test(message)) return 'seed';
  if (/^the prompt's/.test(message)) return 'prompt';
  return undefined;
}

// Statuses by the library's error codes; anything not listed is the server's fault (500).
const STATUS_OF_CODE: Record<string, number> = {
  ERR_IMAGE: 400,
  // A LoRA or embedding file that is malformed or does not fit the model: the request named it.
  ERR_MODEL_FORMAT: 422,
  ERR_MODEL_COMPATIBILITY: 422,
  ERR_RESOURCE: 503,
};

/** Any error of a job or a request as a JobError. */
export function toJobError(err: unknown): JobError {
  if (err instanceof JobError) return err;
  if (err instanceof TypeError || err instanceof RangeError) {
    const field = fieldOfMessage(err.message);
    return new JobError({ status: 400, code: 'invalid_request', message: err.message, ...(field ? { field } : {}) }, { cause: err });
  }
  if (err instanceof SdnodeError) {
    const status = STATUS_OF_CODE[err.code] ?? 500;
    return new JobError({ status, code: err.code.toLowerCase().replace(/^err_/, ''), message: err.message }, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new JobError({ status: 500, code: 'internal', message }, { cause: err });
}
