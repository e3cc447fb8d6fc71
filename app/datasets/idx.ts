// IDX files (MNIST's format): big-endian header, then uint8 data; optionally gzipped. Reading, checking, writing.
import { promisify } from 'node:util';
import { createGunzip, gunzip, gzip } from 'node:zlib';

import { openRegular, readRegular, readRegularPrefix } from './files.js';

const gunzipAsync = promisify(gunzip);
const gzipAsync = promisify(gzip);

/** Magic numbers: two zero bytes, the type (0x08 = uint8), the number of dimensions. */
export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

export interface IdxHeader {
  magic: number;
  dims: number[];
  /** Bytes of header before the data. */
  headerBytes: number;
}

export class IdxError extends Error {
  override name = 'IdxError';
}

/** `train-images-idx3-ubyte.gz`, `t10k-images.idx3-ubyte`: the part before `-images` is the prefix. */
export const IDX_IMAGES_RE = /^(.*)-images[-.]idx3-ubyte(\.gz)?$/i;

/** The labels file names that pair with an images file of this prefix, uncompressed first. */
export function idxLabelNames(prefix: string): string[] {
  return ['-labels-idx1-ubyte', '-labels.idx1-ubyte'].flatMap((s) => [prefix + s, `${prefix}${s}.gz`]);
}

function parseHeader(buf: Uint8Array, name: string): IdxHeader | null {
  if (buf.length < 4) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  if (magic >>> 16 !== 0) throw new IdxError(`${name}: not an IDX file (magic 0x${hex(magic)})`);
  if (((magic >>> 8) & 0xff) !== 0x08)
    throw new IdxError(`${name}: IDX data type is not uint8 (magic 0x${hex(magic)})`);
  const nd = magic & 0xff;
  if (nd < 1 || nd > 4) throw new IdxError(`${name}: IDX with ${nd} dimensions`);
  const headerBytes = 4 + 4 * nd;
  if (buf.length < headerBytes) return null;
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(view.getUint32(4 + 4 * i, false));
  return { magic, dims, headerBytes };
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function dataBytes(h: IdxHeader): number {
  return h.dims.reduce((a, b) => a * b, 1);
}

/** Reads only the header; for `.gz` decompresses just the first bytes. Refuses anything but a regular file. */
export async function readIdxHeader(path: string): Promise<IdxHeader> {
  const name = path.split(/[\\/]/).pop() ?? path;
  let head: Uint8Array;
  if (path.toLowerCase().endsWith('.gz')) {
    const fh = await openRegular(path);
    head = await new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      // the stream closes the handle when it ends or is destroyed
      const src = fh.createReadStream();
      const gz = createGunzip();
      const finish = (err?: Error): void => {
        src.destroy();
        gz.destroy();
        if (err && got === 0) reject(err);
        else resolve(Buffer.concat(chunks));
      };
      const gzError = (err: Error): void => finish(new IdxError(`${name}: gzip error: ${err.message}`));
      gz.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= 20) finish(); // 4 + 4 * 4 covers any header we accept
      });
      gz.on('end', () => finish());
      gz.on('error', gzError);
      src.on('error', finish);
      src.pipe(gz);
    });
  } else {
    head = await readRegularPrefix(path, 20);
  }
  const h = parseHeader(head, name);
  if (!h) throw new IdxError(`${name}: file too short for an IDX header`);
  return h;
}

/**
 * Checks a file's length against its header without reading the data: the file size, or for gzip the trailer's
 * ISIZE (uncompressed size mod 2^32). Returns false when they disagree (truncated, or a multi-member gzip: the
 * caller then decides with a full read).
 */
export async function idxLengthLooksRight(path: string, header: IdxHeader): Promise<boolean> {
  const expected = header.headerBytes + dataBytes(header);
  const fh = await openRegular(path);
  try {
    const st = await fh.stat();
    if (!path.toLowerCase().endsWith('.gz')) return st.size === expected;
    if (st.size < 18) return false;
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, st.size - 4);
    return buf.readUInt32LE(0) === expected % 2 ** 32;
  } finally {
    await fh.close();
  }
}

/** Reads a whole IDX file (gunzipping `.gz`) and checks its length. Refuses anything but a regular file. */
export async function readIdx(path: string): Promise<{ header: IdxHeader; data: Uint8Array }> {
  const name = path.split(/[\\/]/).pop() ?? path;
  let raw: Uint8Array = await readRegular(path);
  if (path.toLowerCase().endsWith('.gz')) {
    try {
      raw = await gunzipAsync(raw);
    } catch (err) {
      throw new IdxError(`${name}: gzip error: ${(err as Error).message}`);
    }
  }
  const header = parseHeader(raw, name);
  if (!header) throw new IdxError(`${name}: file too short for an IDX header`);
  const n = dataBytes(header);
  const have = raw.length - header.headerBytes;
  if (have < n) throw new IdxError(`${name}: truncated (${have} of ${n} data bytes)`);
  if (have > n) throw new IdxError(`${name}: ${have - n} bytes after the data`);
  return { header, data: raw.subarray(header.headerBytes) };
}

/** An IDX file's bytes: uint8 data of the given dimensions, gzipped when `gz`. */
export async function encodeIdx(dims: readonly number[], data: Uint8Array, gz: boolean): Promise<Buffer> {
  if (dims.reduce((a, b) => a * b, 1) !== data.length)
    throw new IdxError('IDX data length does not match dims');
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(0x00000800 | dims.length, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  const raw = Buffer.concat([head, data]);
  // mtime 0 in the gzip header: the same data gives the same bytes
  return gz ? gzipAsync(raw, { level: 9 }) : raw;
}
