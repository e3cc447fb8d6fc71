// The decode cache: square uint8 RGB images at a cache side, one file per source image (or per IDX file),
// keyed by the source's absolute path, size and mtime, written atomically (temp file + rename).
//
// Layout: <cacheDir>/images-v1/s<side>/<2 hex>/<sha256>.bin for image files, .../s<side>/idx/<sha256>.bin for
// IDX files. Entry format (little-endian):
//   0  'DGPC'   magic
//   4  u8       format version (1)
//   5  u8       status: 0 pixels, 1 a failure (the file could not be decoded; payload is its reason as JSON)
//   8  u32      side
//   12 u32      images (1 for an image file, N for an IDX file)
//   16 u32      payload bytes when status is 1, else 0 (pixels are images * side * side * 3 bytes)
//   24          payload
// A reader checks the header and the file's length, so a foreign, stale-format or half-written file (e.g. after
// a power cut, since nothing is fsynced) is a miss and gets rewritten. Concurrent readers only ever see whole
// files: writers rename a complete temp file into place, and two writers of one key write the same bytes.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { openRegular } from './files.js';
import type { SkipCode } from './types.js';

const MAGIC = 0x43504744; // 'DGPC' read as little-endian u32
const VERSION = 1;
const HEADER = 24;

/** A source file's identity: its absolute path, size and modification time (ns). */
export interface SourceId {
  abs: string;
  size: bigint;
  mtimeNs: bigint;
}

export function entryPath(cacheDir: string, side: number, src: SourceId, kind: 'image' | 'idx'): string {
  const h = createHash('sha256')
    .update(
      [
        'digpt-image-cache',
        String(VERSION),
        kind,
        src.abs,
        String(src.size),
        String(src.mtimeNs),
        String(side),
      ].join('\0'),
    )
    .digest('hex');
  const folder = kind === 'idx' ? 'idx' : h.slice(0, 2);
  return join(cacheDir, `images-v${VERSION}`, `s${side}`, folder, `${h}.bin`);
}

function header(status: number, side: number, images: number, extra: number): Buffer {
  const b = Buffer.alloc(HEADER);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt8(VERSION, 4);
  b.writeUInt8(status, 5);
  b.writeUInt32LE(side, 8);
  b.writeUInt32LE(images, 12);
  b.writeUInt32LE(extra, 16);
  return b;
}

export interface CachedFailure {
  code: SkipCode;
  reason: string;
}

/**
 * Reads an entry of `images` images of `side`: pixels go into `out` at `offset` (returns 'pixels'), a cached
 * failure is returned, and a missing or invalid entry gives null.
 */
export async function readEntry(
  path: string,
  side: number,
  images: number,
  out: Uint8Array,
  offset: number,
): Promise<'pixels' | CachedFailure | null> {
  let fh;
  try {
    // a FIFO or device planted in the cache folder is a miss (never read), and the write renames over it
    fh = await openRegular(path);
  } catch {
    return null;
  }
  try {
    const size = (await fh.stat()).size;
    const h = Buffer.alloc(HEADER);
    if ((await fh.read(h, 0, HEADER, 0)).bytesRead !== HEADER) return null;
    if (h.readUInt32LE(0) !== MAGIC || h.readUInt8(4) !== VERSION) return null;
    if (h.readUInt32LE(8) !== side || h.readUInt32LE(12) !== images) return null;
    const status = h.readUInt8(5);
    if (status === 0) {
      const n = images * side * side * 3;
      if (size !== HEADER + n) return null;
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(out, offset + got, n - got, HEADER + got);
        if (bytesRead === 0) return null;
        got += bytesRead;
      }
      return 'pixels';
    }
    if (status === 1) {
      const n = h.readUInt32LE(16);
      if (size !== HEADER + n) return null;
      const b = Buffer.alloc(n);
      await fh.read(b, 0, n, HEADER);
      const parsed = JSON.parse(b.toString('utf8')) as CachedFailure;
      return typeof parsed.code === 'string' && typeof parsed.reason === 'string' ? parsed : null;
    }
    return null;
  } catch {
    return null;
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `path` through a temp file and a rename; creates the folder. */
async function writeAtomic(path: string, parts: Uint8Array[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    // 'wx': the random temp name is created fresh, never a link or FIFO someone left under that name
    const fh = await open(tmp, 'wx');
    try {
      for (const p of parts) {
        for (let done = 0; done < p.length;) done += (await fh.write(p, done, p.length - done)).bytesWritten;
      }
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

export async function writePixels(
  path: string,
  side: number,
  images: number,
  pixels: Uint8Array,
): Promise<void> {
  if (pixels.length !== images * side * side * 3) throw new Error('cache entry: pixel count does not match');
  await writeAtomic(path, [header(0, side, images, 0), pixels]);
}

export async function writeFailure(path: string, side: number, failure: CachedFailure): Promise<void> {
  const payload = Buffer.from(JSON.stringify({ code: failure.code, reason: failure.reason }), 'utf8');
  await writeAtomic(path, [header(1, side, 1, payload.length), payload]);
}

/** Creates the cache folder (so that an unusable one is reported once, up front). */
export async function prepareCacheDir(cacheDir: string): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  const probe = join(cacheDir, `.write-test.${process.pid}.${randomBytes(4).toString('hex')}`);
  await writeFile(probe, '', { flag: 'wx' });
  await unlink(probe);
}
