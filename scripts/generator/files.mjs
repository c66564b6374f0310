// Files the generators write: atomically (a temporary file renamed into place, removed on
// failure), and whole safetensors files from tensors held in memory.
import { open, rename, rm } from 'node:fs/promises';

/**
 * Writes `path` through `write(fh, tmp)` into `path.tmp-<pid>`, renamed into place once it is
 * closed; on failure the temporary file is removed and the error rethrown.
 * @param {string} path
 * @param {(fh: import('node:fs/promises').FileHandle, tmp: string) => Promise<unknown>} write
 */
export async function writeAtomically(path, write) {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await write(fh, tmp);
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * A safetensors file of tensors held in memory, stored in the order given, written atomically.
 * @param {string} path
 * @param {Array<{ name: string, shape: number[], dtype: string, data: Uint8Array }>} tensors
 * @param {Record<string, string>} [metadata]
 */
export async function writeSafetensorsFile(path, tensors, metadata) {
  /** @type {Record<string, unknown>} */
  const header = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);  // the data starts 8-byte aligned, as the reference writer pads
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  await writeAtomically(path, (fh) => fh.writeFile(Buffer.concat([len, Buffer.from(json, 'utf8'), ...tensors.map((t) => t.data)])));
}
