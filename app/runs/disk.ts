// Writing a run's files: a full disk is reported as such, naming the file, and files are replaced whole (tmp + rename).
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** A write failed because the disk (or the user's quota) is full. */
export class DiskFullError extends Error {
  readonly path: string;

  constructor(path: string, cause: unknown, note = '') {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`disk full while writing ${path}: ${why}${note ? `; ${note}` : ''}`, { cause });
    this.name = 'DiskFullError';
    this.path = path;
  }
}

/** ENOSPC (no space left) and EDQUOT (quota exceeded) both mean "make room, then try again". */
function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Runs `write`, which writes `path` (directly or through a temporary file of its own): a full disk becomes a
 * DiskFullError naming `path`, so the user learns which file did not fit rather than a bare errno.
 */
export function writing<T>(path: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    if (isDiskFull(e) && !(e instanceof DiskFullError)) throw new DiskFullError(path, e);
    throw e;
  }
}

/** fsync of a folder, so a rename inside it survives a power cut; filesystems that refuse it are let be. */
export function fsyncFolder(dir: string): void {
  if (process.platform === 'win32') return;
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    // network mounts and FUSE reject fsync on folders; the rename itself is still atomic
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EISDIR') throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Replaces `path` with `text` atomically: written to `path.tmp`, fsynced, renamed over `path`. A crash (kill -9,
 * power cut) leaves either the old file or the new one, never an empty or half-written one.
 */
export function replaceFile(path: string, text: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  writing(path, () => {
    const fd = fs.openSync(tmp, 'w');
    try {
      const data = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
      for (let done = 0; done < data.byteLength;) done += fs.writeSync(fd, data, done);
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.closeSync(fd);
  });
  fs.renameSync(tmp, path);
  fsyncFolder(nodePath.dirname(nodePath.resolve(path)));
}

/** Writes a small file (config.json, state.json), naming it if the disk is full. */
export function writeFileChecked(path: string, text: string): void {
  writing(path, () => fs.writeFileSync(path, text));
}
