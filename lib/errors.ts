/**
 * Error classes. Every error sdnode raises after validation has a stable `code`; options that
 * are wrong are reported synchronously as `TypeError` / `RangeError` before any work starts.
 */

/** Base class of sdnode's own errors. */
export class SdnodeError extends Error {
  /** Stable, machine-readable: ERR_FILE_ACCESS, ERR_MODEL_FORMAT, ABORT_ERR, ERR_RESOURCE, … */
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A path that cannot be read as a model file: missing, a directory, a FIFO, unreadable. */
export class FileAccessError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_FILE_ACCESS', options);
  }
}

/** A malformed model file; the message names the field or tensor. */
export class ModelFormatError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_MODEL_FORMAT', options);
  }
}

/** A well-formed file that is not the model asked for: missing or mis-shaped tensors. */
export class ModelCompatibilityError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_MODEL_COMPATIBILITY', options);
  }
}

/** The job's AbortSignal fired. `code` is `ABORT_ERR`, as Node's own AbortError. */
export class AbortError extends SdnodeError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, 'ABORT_ERR', options);
  }
}

/** The object was disposed. */
export class DisposedError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_DISPOSED', options);
  }
}

/** Out of memory, or a device buffer could not be allocated. */
export class ResourceError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_RESOURCE', options);
  }
}

/** A device failed to start or to compute. */
export class BackendError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_BACKEND', options);
  }
}

/** An image could not be read or written. */
export class ImageError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_IMAGE', options);
  }
}

/**
 * A destination sdnode will not write to: it exists and is not a regular file (a directory,
 * FIFO, socket, device such as /dev/null), or it is a symlink pointing out of its folder
 * without `followSymlinks`. Nothing was written or replaced.
 */
export class OutputPathError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_OUTPUT_PATH', options);
  }
}

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => SdnodeError> = {
  ERR_FILE_ACCESS: FileAccessError,
  ERR_MODEL_FORMAT: ModelFormatError,
  ERR_MODEL_COMPATIBILITY: ModelCompatibilityError,
  ABORT_ERR: AbortError,
  ERR_DISPOSED: DisposedError,
  ERR_RESOURCE: ResourceError,
  ERR_BACKEND: BackendError,
  ERR_OUTPUT_PATH: OutputPathError,
};

/**
 * Turns an error from the addon (a plain Error with `code`) into its class, created here so
 * its stack shows the caller's JS frames.
 */
export function fromNative(err: unknown): Error {
  if (err instanceof SdnodeError || err instanceof TypeError || err instanceof RangeError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const Cls = typeof e?.code === 'string' ? byCode[e.code] : undefined;
  if (Cls) return new Cls(message);
  // A value the engine found out of range: a RangeError, as the option checks throw, with the code kept.
  if (e?.code === 'ERR_INVALID_ARGUMENT') return Object.assign(new RangeError(message), { code: 'ERR_INVALID_ARGUMENT' });
  return new SdnodeError(message, typeof e?.code === 'string' ? e.code : 'ERR_INTERNAL', { cause: err });
}
