// Folders uploaded from a browser drop: staged under the workspace chunk by chunk, every path and limit checked
// before a byte is written, renamed into place when complete; an upload that is never ended is deleted.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

export interface UploadLimits {
  /** Files in one upload (default 200,000). */
  readonly maxFiles: number;
  /** Bytes in one upload, all files together (default 8 GiB). */
  readonly maxBytes: number;
  /** Bytes of one file (default 1 GiB). */
  readonly maxFileBytes: number;
  /** An upload that hears nothing for this long is deleted (default 15 min). */
  readonly idleMs: number;
}

/** A dropped dataset is for trying things, not for moving ImageNet through a WebSocket. */
export const DEFAULT_UPLOAD_LIMITS: UploadLimits = {
  maxFiles: 200_000,
  maxBytes: 8 * 1024 ** 3,
  maxFileBytes: 1024 ** 3,
  idleMs: 15 * 60_000,
};

/** Staging folders in the uploads folder: hidden, so nothing scans them, and never registered. */
const STAGING_PREFIX = '.incoming-';
const TOO_LARGE_HINT = 'type its path on the server instead';

interface OpenFile {
  /** The temporary file the chunks are appended to. */
  readonly part: string;
  readonly size: number;
  received: number;
}

interface Upload {
  readonly name: string;
  /** STAGING/data is the folder's tree, STAGING/parts the files still arriving. */
  readonly staging: string;
  files: number;
  /** Declared sizes of every file begun: what the upload will hold once complete. */
  bytes: number;
  readonly open: Map<string, OpenFile>;
  readonly done: Set<string>;
  /** Operations on one upload run one after another (a chunk's checks and its write are one step). */
  queue: Promise<unknown>;
  timer: NodeJS.Timeout | null;
}

function mb(bytes: number): string {
  return bytes < 1024 ** 2 ? `${bytes} bytes` : `${(bytes / 1024 ** 2).toFixed(1)} MB`;
}

/** The parts of a '/'-separated path inside the upload; anything that could leave its folder is refused. */
function checkedParts(rel: string): string[] {
  const parts = rel.split('/');
  if (
    rel.startsWith('/') ||
    parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0'))
  ) {
    throw new Error(`upload path '${rel}' is not a plain relative path`);
  }
  return parts;
}

export class Uploads {
  private readonly open = new Map<string, Upload>();
  private readonly limits: UploadLimits;

  constructor(
    private readonly root: string,
    limits: Partial<UploadLimits> = {},
  ) {
    this.limits = { ...DEFAULT_UPLOAD_LIMITS, ...limits };
    this.removeStale();
  }

  /**
   * Starts an upload of a folder named `name`; `files` and `bytes`, when the page knows them, are checked against the
   * limits now rather than after gigabytes have been sent.
   */
  begin(name: string, declared: { files?: number; bytes?: number } = {}): string {
    const { maxFiles, maxBytes } = this.limits;
    if ((declared.files ?? 0) > maxFiles)
      throw new Error(
        `the dropped folder has ${declared.files} files; digpt serve takes at most ${maxFiles} per upload; ${TOO_LARGE_HINT}`,
      );
    if ((declared.bytes ?? 0) > maxBytes)
      throw new Error(
        `the dropped folder holds ${mb(declared.bytes ?? 0)}; digpt serve takes at most ${mb(maxBytes)} per upload; ${TOO_LARGE_HINT}`,
      );
    const id = randomBytes(12).toString('hex');
    const staging = nodePath.join(this.root, `${STAGING_PREFIX}${id}`);
    fs.mkdirSync(nodePath.join(staging, 'data'), { recursive: true });
    fs.mkdirSync(nodePath.join(staging, 'parts'));
    const u: Upload = {
      name,
      staging,
      files: 0,
      bytes: 0,
      open: new Map(),
      done: new Set(),
      queue: Promise.resolve(),
      timer: null,
    };
    this.open.set(id, u);
    this.touch(id, u);
    return id;
  }

  /**
   * Appends one chunk of the file `rel` (`size` bytes in all) at `offset`, which must be where the previous chunk
   * ended. Returns the bytes of the file received so far; the chunk that reaches `size` moves the file into place.
   */
  async file(
    id: string,
    rel: string,
    size: number,
    offset: number,
    base64: string,
  ): Promise<{ received: number }> {
    const u = this.get(id);
    const parts = checkedParts(rel);
    const data = Buffer.from(base64, 'base64');
    if (offset + data.length > size)
      throw new Error(
        `'${rel}': the chunk at byte ${offset} ends at ${offset + data.length}, past the file's ${size} bytes`,
      );
    return this.serial(id, u, async () => {
      const f = this.fileFor(u, rel, size, offset);
      try {
        // appending creates the part file at the first chunk (an empty file's only one too)
        await fs.promises.appendFile(f.part, data);
      } catch (e) {
        // a partial append (disk full) must not shift the next chunk
        await fs.promises.truncate(f.part, f.received).catch(() => undefined);
        throw new Error(`'${rel}': could not write the chunk at byte ${offset}: ${(e as Error).message}`);
      }
      f.received += data.length;
      if (f.received === size) await this.complete(u, rel, parts, f);
      return { received: f.received };
    });
  }

