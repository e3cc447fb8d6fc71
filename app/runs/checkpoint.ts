// Checkpoints as folders written atomically: files into a temporary folder, fsync, a manifest with checksums, rename.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** What a checkpoint's manifest.json records. */
export interface CheckpointManifest {
  readonly format: 'digpt-workbench-checkpoint';
  readonly version: 1;
  readonly step: number;
  readonly created: string;
  /** File name -> { bytes, sha256 } of every other file in the folder. */
  readonly files: Readonly<Record<string, { readonly bytes: number; readonly sha256: string }>>;
}

const PREFIX = 'step-';

export function checkpointName(step: number): string {
  return `${PREFIX}${String(step).padStart(8, '0')}`;
}

function sha256(path: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function fsyncPath(path: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on folders; the rename is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes a checkpoint of `step` into `dir/step-XXXXXXXX/`: `write(tmpFolder)` puts the files in a temporary folder,
 * which gets a manifest and is renamed into place only when complete. A crash at any point leaves either the old
 * checkpoints alone or the new one whole.
 */
export function writeCheckpoint(dir: string, step: number, write: (folder: string) => void): string {
  fs.mkdirSync(dir, { recursive: true });
  const final = nodePath.join(dir, checkpointName(step));
  const tmp = nodePath.join(dir, `.tmp-${checkpointName(step)}-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  try {
    write(tmp);
    const files: Record<string, { bytes: number; sha256: string }> = {};
    for (const f of fs.readdirSync(tmp).sort()) {
      const p = nodePath.join(tmp, f);
      fsyncPath(p);
      files[f] = { bytes: fs.statSync(p).size, sha256: sha256(p) };
    }
    const manifest: CheckpointManifest = {
      format: 'digpt-workbench-checkpoint',
      version: 1,
      step,
      created: new Date().toISOString(),
      files,
    };
    const mpath = nodePath.join(tmp, 'manifest.json');
    fs.writeFileSync(mpath, JSON.stringify(manifest, null, 1));
    fsyncPath(mpath);
    fsyncPath(tmp);
    if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    fsyncPath(dir);
    return final;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Checks a checkpoint folder against its manifest; returns the manifest or a reason it is unusable. */
export function verifyCheckpoint(folder: string): { ok: true; manifest: CheckpointManifest } | { ok: false; reason: string } {
  const mpath = nodePath.join(folder, 'manifest.json');
  if (!fs.existsSync(mpath)) return { ok: false, reason: `${folder}: no manifest.json (incomplete write)` };
  let m: CheckpointManifest;
  try {
    m = JSON.parse(fs.readFileSync(mpath, 'utf8')) as CheckpointManifest;
  } catch {
    return { ok: false, reason: `${mpath}: not valid JSON` };
  }
  for (const [name, info] of Object.entries(m.files)) {
    const p = nodePath.join(folder, name);
    if (!fs.existsSync(p)) return { ok: false, reason: `${p}: missing` };
    if (fs.statSync(p).size !== info.bytes) return { ok: false, reason: `${p}: size differs from the manifest` };
    if (sha256(p) !== info.sha256) return { ok: false, reason: `${p}: checksum differs from the manifest` };
  }
  return { ok: true, manifest: m };
}

/** Checkpoint folders of a run, newest first (temporary folders of interrupted writes are not listed). */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(PREFIX))
    .sort()
    .reverse()
    .map((f) => nodePath.join(dir, f));
}

/** The newest checkpoint that verifies, and the reasons the newer ones did not. */
export function latestGoodCheckpoint(dir: string): { folder: string; manifest: CheckpointManifest; rejected: string[] } | undefined {
  const rejected: string[] = [];
  for (const folder of listCheckpoints(dir)) {
    const v = verifyCheckpoint(folder);
    if (v.ok) return { folder, manifest: v.manifest, rejected };
    rejected.push(v.reason);
  }
  return undefined;
}
