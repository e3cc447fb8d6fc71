// Folders uploaded from a browser drop: written under the workspace, file by file, with every path checked.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** Upload limits: a dropped dataset is for trying things, not for moving ImageNet through a WebSocket. */
const MAX_FILES = 200_000;
const MAX_BYTES = 8 * 1024 ** 3;

interface Upload {
  dir: string;
  files: number;
  bytes: number;
}

export class Uploads {
  private readonly open = new Map<string, Upload>();

  constructor(private readonly root: string) {}

  /** Starts an upload into a new folder named after the dropped one (made unique). */
  begin(name: string): string {
    const safe = name.replace(/[^\p{L}\p{N}._ -]/gu, '_').replace(/^\.+/, '_') || 'dataset';
    fs.mkdirSync(this.root, { recursive: true });
    let dir = nodePath.join(this.root, safe);
    for (let i = 2; fs.existsSync(dir); i++) dir = nodePath.join(this.root, `${safe}-${i}`);
    fs.mkdirSync(dir);
    const id = randomBytes(12).toString('hex');
    this.open.set(id, { dir, files: 0, bytes: 0 });
    return id;
  }

  private get(id: string): Upload {
    const u = this.open.get(id);
    if (!u) throw new Error(`no upload ${id} in progress`);
    return u;
  }

  /** Writes one file; the path must stay inside the upload's folder. */
  file(id: string, rel: string, base64: string): void {
    const u = this.get(id);
    const parts = rel.split('/');
    if (
      rel.startsWith('/') ||
      parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0'))
    ) {
      throw new Error(`upload path '${rel}' is not a plain relative path`);
    }
    const target = nodePath.join(u.dir, ...parts);
    const data = Buffer.from(base64, 'base64');
    u.files += 1;
    u.bytes += data.length;
    if (u.files > MAX_FILES || u.bytes > MAX_BYTES)
      throw new Error('the dropped folder is too large to upload; type its path on the server instead');
    fs.mkdirSync(nodePath.dirname(target), { recursive: true });
    fs.writeFileSync(target, data);
  }

  /** Ends an upload; returns its folder, to be registered as a dataset. */
  end(id: string): string {
    const u = this.get(id);
    this.open.delete(id);
    if (u.files === 0) throw new Error('the dropped folder had no files');
    return u.dir;
  }
}