  /** The open file a chunk continues, or a new one when the chunk is its first; the limits are checked here. */
  private fileFor(u: Upload, rel: string, size: number, offset: number): OpenFile {
    if (u.done.has(rel)) throw new Error(`'${rel}': the file was already uploaded`);
    const f = u.open.get(rel);
    if (f) {
      if (size !== f.size) throw new Error(`'${rel}': its size changed from ${f.size} to ${size} bytes`);
      if (offset !== f.received)
        throw new Error(`'${rel}': expected the chunk at byte ${f.received}, got one at ${offset}`);
      return f;
    }
    const { maxFiles, maxBytes, maxFileBytes } = this.limits;
    if (offset !== 0) throw new Error(`'${rel}': the first chunk must start at byte 0, not ${offset}`);
    if (size > maxFileBytes)
      throw new Error(
        `'${rel}': the file is ${mb(size)}; digpt serve takes files up to ${mb(maxFileBytes)}; ${TOO_LARGE_HINT}`,
      );
    if (u.files + 1 > maxFiles)
      throw new Error(
        `'${rel}': the upload already has ${u.files} files, the most digpt serve takes; ${TOO_LARGE_HINT}`,
      );
    if (u.bytes + size > maxBytes)
      throw new Error(
        `'${rel}': with this file the upload would hold ${mb(u.bytes + size)}, over digpt serve's ${mb(maxBytes)}; ${TOO_LARGE_HINT}`,
      );
    const created: OpenFile = { part: nodePath.join(u.staging, 'parts', String(u.files)), size, received: 0 };
    u.files += 1;
    u.bytes += size;
    u.open.set(rel, created);
    return created;
  }

  private async complete(u: Upload, rel: string, parts: string[], f: OpenFile): Promise<void> {
    const target = nodePath.join(u.staging, 'data', ...parts);
    try {
      await fs.promises.mkdir(nodePath.dirname(target), { recursive: true });
    } catch {
      throw new Error(`'${rel}': a file of the upload has the name of one of its folders`);
    }
    if (fs.existsSync(target))
      throw new Error(`'${rel}': a folder of the upload has the same name as this file`);
    await fs.promises.rename(f.part, target);
    u.open.delete(rel);
    u.done.add(rel);
  }

  /** Ends an upload: moves its folder to uploads/NAME (made unique) and returns it, to be registered. */
  async end(id: string): Promise<string> {
    const u = this.get(id);
    return this.serial(id, u, async () => {
      if (u.open.size > 0) {
        const missing = [...u.open].slice(0, 3).map(([p, f]) => `'${p}' (${f.received} of ${f.size} bytes)`);
        throw new Error(`the upload is not complete: ${missing.join(', ')}${u.open.size > 3 ? ', …' : ''}`);
      }
      if (u.done.size === 0) {
        this.drop(id, u);
        throw new Error('the dropped folder had no files');
      }
      const safe = u.name.replace(/[^\p{L}\p{N}._ -]/gu, '_').replace(/^\.+/, '_') || 'dataset';
      let dir = nodePath.join(this.root, safe);
      for (let i = 2; fs.existsSync(dir); i++) dir = nodePath.join(this.root, `${safe}-${i}`);
      fs.renameSync(nodePath.join(u.staging, 'data'), dir);
      this.drop(id, u);
      return dir;
    });
  }

  /** Drops an upload and deletes what it wrote. */
  async abort(id: string): Promise<void> {
    const u = this.get(id);
    this.open.delete(id);
    await u.queue.catch(() => undefined);
    this.drop(id, u);
  }

  /** Deletes every upload in progress (the workbench is closing). */
  close(): void {
    for (const [id, u] of this.open) this.drop(id, u);
  }

  private get(id: string): Upload {
    const u = this.open.get(id);
    if (!u) throw new Error(`no upload ${id} in progress (it was ended, aborted, or idle too long)`);
    return u;
  }

  /** Runs `op` after the upload's earlier operations; it fails alone (the queue goes on). */
  private serial<T>(id: string, u: Upload, op: () => Promise<T>): Promise<T> {
    this.touch(id, u);
    const run = u.queue.then(() => {
      if (this.open.get(id) !== u) throw new Error(`no upload ${id} in progress (it was aborted)`);
      return op();
    });
    u.queue = run.catch(() => undefined);
    return run;
  }

  /** Restarts the idle timer: an upload the page forgot (closed tab, lost connection) must not stay forever. */
  private touch(id: string, u: Upload): void {
    if (u.timer) clearTimeout(u.timer);
    u.timer = setTimeout(() => void this.abort(id).catch(() => undefined), this.limits.idleMs);
    u.timer.unref();
  }

  private drop(id: string, u: Upload): void {
    if (u.timer) clearTimeout(u.timer);
    this.open.delete(id);
    fs.rmSync(u.staging, { recursive: true, force: true });
  }

  /**
   * Deletes staging folders left by a process that died mid-upload. Only idle ones: another server on the same
   * workspace may be uploading into its own right now.
   */
  private removeStale(): void {
    if (!fs.existsSync(this.root)) return;
    const cutoff = Date.now() - this.limits.idleMs;
    for (const name of fs.readdirSync(this.root)) {
      if (!name.startsWith(STAGING_PREFIX)) continue;
      const staging = nodePath.join(this.root, name);
      if (lastChange(staging) < cutoff) fs.rmSync(staging, { recursive: true, force: true });
    }
  }
}

/** The newest mtime of a staging folder, its parts folder and the parts being appended to. */
function lastChange(staging: string): number {
  const parts = nodePath.join(staging, 'parts');
  let t = 0;
  for (const p of [
    staging,
    parts,
    ...(fs.existsSync(parts) ? fs.readdirSync(parts) : []).map((n) => nodePath.join(parts, n)),
  ]) {
    try {
      t = Math.max(t, fs.statSync(p).mtimeMs);
    } catch {
      // removed meanwhile
    }
  }
  return t;
}
