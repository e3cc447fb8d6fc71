// Opening dataset files: regular files only (a FIFO, socket or device is never opened), symbolic links only inside the dataset.
import { constants, type BigIntStats, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative } from 'node:path';

/** A file the dataset layer will not open, with the reason shown to the user; `code` is its SkipCode. */
export class UnsafeFileError extends Error {
  override name = 'UnsafeFileError';
  constructor(
    readonly code: 'special-file' | 'outside-dataset',
    message: string,
  ) {
    super(message);
  }
}

/** What a stat says a path is, for messages. */
export function fileKind(st: Stats | BigIntStats): string {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'folder';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  return 'special file';
}

function notRegular(kind: string): UnsafeFileError {
  return new UnsafeFileError('special-file', `not a regular file (${kind})`);
}

/** Whether `path` is `root` or lies below it (both absolute and already resolved). */
export function isInside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * The real path of `abs` (symbolic links resolved), refused when it leaves `rootReal`, the dataset folder's own real
 * path: a link inside a dataset must not make the workbench read, decode or show a file elsewhere. A dangling link
 * throws the realpath's ENOENT.
 */
export async function realInside(rootReal: string, abs: string): Promise<string> {
  const real = await realpath(abs);
  if (!isInside(real, rootReal)) {
    const st = await stat(real).catch(() => null);
    const kind = st && !st.isFile() && !st.isDirectory() ? ` (${fileKind(st)})` : '';
    throw new UnsafeFileError(
      'outside-dataset',
      `symbolic link to ${real}${kind}, outside the dataset folder: not followed`,
    );
  }
  return real;
}

/** Stats a path and refuses anything but a regular file (without opening it). */
export async function statRegular(path: string): Promise<Stats> {
  const st = await stat(path);
  if (!st.isFile()) throw notRegular(fileKind(st));
  return st;
}

// O_NONBLOCK: an open never waits, so a FIFO swapped in after the stat is refused by the fstat below instead of
// blocking one of libuv's four threads for good (and with it every later file read, and the process's exit). On
// regular files the flag changes nothing. Windows has no FIFOs and no such flag.
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Opens a regular file for reading. Anything else is refused before it is opened (opening a device can have
 * effects of its own; reading /dev/zero never ends) and again on the descriptor, in case the name changed meanwhile.
 */
export async function openRegular(path: string): Promise<FileHandle> {
  await statRegular(path);
  let fh: FileHandle;
  try {
    fh = await open(path, READ_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') throw notRegular('socket');
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(fileKind(st));
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** A regular file's whole content. */
export async function readRegular(path: string): Promise<Buffer> {
  const fh = await openRegular(path);
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Up to `n` bytes from the start of a regular file. */
export async function readRegularPrefix(path: string, n: number): Promise<Buffer> {
  const fh = await openRegular(path);
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}
