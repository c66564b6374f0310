/** Byte-level helpers shared by the test file writers (zip, GGUF, safetensors). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes each case to `<dir>/<name><ext>`; returns name → path. */
export function writeCases(dir: string, ext: string, cases: Record<string, Uint8Array>): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(cases)) {
    paths[name] = join(dir, `${name}${ext}`);
    writeFileSync(paths[name], bytes);
  }
  return paths;
}

/** A little-endian byte builder. */
export class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  bytes(b: Uint8Array): this {
    this.chunks.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.length += b.byteLength;
    return this;
  }
  private fixed(size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    return this.bytes(b);
  }
  u8(v: number): this {
    return this.fixed(1, (b) => b.writeUInt8(v & 0xff));
  }
  u16(v: number): this {
    return this.fixed(2, (b) => b.writeUInt16LE(v & 0xffff));
  }
  u32(v: number): this {
    return this.fixed(4, (b) => b.writeUInt32LE(v >>> 0));
  }
  /** Any integer; negative values and values past 2^64 wrap to 64 bits. */
  u64(v: number | bigint): this {
    return this.fixed(8, (b) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v))));
  }
  f32(v: number): this {
    return this.fixed(4, (b) => b.writeFloatLE(v));
  }
  f64(v: number): this {
    return this.fixed(8, (b) => b.writeDoubleLE(v));
  }
  pad(alignment: number): this {
    const n = (alignment - (this.length % alignment)) % alignment;
    return n ? this.bytes(new Uint8Array(n)) : this;
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}
