// Checkpoints as folders written atomically: files into a temporary folder, fsync, a manifest with checksums, rename.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { DiskFullError, fsyncFolder, writing } from './disk.js';

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
const TMP_PREFIX = `.tmp-${PREFIX}`;

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

/** fsync of a written file: unlike a folder's, its failure (EIO, ENOSPC on a late write-back) is the write's failure. */
function fsyncFile(path: string): void {
  const fd = fs.openSync(path, 'r');
  try {
    writing(path, () => fs.fsyncSync(fd));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a checkpoint of `step` into `dir/step-XXXXXXXX/`: `write(tmpFolder)` puts the files in a temporary folder,
 * which gets a manifest and is renamed into place only when complete. A crash at any point leaves either the old
 * checkpoints alone or the new one whole; a failure (a full disk) removes the temporary folder.
 */
export function writeCheckpoint(dir: string, step: number, write: (folder: string) => void): string {
  const final = nodePath.join(dir, checkpointName(step));
  const tmp = nodePath.join(dir, `.tmp-${checkpointName(step)}-${process.pid}-${Date.now()}`);
  writing(tmp, () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.mkdirSync(tmp);
  });
  try {
    write(tmp);
    const files: Record<string, { bytes: number; sha256: string }> = {};
    for (const f of fs.readdirSync(tmp).sort()) {
      const p = nodePath.join(tmp, f);
      fsyncFile(p);
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
    writing(mpath, () => fs.writeFileSync(mpath, JSON.stringify(manifest, null, 1)));
    fsyncFile(mpath);
    fsyncFolder(tmp);
    if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    fsyncFolder(dir);
    return final;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof DiskFullError) {
      // name the file by the checkpoint it was for, not by the temporary folder that is now gone
      const rel = nodePath.relative(tmp, e.path);
      const path = rel.startsWith('..') ? e.path : nodePath.join(final, rel);
      throw new DiskFullError(
        path,
        e.cause,
        `checkpoint ${checkpointName(step)} was not written; the older checkpoints are untouched`,
      );
    }
    throw e;
  }
}

/**
 * A check of a safetensors file's values (the worker's: it reads tensors): a reason naming the file and tensor, or
 * undefined when the values are fine. A checksum cannot tell Inf moments written before the write-time guard.
 */
export type ValuesCheck = (path: string) => string | undefined;

/**
 * Checks a checkpoint folder against its manifest (every file present, of its size and checksum); with `values`,
 * also each of its safetensors files (weights, optimizer moments) with that check. Returns the manifest or a reason.
 */
export function verifyCheckpoint(
  folder: string,
  o: { values?: ValuesCheck; modelOnly?: boolean } = {},
): { ok: true; manifest: CheckpointManifest } | { ok: false; reason: string } {
  const mpath = nodePath.join(folder, 'manifest.json');
  if (!fs.existsSync(mpath)) return { ok: false, reason: `${folder}: no manifest.json (incomplete write)` };
  let m: CheckpointManifest;
  try {
    m = JSON.parse(fs.readFileSync(mpath, 'utf8')) as CheckpointManifest;
  } catch {
    return { ok: false, reason: `${mpath}: not valid JSON` };
  }
  if (!m || typeof m.files !== 'object' || m.files === null || typeof m.step !== 'number')
    return { ok: false, reason: `${mpath}: not a checkpoint manifest (no step or files)` };
  const present = Object.entries(m.files).filter(
    // the weights alone (probe, export, fine-tune from it): a synced copy may leave the optimizer on the cluster
    ([name]) => !(o.modelOnly && name === OPTIMIZER_FILE && !fs.existsSync(nodePath.join(folder, name))),
  );
  for (const [name, info] of present) {
    const p = nodePath.join(folder, name);
    if (!fs.existsSync(p))
      return {
        ok: false,
        reason:
          name === OPTIMIZER_FILE
            ? `${p}: missing (a synced copy of a cluster run may have left it there: copy it to resume here)`
            : `${p}: missing`,
      };
    if (fs.statSync(p).size !== info.bytes)
      return { ok: false, reason: `${p}: size differs from the manifest` };
    if (sha256(p) !== info.sha256) return { ok: false, reason: `${p}: checksum differs from the manifest` };
  }
  if (o.values) {
    for (const name of present.map(([n]) => n).filter((n) => n.endsWith('.safetensors'))) {
      let why: string | undefined;
      try {
        why = o.values(nodePath.join(folder, name));
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
      if (why) return { ok: false, reason: why };
    }
  }
  return { ok: true, manifest: m };
}

/** The optimizer state's file in a checkpoint folder: needed to resume, not to read the weights. */
const OPTIMIZER_FILE = 'optimizer.safetensors';

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

export interface GoodCheckpoint {
  readonly folder: string;
  readonly manifest: CheckpointManifest;
  /** Why each newer checkpoint was not taken (one reason each, naming the file). */
  readonly rejected: string[];
}

/**
 * The newest checkpoint that verifies (with `values`, its values too; undefined when none does), and the reasons the
 * newer ones did not. Only the ones tried are read: the newest good checkpoint and those newer than it.
 */
export function scanCheckpoints(
  dir: string,
  values?: ValuesCheck,
  modelOnly = false,
): { good: GoodCheckpoint | undefined; rejected: string[] } {
  const rejected: string[] = [];
  for (const folder of listCheckpoints(dir)) {
    const v = verifyCheckpoint(folder, { ...(values ? { values } : {}), modelOnly });
    if (v.ok) return { good: { folder, manifest: v.manifest, rejected }, rejected };
    rejected.push(v.reason);
  }
  return { good: undefined, rejected };
}

/** The newest checkpoint that verifies (manifest, checksums, and `values` when given). */
export function latestGoodCheckpoint(
  dir: string,
  values?: ValuesCheck,
  modelOnly = false,
): GoodCheckpoint | undefined {
  return scanCheckpoints(dir, values, modelOnly).good;
}

/**
 * The safetensors file behind an encoder source: a run folder gives its newest good checkpoint's model.safetensors
 * (a pretraining run: canonical D-iGPT names; a fine-tuning run: a vit_classifier), anything else is a file.
 */
export function runModelFile(spec: string, values?: ValuesCheck): string {
  if (fs.existsSync(spec) && fs.statSync(spec).isDirectory()) {
    if (!fs.existsSync(nodePath.join(spec, 'config.json')))
      throw new Error(`${spec}: no config.json; not a run folder`);
    const ck = latestGoodCheckpoint(nodePath.join(spec, 'checkpoints'), values, true);
    if (!ck) throw new Error(`${spec}: the run has no usable checkpoint yet`);
    return nodePath.join(ck.folder, 'model.safetensors');
  }
  if (!fs.existsSync(spec)) throw new Error(`${spec}: no such file or run folder`);
  return spec;
}

/**
 * Removes the temporary folders of interrupted checkpoint writes (`.tmp-step-*`). Only the holder of the run's lock
 * may call it: then no write is under way, so every such folder is a leftover. Returns what was removed.
 */
export function removeTmpCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const gone = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(TMP_PREFIX))
    .map((f) => nodePath.join(dir, f));
  for (const p of gone) fs.rmSync(p, { recursive: true, force: true });
  return gone;
}
